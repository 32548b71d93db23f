#include "soak_verdict.hpp"

#include <algorithm>
#include <cstdio>

namespace strelay::soak {

RssFit fit_rss(std::span<const RssPoint> churn, double from) {
  RssFit f;
  double st = 0, sr = 0, stt = 0, str = 0, first = -1, last = 0;
  for (const auto& p : churn) {
    if (p.t < from || p.rss_kib <= 0) continue;
    const double r = static_cast<double>(p.rss_kib);
    ++f.n;
    st += p.t;
    sr += r;
    stt += p.t * p.t;
    str += p.t * r;
    if (first < 0) first = p.t;
    last = p.t;
  }
  const double n = static_cast<double>(f.n);
  const double d = n * stt - st * st;
  if (f.n >= 2 && d > 0) f.slope = (n * str - st * sr) / d;
  f.window = f.n >= 2 ? last - first : 0;
  return f;
}

RssVerdict judge_rss(std::span<const RssPoint> churn, const RssRule& rule) {
  RssVerdict v;
  v.fit = fit_rss(churn, rule.warmup);
  v.long_window = v.fit.window >= rule.short_window_minutes * 60;
  v.ok = v.fit.n >= 3 && (v.long_window ? v.fit.mib_per_hour() <= rule.max_mib_per_hour
                                        : v.fit.growth_mib() <= rule.short_tolerance_mib);
  const double last = churn.empty() ? 0 : churn.back().t;
  v.second_half = fit_rss(churn, std::max(rule.warmup, last / 2));

  char line[400];
  std::snprintf(line, sizeof line,
                "RSS fit: least squares over %zu churn samples from t=%.0f s, window %.0f s: "
                "slope %.3f MiB/hour (fitted growth %.3f MiB over the window)\n",
                v.fit.n, rule.warmup, v.fit.window, v.fit.mib_per_hour(), v.fit.growth_mib());
  v.text += line;
  std::snprintf(line, sizeof line,
                "(for information: the slope over the second half of the churn, %zu samples, is "
                "%.3f MiB/hour)\n",
                v.second_half.n, v.second_half.mib_per_hour());
  v.text += line;
  const char* result = v.ok ? "ok" : "FAILED";
  if (v.fit.n < 3) {
    std::snprintf(line, sizeof line,
                  "RSS rule: %zu samples after the warm-up, too few to judge: FAILED\n", v.fit.n);
  } else if (v.long_window) {
    std::snprintf(line, sizeof line, "RSS rule: slope <= %g MiB/hour: %s\n", rule.max_mib_per_hour,
                  result);
  } else {
    std::snprintf(
        line, sizeof line,
        "RSS rule (window under %g min, too short to resolve %g MiB/hour): fitted growth <= %g "
        "MiB: %s\n",
        rule.short_window_minutes, rule.max_mib_per_hour, rule.short_tolerance_mib, result);
  }
  v.text += line;
  return v;
}

}  // namespace strelay::soak
