// The soak's memory rule (scripts/soak, docs/reliability.md "Soak"), apart from soak_driver so
// that its arithmetic is unit-tested (tests/soak_verdict_test.cpp).
//
// The relay's RSS is sampled during the churn. The rule fits a least-squares line through the
// samples taken after the warm-up and fails when the slope exceeds max_mib_per_hour. A window
// shorter than short_window_minutes cannot resolve 1 MiB/h against allocator noise, so there the
// fitted growth over the window must stay under short_tolerance_mib instead (a gross-leak
// check). The slope over the second half of the churn is reported beside it, for reading a
// failure: a leak grows all along, an allocator's high-water mark steps up and stays.
#pragma once

#include <cstddef>
#include <span>
#include <string>

namespace strelay::soak {

// One RSS sample taken during the churn.
struct RssPoint {
  double t = 0;       // seconds since the driver started
  long rss_kib = -1;  // <= 0: the sample failed, and is left out
};

struct RssFit {
  std::size_t n = 0;  // samples in the fit
  double slope = 0;   // KiB per second
  double window = 0;  // seconds from the first to the last sample in the fit
  double mib_per_hour() const { return slope * 3600.0 / 1024.0; }
  double growth_mib() const { return slope * window / 1024.0; }
};

// The least-squares line through the points at t >= from (slope 0 below two points).
RssFit fit_rss(std::span<const RssPoint> churn, double from);

struct RssRule {
  double warmup = 60;  // seconds of churn left out of the fit
  double max_mib_per_hour = 1.0;
  double short_window_minutes = 30;
  double short_tolerance_mib = 4;
};

struct RssVerdict {
  RssFit fit;          // from the warm-up on: the rule's
  RssFit second_half;  // from half the churn on: information
  bool long_window = false;
  bool ok = false;   // also false with fewer than 3 samples after the warm-up
  std::string text;  // the verdict's lines for the summary
};

RssVerdict judge_rss(std::span<const RssPoint> churn, const RssRule& rule);

}  // namespace strelay::soak
