#include "soak_report.hpp"

#include <cstdio>
#include <sstream>

#include "soak_verdict.hpp"

namespace strelay::soak {
namespace {

std::string gauges_text(const Json& g, long fds) {
  std::ostringstream out;
  if (g.is_object())
    for (const auto& [k, v] : g.items()) out << k << '=' << v.dump() << ' ';
  out << "open_fds=" << fds;
  return out.str();
}

// The relay's own account: how connections closed, handshakes, limiter hits.
std::string counters_text(const Json& c) {
  if (!c.is_object()) return "unavailable";
  std::ostringstream out;
  for (const char* family : {"closes_total", "handshakes_total", "limit_hits_total"}) {
    if (!c.contains(family) || !c[family].is_object()) continue;
    out << family << " {";
    for (const auto& [k, v] : c[family].items())
      if (v.is_number() && v.get<long>() != 0) out << ' ' << k << '=' << v.get<long>();
    out << " } ";
  }
  if (c.contains("accepts_total")) out << "accepts_total=" << c["accepts_total"].dump();
  return out.str();
}

}  // namespace

Verdict judge(const Options& o, const Tally& t, const std::vector<Sample>& samples,
              const Baseline& baseline, bool settled) {
  std::ostringstream out;
  std::vector<soak::RssPoint> churn;
  for (const auto& sm : samples)
    if (sm.phase == "churn") churn.push_back({sm.t, sm.rss_kib});
  const auto rss = soak::judge_rss(
      churn, {o.warmup, o.max_slope, o.short_window_minutes, o.short_tolerance_mib});
  const bool sessions_ok =
      t.mismatches == 0 && t.launched > 0 &&
      static_cast<double>(t.failed) <= o.max_failure_ratio * static_cast<double>(t.launched);
  const Sample& final_sample = samples.back();
  out << "strelay soak: " << o.minutes << " min of churn, target " << o.sessions
      << " open sessions, " << o.rate << " new per second, " << o.abort_fraction * 100
      << "% reset abruptly\n"
      << "listener nodes " << o.listeners << ", connector identities " << o.connectors << ", seed "
      << o.seed << "\n\n"
      << "sessions started     " << t.launched << "\n"
      << "sessions established " << t.established << "\n"
      << "completed cleanly    " << t.completed
      << "  (echo verified chunk by chunk and by SHA-256)\n"
      << "reset abruptly (RST) " << t.dropped << "  (listener saw each end as an error)\n"
      << "failed               " << t.failed << "  (allowed: " << o.max_failure_ratio * 100
      << "%)\n"
      << "data mismatches      " << t.mismatches << "  (allowed: 0)\n"
      << "peak open sessions   " << t.peak_active << "\n"
      << "bytes echoed         " << t.bytes_echoed << "\n";
  for (const auto& [why, n] : t.failures) out << "  failure: " << why << " x" << n << "\n";
  out << "\nrelay samples (every " << o.sample_interval << " s):\n"
      << "  t_s     phase     rss_MiB  open_fds  connections  tunnels  open_sessions\n";
  for (const auto& s : samples) {
    char line[160];
    const auto g = [&](const char* k) {
      return s.gauges.is_object() ? s.gauges.value(k, -1L) : -1L;
    };
    std::snprintf(line, sizeof line, "  %-7.0f %-9s %-8.2f %-9ld %-12ld %-8ld %ld\n", s.t,
                  s.phase.c_str(), static_cast<double>(s.rss_kib) / 1024.0, s.open_fds,
                  g("connections"), g("tunnels"), s.active);
    out << line;
  }
  out << '\n' << rss.text;
  out << "baseline: " << gauges_text(baseline.gauges, baseline.open_fds) << "\n"
      << "after drain: " << gauges_text(final_sample.gauges, final_sample.open_fds) << "\n"
      << "gauges and descriptors back to baseline: " << (settled ? "ok" : "FAILED") << "\n"
      << "relay counters at the end: " << counters_text(final_sample.counters) << "\n"
      << "sessions: " << (sessions_ok ? "ok" : "FAILED") << "\n";
  const bool pass = rss.ok && settled && sessions_ok;
  out << "RESULT: " << (pass ? "PASS" : "FAIL") << "\n";
  return {pass, out.str()};
}

}  // namespace strelay::soak
