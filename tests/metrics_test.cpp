// Tests for strelay/metrics: counters, gauges, samples, and the Prometheus and JSON renderings.
#include "strelay/metrics.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

using namespace strelay;
using namespace std::chrono_literals;

namespace {

StatusInfo sample_info() {
  StatusInfo info;
  info.version = "0.1.0";
  info.public_key = "A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg";
  info.ticket_json =
      R"({"publicKey":"A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg","address":"relay.example:4567"})";
  info.listen_addresses = {"0.0.0.0:4567", "[::]:4567"};
  info.start_time = std::chrono::system_clock::time_point(1714564800s);
  info.limits = {{"max_pending_handshakes", 1024},
                 {"handshake_timeout_seconds", 10},
                 {"min_handshake_timeout_seconds", 0.5},
                 {"tunnel_socket_buffers", 0, "clamp"}};
  return info;
}

// Parses the exposition text strictly enough to catch malformed output: every sample line
// belongs to a family announced by a HELP line and then a TYPE line.
struct ParsedExposition {
  std::map<std::string, std::string> types;    // family -> counter/gauge
  std::map<std::string, std::string> samples;  // "name{labels}" -> value
  std::vector<std::string> errors;
};

ParsedExposition parse_exposition(const std::string& text) {
  static const std::regex help_re(R"(# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) \S.*)");
  static const std::regex type_re(R"(# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram))");
  static const std::regex sample_re(
      R"(([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*\})? (-?[0-9.eE+-]+|NaN))");
  ParsedExposition p;
  std::istringstream in(text);
  std::string line;
  std::string helped;
  std::string current;
  std::set<std::string> seen;
  std::smatch m;
  while (std::getline(in, line)) {
    if (std::regex_match(line, m, help_re)) {
      helped = m[1];
      if (!seen.insert(helped).second) p.errors.push_back("HELP twice: " + line);
    } else if (std::regex_match(line, m, type_re)) {
      if (m[1] != helped) p.errors.push_back("TYPE without HELP: " + line);
      current = m[1];
      p.types[current] = m[2];
    } else if (std::regex_match(line, m, sample_re)) {
      // A histogram's samples are its name with _bucket, _sum or _count.
      const std::string name = m[1];
      const bool of_histogram =
          p.types[current] == "histogram" &&
          (name == current + "_bucket" || name == current + "_sum" || name == current + "_count");
      if (name != current && !of_histogram)
        p.errors.push_back("sample outside its family: " + line);
      p.samples[std::string(m[1]) + std::string(m[2])] = m[3];
    } else {
      p.errors.push_back("malformed: " + line);
    }
  }
  if (text.empty() || text.back() != '\n') p.errors.push_back("no final newline");
  return p;
}

}  // namespace

TEST_CASE("counters and gauges count from many threads without losing updates") {
  Metrics m;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&m] {
      for (int i = 0; i < 50'000; ++i) {
        m.accepts_total.inc();
        m.bytes_relayed_total.inc(TunnelDirection::to_listener, 3);
        m.connections.add();
        m.connections.sub();
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(m.accepts_total.get() == 200'000);
  CHECK(m.bytes_relayed_total.get(TunnelDirection::to_listener) == 600'000);
  CHECK(m.bytes_relayed_total.total() == 600'000);
  CHECK(m.connections.get() == 0);
}

TEST_CASE("a gauge hold gives its unit back on destruction and on move-assignment") {
  Metrics m;
  {
    GaugeHold a(m.tunnels);
    GaugeHold b(m.tunnels);
    CHECK(m.tunnels.get() == 2);
    GaugeHold c(std::move(a));
    CHECK(m.tunnels.get() == 2);
    b = std::move(c);
    CHECK(m.tunnels.get() == 1);
  }
  CHECK(m.tunnels.get() == 0);
}

TEST_CASE("a close reason outside the set is counted as unknown, not lost") {
  Metrics m;
  m.closes_total.inc(CloseReason::aborted);
  m.closes_total.inc(static_cast<CloseReason>(77));
  CHECK(m.closes_total.get(CloseReason::aborted) == 1);
  CHECK(m.closes_total.unknown() == 1);
  CHECK(metric_label(CloseReason::aborted) == "aborted");
  CHECK(metric_label(static_cast<CloseReason>(77)) == "unknown");
  CHECK(CounterFamily<CloseReason>::size == 13);
}

TEST_CASE("the Prometheus text is well formed and carries every family and label") {
  Metrics m;
  const auto info = sample_info();
  m.connections.set(3);
  m.handshakes_total.inc(HandshakeOutcome::ok, 5);
  m.handshakes_total.inc(HandshakeOutcome::bad_magic);
  m.limit_hits_total.inc(LimitReason::pending_per_source, 2);
  m.closes_total.inc(CloseReason::shutdown, 4);
  m.accept_errors_total.inc(AcceptError::emfile, 7);
  m.connect_outcomes_total.inc(ConnectOutcome::not_found);
  m.bytes_relayed_total.inc(TunnelDirection::to_connector, 1000);
  m.accepts_total.inc(42);
  const StatusView view{m, info, read_process_stats(), Rates{2.5, 100.0, 5.0},
                        info.start_time + 17s};
  const auto text = render_prometheus(view);
  const auto p = parse_exposition(text);
  for (const auto& e : p.errors) FAIL_CHECK(e);

  CHECK(p.types.at("strelay_connections") == "gauge");
  CHECK(p.types.at("strelay_handshakes_total") == "counter");
  CHECK(p.samples.at("strelay_connections") == "3");
  CHECK(p.samples.at("strelay_accepts_total") == "42");
  CHECK(p.samples.at("strelay_handshakes_total{outcome=\"ok\"}") == "5");
  CHECK(p.samples.at("strelay_handshakes_total{outcome=\"bad_magic\"}") == "1");
  CHECK(p.samples.at("strelay_handshakes_total{outcome=\"timeout\"}") == "0");
  CHECK(p.samples.at("strelay_limit_hits_total{reason=\"pending_per_source\"}") == "2");
  CHECK(p.samples.at("strelay_accept_errors_total{error=\"emfile\"}") == "7");
  CHECK(p.samples.at("strelay_connect_outcomes_total{outcome=\"not_found\"}") == "1");
  CHECK(p.samples.at("strelay_relayed_bytes_total{direction=\"to_connector\"}") == "1000");
  CHECK(p.samples.count("strelay_bytes_relayed_total{direction=\"to_connector\"}") == 0);
  CHECK(p.types.at("process_cpu_seconds_total") == "counter");
  CHECK(std::stod(p.samples.at("process_cpu_seconds_total")) >= 0.0);
  CHECK(p.samples.at("strelay_accept_rate") == "2.5");
  CHECK(p.samples.at("strelay_allowlist_keys") == "-1");
  CHECK(p.samples.count("process_open_fds") == 1);
  CHECK(p.samples.count("process_resident_memory_bytes") == 1);
  // Every close reason is exported, including the local-only "aborted"; "unknown" only when seen.
  for (const auto& [reason, name] : MetricLabels<CloseReason>::all) {
    CHECK(p.samples.count("strelay_closes_total{reason=\"" + std::string(name) + "\"}") == 1);
  }
  CHECK(p.samples.count("strelay_closes_total{reason=\"unknown\"}") == 0);
  for (const auto& gauge : {"pending_handshakes", "listeners", "half_tunnels", "standbys",
                            "tunnels", "tunnel_buffered_bytes", "listen_sockets"}) {
    CHECK(p.types.count("strelay_" + std::string(gauge)) == 1);
  }
  for (const auto& counter : {"listen_total", "replaced_total"}) {
    CHECK(p.types.at("strelay_" + std::string(counter)) == "counter");
  }
}

TEST_CASE("Prometheus label values are escaped") {
  Metrics m;
  auto info = sample_info();
  info.version = "1.0 \"odd\"\\\nbuild";
  const StatusView view{m, info, ProcessStats{}, Rates{}, info.start_time};
  const auto text = render_prometheus(view);
  CHECK(text.find("version=\"1.0 \\\"odd\\\"\\\\\\nbuild\"") != std::string::npos);
  const auto p = parse_exposition(text);
  CHECK(p.errors.empty());
  // Unavailable process figures are left out rather than exported as -1.
  CHECK(p.types.count("process_open_fds") == 0);
}

TEST_CASE("the status JSON parses and has every gauge, counter, rate and limit") {
  Metrics m;
  const auto info = sample_info();
  m.tunnels.set(2);
  m.closes_total.inc(CloseReason::aborted, 3);
  m.listen_total.inc();
  const StatusView view{m, info, ProcessStats{10, 1024, 4096}, Rates{1.0, 2.0, 5.0},
                        info.start_time + 60s};
  const auto j = nlohmann::json::parse(render_status_json(view));
  CHECK(j["version"] == "0.1.0");
  CHECK(j["public_key"] == info.public_key);
  CHECK(j["ticket"]["address"] == "relay.example:4567");
  CHECK(j["start_time"] == "2024-05-01T12:00:00Z");
  CHECK(j["uptime_seconds"].get<std::int64_t>() >= 0);
  CHECK(j["listen_addresses"] == nlohmann::json::array({"0.0.0.0:4567", "[::]:4567"}));
  for (const auto& gauge : {"connections", "pending_handshakes", "listeners", "half_tunnels",
                            "standbys", "tunnels", "tunnel_buffered_bytes", "listen_sockets",
                            "allowlist_keys", "topics", "topic_memberships"}) {
    CHECK_MESSAGE(j["gauges"].contains(gauge), gauge);
  }
  CHECK(j["gauges"]["tunnels"] == 2);
  CHECK(j["counters"]["closes_total"]["aborted"] == 3);
  CHECK(j["counters"]["closes_total"].size() == 13);
  CHECK(j["counters"]["listen_total"] == 1);
  CHECK(j["counters"]["handshakes_total"].size() == 6);
  CHECK(j["counters"]["limit_hits_total"].size() == 22);  // every LimitReason, topics included
  CHECK(j["counters"]["connect_outcomes_total"].size() == 9);
  CHECK(j["rates"]["accepts_per_second"] == 1.0);
  CHECK(j["process"]["open_fds"] == 10);
  // Limits are numbers, their unit in the name; a choice is text.
  CHECK(j["limits"]["max_pending_handshakes"] == 1024);
  CHECK(j["limits"]["max_pending_handshakes"].is_number_integer());
  CHECK(j["limits"]["handshake_timeout_seconds"] == 10);
  CHECK(j["limits"]["min_handshake_timeout_seconds"] == 0.5);
  CHECK(j["limits"]["tunnel_socket_buffers"] == "clamp");
  CHECK(j["counters"].contains("log_suppressed_total"));
  CHECK(j["counters"]["log_suppressed_total"].is_number_unsigned());
  CHECK(j["counters"].contains("relayed_bytes_total"));
  CHECK(j["rates"].contains("relayed_bytes_per_second"));
  CHECK(j["process"].contains("cpu_seconds"));
  for (const auto* name : {"handshake_duration_seconds", "tunnel_setup_duration_seconds"}) {
    CHECK_MESSAGE(j["histograms"][name]["count"] == 0, name);
    CHECK(j["histograms"][name]["buckets"]["+Inf"] == 0);
  }
}

TEST_CASE("a histogram counts each observation in its bucket and renders cumulative buckets") {
  Histogram h;
  h.observe(500us);  // <= 0.001
  h.observe(1ms);    // <= 0.001 (a bound is inclusive)
  h.observe(30ms);   // <= 0.05
  h.observe(3s);     // <= 10
  h.observe(60s);    // +Inf only
  CHECK(h.count() == 5);
  CHECK(h.sum_seconds() == doctest::Approx(63.0315));
  CHECK(h.cumulative(0) == 2);
  CHECK(h.cumulative(3) == 2);  // <= 0.025
  CHECK(h.cumulative(4) == 3);  // <= 0.05
  CHECK(h.cumulative(Histogram::bounds.size() - 1) == 4);
  CHECK(h.cumulative(Histogram::bounds.size()) == 5);

  Metrics m;
  m.handshake_duration_seconds.observe(2ms);
  m.handshake_duration_seconds.observe(200ms);
  m.tunnel_setup_duration_seconds.observe(40ms);
  const auto info = sample_info();
  const StatusView view{m, info, ProcessStats{}, Rates{}, info.start_time};
  const auto p = parse_exposition(render_prometheus(view));
  for (const auto& e : p.errors) FAIL_CHECK(e);
  const std::string hs = "strelay_handshake_duration_seconds";
  CHECK(p.types.at(hs) == "histogram");
  CHECK(p.samples.at(hs + "_bucket{le=\"0.001\"}") == "0");
  CHECK(p.samples.at(hs + "_bucket{le=\"0.005\"}") == "1");
  CHECK(p.samples.at(hs + "_bucket{le=\"0.1\"}") == "1");
  CHECK(p.samples.at(hs + "_bucket{le=\"0.25\"}") == "2");
  CHECK(p.samples.at(hs + "_bucket{le=\"+Inf\"}") == "2");
  CHECK(p.samples.at(hs + "_count") == "2");
  CHECK(std::stod(p.samples.at(hs + "_sum")) == doctest::Approx(0.202));
  CHECK(p.samples.at("strelay_tunnel_setup_duration_seconds_bucket{le=\"0.05\"}") == "1");
  CHECK(p.samples.at("strelay_tunnel_setup_duration_seconds_count") == "1");

  const auto j = nlohmann::json::parse(render_status_json(view));
  CHECK(j["histograms"]["handshake_duration_seconds"]["count"] == 2);
  CHECK(j["histograms"]["handshake_duration_seconds"]["buckets"]["0.005"] == 1);
  CHECK(j["histograms"]["handshake_duration_seconds"]["buckets"]["+Inf"] == 2);
}

TEST_CASE("a ticket that is not JSON is shown as text and an empty one as null") {
  Metrics m;
  auto info = sample_info();
  info.ticket_json = "not json";
  auto j = nlohmann::json::parse(render_status_json({m, info, {}, {}, info.start_time}));
  CHECK(j["ticket"] == "not json");
  info.ticket_json.clear();
  j = nlohmann::json::parse(render_status_json({m, info, {}, {}, info.start_time}));
  CHECK(j["ticket"].is_null());
}

TEST_CASE("the sample ring keeps the newest samples up to its capacity") {
  SampleRing ring(3);
  for (std::int64_t i = 1; i <= 5; ++i) {
    MetricsSample s;
    s.unix_ms = i * 5000;
    s.accepts_total = static_cast<std::uint64_t>(i * 10);
    s.relayed_bytes_total = static_cast<std::uint64_t>(i * 1000);
    ring.push(s);
  }
  const auto samples = ring.snapshot();
  REQUIRE(samples.size() == 3);
  CHECK(samples.front().unix_ms == 15000);
  CHECK(samples.back().unix_ms == 25000);
  const auto rates = compute_rates(samples);
  CHECK(rates.accepts_per_second == doctest::Approx(2.0));
  CHECK(rates.relayed_bytes_per_second == doctest::Approx(200.0));
  CHECK(rates.interval_seconds == doctest::Approx(5.0));
  CHECK(compute_rates({samples.front()}).accepts_per_second == 0.0);

  const auto j = nlohmann::json::parse(render_samples_json(samples));
  CHECK(j["interval_seconds"] == 5.0);
  REQUIRE(j["samples"].size() == 3);
  CHECK(j["samples"][2]["t"] == 25000);
  CHECK(j["samples"][2]["bytes"] == 5000);
}

TEST_CASE("a sample reads the live counters") {
  Metrics m;
  m.connections.set(4);
  m.tunnels.set(1);
  m.bytes_relayed_total.inc(TunnelDirection::to_listener, 10);
  m.bytes_relayed_total.inc(TunnelDirection::to_connector, 20);
  const auto s = take_sample(m, std::chrono::system_clock::time_point(1000ms));
  CHECK(s.unix_ms == 1000);
  CHECK(s.connections == 4);
  CHECK(s.tunnels == 1);
  CHECK(s.relayed_bytes_total == 30);
}

TEST_CASE("process stats count open descriptors") {
  const auto before = read_process_stats();
  REQUIRE(before.open_fds > 0);
  CHECK(before.resident_bytes > 0);
  CHECK(before.max_fds > 0);
  const int fd = ::open("/dev/null", O_RDONLY);
  REQUIRE(fd >= 0);
  const auto during = read_process_stats();
  ::close(fd);
  CHECK(during.open_fds == before.open_fds + 1);
}
