// The soak's report (scripts/soak, docs/reliability.md "Soak"): the driver's options, its relay
// samples and session tally, and the verdict text built from them, beside the memory rule
// (soak_verdict.hpp) so that soak_driver.cpp holds only the churn.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace strelay::soak {

using Json = nlohmann::json;

struct Options {
  std::string relay_ticket;
  int relay_pid = 0;
  std::string status_addr;  // host:port of --metrics-addr
  double minutes = 2;
  int sessions = 1000;
  double rate = 50;
  double abort_fraction = 0.1;
  int listeners = 50;
  int connectors = 200;
  double sample_interval = 10;
  double warmup = 60;
  double max_slope = 1.0;  // MiB per hour
  double short_window_minutes = 30;
  double short_tolerance_mib = 4;
  double max_failure_ratio = 0.001;
  double drain_limit = 90;
  double settle_limit = 30;
  std::string samples_csv;
  std::string summary;
  std::uint64_t seed = 1;
};

// One relay sample.
struct Sample {
  double t = 0;  // seconds since the start
  std::string phase;
  long rss_kib = -1;
  long open_fds = -1;
  Json gauges;
  Json counters;
  long active = 0, completed = 0, dropped = 0, failed = 0;
};

// What the sessions came to, counted by the driver.
struct Tally {
  long launched = 0, established = 0, completed = 0, dropped = 0, failed = 0, mismatches = 0;
  long peak_active = 0;
  std::uint64_t bytes_echoed = 0;
  std::map<std::string, long> failures;  // failed sessions by reason
};

// The relay's gauges and open descriptors before the first node.
struct Baseline {
  Json gauges;
  long open_fds = -1;
};

struct Verdict {
  bool pass = false;
  std::string text;  // the summary, ending with "RESULT: PASS" or "RESULT: FAIL"
};

// Judges the run: the RSS rule over the churn samples, the gauges back to the baseline
// (`settled`), and the sessions (no mismatch, failures within the allowed share). `samples` is
// not empty.
Verdict judge(const Options& o, const Tally& t, const std::vector<Sample>& samples,
              const Baseline& baseline, bool settled);

}  // namespace strelay::soak
