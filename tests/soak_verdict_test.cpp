// tools/soak_verdict: the soak's RSS rule (least-squares slope after the warm-up; growth over a
// short window). Series are built in KiB every 10 s, as soak_driver samples them.
#include "soak_verdict.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <vector>

using namespace strelay::soak;

namespace {

// Samples every 10 s from t = 0 to `minutes`, RSS given in MiB by `rss(t_seconds)`.
std::vector<RssPoint> series(double minutes, const std::function<double(double)>& rss) {
  std::vector<RssPoint> out;
  for (double t = 0; t <= minutes * 60 + 1e-9; t += 10) {
    out.push_back({t, std::lround(rss(t) * 1024.0)});
  }
  return out;
}

}  // namespace

TEST_CASE("a flat RSS with allocator noise passes the hour's rule") {
  const auto points = series(60, [](double t) {
    return 18.0 + static_cast<double>((static_cast<long>(t) / 10) % 3) * 0.05;
  });
  const auto v = judge_rss(points, RssRule{});
  CHECK(v.long_window);
  CHECK(std::abs(v.fit.mib_per_hour()) < 0.05);
  CHECK(v.ok);
  CHECK(v.text.find("RSS rule: slope <= 1 MiB/hour: ok") != std::string::npos);
}

TEST_CASE("steady growth is measured as its slope, and fails above 1 MiB per hour") {
  for (const double per_hour : {0.5, 0.9, 1.2, 2.0}) {
    CAPTURE(per_hour);
    const auto points = series(60, [per_hour](double t) { return 15.0 + per_hour * t / 3600.0; });
    const auto v = judge_rss(points, RssRule{});
    CHECK(v.fit.mib_per_hour() == doctest::Approx(per_hour).epsilon(0.01));
    CHECK(v.second_half.mib_per_hour() == doctest::Approx(per_hour).epsilon(0.01));
    CHECK(v.ok == (per_hour <= 1.0));
  }
}

TEST_CASE("the first minute is left out: a start-up ramp that then stays flat passes") {
  const auto points = series(60, [](double t) { return t < 60 ? 7.0 + t / 60.0 * 8.0 : 15.0; });
  const auto v = judge_rss(points, RssRule{});
  CHECK(v.fit.n == 355);  // t = 60 .. 3600 s
  CHECK(v.fit.window == doctest::Approx(3540));
  CHECK(v.ok);
  RssRule from_start;
  from_start.warmup = 0;
  const auto with_ramp = judge_rss(points, from_start);
  CHECK(with_ramp.fit.n == 361);
  CHECK(with_ramp.fit.mib_per_hour() > 0.3);  // the ramp alone would read as growth
}

TEST_CASE(
    "a step that stays, in the middle of the hour, fails; the second half's slope shows it flat") {
  const auto points = series(60, [](double t) { return t < 1800 ? 15.0 : 18.0; });
  const auto v = judge_rss(points, RssRule{});
  CHECK(v.fit.mib_per_hour() > 4.0);
  CHECK_FALSE(v.ok);
  CHECK(v.text.find("FAILED") != std::string::npos);
  CHECK(std::abs(v.second_half.mib_per_hour()) < 0.01);
}

TEST_CASE("under 30 minutes the rule is the fitted growth over the window, at most 4 MiB") {
  const auto modest = series(12, [](double t) { return 15.0 + 3.0 * t / 660.0; });  // +3 MiB
  const auto v = judge_rss(modest, RssRule{});
  CHECK_FALSE(v.long_window);
  CHECK(v.fit.growth_mib() == doctest::Approx(3.0 * 660.0 / 660.0).epsilon(0.02));
  CHECK(v.ok);
  CHECK(v.text.find("fitted growth <= 4 MiB: ok") != std::string::npos);
  const auto leak = series(12, [](double t) { return 15.0 + 6.0 * t / 660.0; });  // +6 MiB
  CHECK_FALSE(judge_rss(leak, RssRule{}).ok);
}

TEST_CASE("too few samples after the warm-up cannot pass; failed samples are left out") {
  std::vector<RssPoint> points{{0, 7000}, {10, 9000}, {60, 15000}, {70, 15000}};
  auto v = judge_rss(points, RssRule{});
  CHECK(v.fit.n == 2);
  CHECK_FALSE(v.ok);
  CHECK(v.text.find("too few to judge: FAILED") != std::string::npos);
  points.push_back({80, -1});  // an unreadable /proc: not a sample
  points.push_back({90, 0});
  CHECK(judge_rss(points, RssRule{}).fit.n == 2);
  points.push_back({100, 15000});
  v = judge_rss(points, RssRule{});
  CHECK(v.fit.n == 3);
  CHECK(v.fit.slope == doctest::Approx(0.0));
  CHECK(v.ok);
}
