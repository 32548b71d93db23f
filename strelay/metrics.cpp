#include "strelay/metrics.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/log.hpp"

namespace strelay {
namespace {

using Json = nlohmann::ordered_json;

// One table drives both /metrics and /status, so the two can never disagree on names.
struct GaugeRow {
  std::string_view name;  // without the strelay_ prefix; also the JSON key
  std::string_view help;
  std::int64_t value;
};

struct CounterRow {
  std::string_view name;
  std::string_view help;
  std::string_view label;  // empty: a single unlabelled series
  std::vector<std::pair<std::string_view, std::uint64_t>> series;
};

std::vector<GaugeRow> gauge_rows(const Metrics& m) {
  return {
      {"connections", "Open TCP connections on the relay ports, in every state.",
       m.connections.get()},
      {"pending_handshakes", "Connections accepted whose first request is not handled yet.",
       m.pending_handshakes.get()},
      {"listeners", "Node keys with a live Listen.", m.listeners.get()},
      {"half_tunnels", "Connect requests waiting for the listener's Accept.", m.half_tunnels.get()},
      {"standbys", "Listeners' standby connections parked for their next Accept.",
       m.standbys.get()},
      {"topics", "Topic ids with at least one member (only counted: ids are never shown).",
       m.topics.get()},
      {"topic_memberships", "Topics joined, summed over listeners.", m.topic_memberships.get()},
      {"tunnels", "Paired pass-through pipes.", m.tunnels.get()},
      {"tunnel_buffered_bytes", "Bytes held in user-space tunnel buffers, both directions.",
       m.tunnel_buffered_bytes.get()},
      {"listen_sockets", "Bound relay listen sockets (--laddr).", m.listen_sockets.get()},
      {"allowlist_keys", "Keys on the allowlist; -1 when the relay is public.",
       m.allowlist_keys.get()},
      {"websocket_connections",
       "Open WebSocket connections on the relay port (each is also a connection).",
       m.websocket_connections.get()},
      {"websocket_buffered_bytes", "Bytes held in WebSocket bridges' buffers, both directions.",
       m.websocket_buffered_bytes.get()},
      {"admission_hook_in_flight", "Admission hook requests out now (--admission-url).",
       m.admission_hook_in_flight.get()},
  };
}

template <class E>
CounterRow family_row(std::string_view name, std::string_view help, std::string_view label,
                      const CounterFamily<E>& family) {
  CounterRow row{name, help, label, {}};
  for (const auto& [value, text] : MetricLabels<E>::all)
    row.series.emplace_back(text, family.get(value));
  if (family.unknown() > 0) row.series.emplace_back("unknown", family.unknown());
  return row;
}

CounterRow scalar_row(std::string_view name, std::string_view help, const Counter& counter) {
  return {name, help, {}, {{{}, counter.get()}}};
}

std::vector<CounterRow> counter_rows(const Metrics& m) {
  std::vector<CounterRow> rows;
  rows.push_back(
      scalar_row("accepts_total", "TCP connections accepted on the relay ports.", m.accepts_total));
  rows.push_back(family_row("accept_errors_total",
                            "Failed accepts by errno kind; the loop backs off and resumes.",
                            "error", m.accept_errors_total));
  rows.push_back(
      family_row("handshakes_total", "Handshakes by outcome.", "outcome", m.handshakes_total));
  rows.push_back(family_row("limit_hits_total", "Resource and rate limits hit, by limit.", "reason",
                            m.limit_hits_total));
  rows.push_back(family_row("closes_total",
                            "Closed connections by close reason (aborted: EOF without Close).",
                            "reason", m.closes_total));
  rows.push_back(family_row("connect_outcomes_total",
                            "Connect requests by the outcome the connector got.", "outcome",
                            m.connect_outcomes_total));
  rows.push_back(family_row("relayed_bytes_total", "Tunnel bytes forwarded, by direction.",
                            "direction", m.bytes_relayed_total));
  rows.push_back(family_row(
      "tunnels_total",
      "Tunnels opened, by how they move bytes (copy: no descriptors were left for pipes).", "mode",
      m.tunnels_total));
  rows.push_back(scalar_row("listen_total", "Listen requests accepted.", m.listen_total));
  rows.push_back(scalar_row("replaced_total",
                            "Listeners replaced by a newer Listen for the same key.",
                            m.replaced_total));
  rows.push_back(family_row("reloads_total",
                            "SIGHUP reloads of the allowlist and limits, by outcome.", "outcome",
                            m.reloads_total));
  rows.push_back(family_row("carrier_sessions_total",
                            "Connections handed to a session, by carrier.", "carrier",
                            m.carrier_sessions_total));
  rows.push_back(family_row("carrier_refusals_total",
                            "Connections refused on the relay port before any session, by reason.",
                            "reason", m.carrier_refusals_total));
  rows.push_back(scalar_row(
      "health_checks_total",
      "Connections closed before sending a byte (TCP health checks; not failed handshakes).",
      m.health_checks_total));
  rows.push_back(
      family_row("web_requests_total",
                 "HTTP requests answered on the relay port without an upgrade, by outcome.",
                 "outcome", m.web_requests_total));
  rows.push_back(
      family_row("admission_hook_total",
                 "Listen and Connect requests decided by the admission hook, by outcome.",
                 "outcome", m.admission_hook_total));
  rows.push_back(family_row("bandwidth_waits_total",
                            "Times a tunnel direction waited for bandwidth (--global-rate, "
                            "--tunnel-rate), by whose limit.",
                            "scope", m.bandwidth_waits_total));
  return rows;
}

struct HistogramRow {
  std::string_view name;
  std::string_view help;
  const Histogram& histogram;
};

std::vector<HistogramRow> histogram_rows(const Metrics& m) {
  return {
      {"handshake_duration_seconds",
       "From accepting a connection to an authenticated node (successful handshakes).",
       m.handshake_duration_seconds},
      {"tunnel_setup_duration_seconds",
       "From a Connect request to the start of its tunnel (the listener's Accept included).",
       m.tunnel_setup_duration_seconds},
  };
}

// Label values are escaped as the exposition format asks: backslash, quote, newline.
std::string prom_label_value(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out.push_back(c);
  }
  return out;
}

std::string number(double value) {
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  return ec == std::errc() ? std::string(buf, end) : std::string("NaN");
}

class PromWriter {
 public:
  void family(std::string_view name, std::string_view help, std::string_view type) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  void sample(std::string_view name, std::string_view labels, const std::string& value) {
    out_ += name;
    if (!labels.empty()) {
      out_ += '{';
      out_ += labels;
      out_ += '}';
    }
    out_ += ' ';
    out_ += value;
    out_ += '\n';
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

double seconds_since_epoch(std::chrono::system_clock::time_point t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}

// A bucket bound as Prometheus writes `le`: 0.005, 1, 2.5.
std::string bound_text(std::size_t i) {
  return i < Histogram::bounds.size() ? number(Histogram::bounds[i]) : std::string("+Inf");
}

void write_histograms(PromWriter& w, const Metrics& m) {
  for (const auto& h : histogram_rows(m)) {
    const std::string name = "strelay_" + std::string(h.name);
    w.family(name, h.help, "histogram");
    for (std::size_t i = 0; i <= Histogram::bounds.size(); ++i) {
      w.sample(name + "_bucket", "le=\"" + bound_text(i) + "\"",
               std::to_string(h.histogram.cumulative(i)));
    }
    w.sample(name + "_sum", {}, number(h.histogram.sum_seconds()));
    w.sample(name + "_count", {}, std::to_string(h.histogram.count()));
  }
}

// An integral limit as an integer (10, not 10.0), a fractional one as a number.
Json limit_json(const LimitValue& limit) {
  if (!limit.text.empty()) return limit.text;
  const double n = limit.number;
  if (n == static_cast<double>(static_cast<std::int64_t>(n))) return static_cast<std::int64_t>(n);
  return n;
}

double uptime_seconds(const Metrics& m) {
  return std::chrono::duration<double>(m.uptime()).count();
}

}  // namespace

void Histogram::observe(std::chrono::steady_clock::duration d) noexcept {
  const double seconds = std::chrono::duration<double>(d).count();
  std::size_t i = 0;
  while (i < bounds.size() && seconds > bounds[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
  sum_ns_.fetch_add(ns > 0 ? static_cast<std::uint64_t>(ns) : 0, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
}

std::uint64_t Histogram::cumulative(std::size_t i) const noexcept {
  std::uint64_t sum = 0;
  for (std::size_t b = 0; b <= i && b < buckets_.size(); ++b)
    sum += buckets_[b].load(std::memory_order_relaxed);
  return sum;
}

Metrics::Metrics() : started_(std::chrono::steady_clock::now()) {
  allowlist_keys.set(-1);
}

ProcessStats read_process_stats() {
  ProcessStats stats;
  std::error_code ec;
  std::int64_t fds = 0;
  for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end;
       it.increment(ec)) {
    ++fds;
  }
  if (!ec && fds > 0) stats.open_fds = fds - 1;  // the iterator's own descriptor
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) {
    stats.max_fds = static_cast<std::int64_t>(limit.rlim_cur);
  }
  std::ifstream statm("/proc/self/statm");
  std::int64_t size_pages = 0;
  std::int64_t resident_pages = 0;
  if (statm >> size_pages >> resident_pages)
    stats.resident_bytes = resident_pages * sysconf(_SC_PAGESIZE);
  rusage usage{};
  if (getrusage(RUSAGE_SELF, &usage) == 0) {
    auto seconds = [](const timeval& t) {
      return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
    };
    stats.cpu_seconds = seconds(usage.ru_utime) + seconds(usage.ru_stime);
  }
  return stats;
}

MetricsSample take_sample(const Metrics& metrics, std::chrono::system_clock::time_point now) {
  MetricsSample s;
  s.unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  s.relayed_bytes_total = metrics.bytes_relayed_total.total();
  s.accepts_total = metrics.accepts_total.get();
  s.connections = metrics.connections.get();
  s.tunnels = metrics.tunnels.get();
  s.listeners = metrics.listeners.get();
  return s;
}

void SampleRing::push(const MetricsSample& sample) {
  std::lock_guard lock(mutex_);
  if (capacity_ == 0) return;
  while (samples_.size() >= capacity_) samples_.pop_front();
  samples_.push_back(sample);
}

std::vector<MetricsSample> SampleRing::snapshot() const {
  std::lock_guard lock(mutex_);
  return {samples_.begin(), samples_.end()};
}

Rates compute_rates(const std::vector<MetricsSample>& samples) {
  Rates rates;
  if (samples.size() < 2) return rates;
  const auto& a = samples[samples.size() - 2];
  const auto& b = samples.back();
  if (b.unix_ms <= a.unix_ms) return rates;
  const double seconds = static_cast<double>(b.unix_ms - a.unix_ms) / 1000.0;
  rates.interval_seconds = seconds;
  // Counters only grow; a smaller later value would be a bug, so it reads as zero, not negative.
  auto per_second = [seconds](std::uint64_t from, std::uint64_t to) {
    return to >= from ? static_cast<double>(to - from) / seconds : 0.0;
  };
  rates.accepts_per_second = per_second(a.accepts_total, b.accepts_total);
  rates.relayed_bytes_per_second = per_second(a.relayed_bytes_total, b.relayed_bytes_total);
  return rates;
}

std::string render_prometheus(const StatusView& view) {
  PromWriter w;
  w.family("strelay_build_info", "Version and public key of this relay (value is always 1).",
           "gauge");
  w.sample("strelay_build_info",
           "version=\"" + prom_label_value(view.info.version) + "\",public_key=\"" +
               prom_label_value(view.info.public_key) + "\"",
           "1");
  for (const auto& g : gauge_rows(view.metrics)) {
    const std::string name = "strelay_" + std::string(g.name);
    w.family(name, g.help, "gauge");
    w.sample(name, {}, std::to_string(g.value));
  }
  for (const auto& c : counter_rows(view.metrics)) {
    const std::string name = "strelay_" + std::string(c.name);
    w.family(name, c.help, "counter");
    for (const auto& [label, value] : c.series) {
      const std::string labels =
          c.label.empty() ? std::string()
                          : std::string(c.label) + "=\"" + prom_label_value(label) + "\"";
      w.sample(name, labels, std::to_string(value));
    }
  }
  write_histograms(w, view.metrics);
  w.family(
      "strelay_accept_rate",
      "Accepts per second over the last sample interval (or use rate(strelay_accepts_total[1m])).",
      "gauge");
  w.sample("strelay_accept_rate", {}, number(view.rates.accepts_per_second));
  w.family("strelay_log_suppressed_total",
           "Log lines dropped by the per-event rate limit (each is counted in a summary line).",
           "counter");
  w.sample("strelay_log_suppressed_total", {}, std::to_string(process_logger().suppressed_total()));
  w.family("strelay_uptime_seconds", "Seconds since the relay started.", "gauge");
  w.sample("strelay_uptime_seconds", {}, number(uptime_seconds(view.metrics)));
  if (view.process.cpu_seconds >= 0) {
    w.family("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
             "counter");
    w.sample("process_cpu_seconds_total", {}, number(view.process.cpu_seconds));
  }
  w.family("process_start_time_seconds",
           "Start time of the process since the Unix epoch in seconds.", "gauge");
  w.sample("process_start_time_seconds", {}, number(seconds_since_epoch(view.info.start_time)));
  if (view.process.open_fds >= 0) {
    w.family("process_open_fds", "Number of open file descriptors.", "gauge");
    w.sample("process_open_fds", {}, std::to_string(view.process.open_fds));
  }
  if (view.process.max_fds >= 0) {
    w.family("process_max_fds", "Maximum number of open file descriptors (soft RLIMIT_NOFILE).",
             "gauge");
    w.sample("process_max_fds", {}, std::to_string(view.process.max_fds));
  }
  if (view.process.resident_bytes >= 0) {
    w.family("process_resident_memory_bytes", "Resident memory size in bytes.", "gauge");
    w.sample("process_resident_memory_bytes", {}, std::to_string(view.process.resident_bytes));
  }
  return w.take();
}

std::string render_status_json(const StatusView& view) {
  Json j;
  j["version"] = view.info.version;
  j["public_key"] = view.info.public_key;
  // The ticket is shown as the JSON object it is; text that does not parse is shown as text.
  if (view.info.ticket_json.empty()) {
    j["ticket"] = nullptr;
  } else {
    auto ticket = Json::parse(view.info.ticket_json, nullptr, false);
    j["ticket"] = ticket.is_discarded() ? Json(view.info.ticket_json) : ticket;
  }
  j["start_time"] = format_utc(view.info.start_time);
  j["now"] = format_utc(view.now);
  j["uptime_seconds"] = static_cast<std::int64_t>(uptime_seconds(view.metrics));
  j["listen_addresses"] = view.info.listen_addresses;
  Json& gauges = j["gauges"] = Json::object();
  for (const auto& g : gauge_rows(view.metrics)) gauges[std::string(g.name)] = g.value;
  Json& counters = j["counters"] = Json::object();
  for (const auto& c : counter_rows(view.metrics)) {
    if (c.label.empty()) {
      counters[std::string(c.name)] = c.series.front().second;
      continue;
    }
    Json& family = counters[std::string(c.name)] = Json::object();
    for (const auto& [label, value] : c.series) family[std::string(label)] = value;
  }
  counters["log_suppressed_total"] = process_logger().suppressed_total();
  Json& histograms = j["histograms"] = Json::object();
  for (const auto& h : histogram_rows(view.metrics)) {
    Json buckets = Json::object();
    for (std::size_t i = 0; i <= Histogram::bounds.size(); ++i)
      buckets[bound_text(i)] = h.histogram.cumulative(i);
    histograms[std::string(h.name)] = {{"count", h.histogram.count()},
                                       {"sum_seconds", h.histogram.sum_seconds()},
                                       {"buckets", std::move(buckets)}};
  }
  j["rates"] = {{"accepts_per_second", view.rates.accepts_per_second},
                {"relayed_bytes_per_second", view.rates.relayed_bytes_per_second},
                {"interval_seconds", view.rates.interval_seconds}};
  j["process"] = {{"open_fds", view.process.open_fds},
                  {"max_fds", view.process.max_fds},
                  {"resident_memory_bytes", view.process.resident_bytes},
                  {"cpu_seconds", view.process.cpu_seconds}};
  Json& limits = j["limits"] = Json::object();
  for (const auto& limit : view.info.limits) limits[limit.name] = limit_json(limit);
  // Who holds the connections (issue 14): prefixes and counts, never a key.
  Json& heaviest = j["heaviest_sources"] = Json::array();
  if (view.metrics.heaviest_sources) {
    for (const auto& load : view.metrics.heaviest_sources()) {
      heaviest.push_back(
          {{"prefix", load.prefix}, {"connections", load.connections}, {"pending", load.pending}});
    }
  }
  // The busiest open tunnels (issue 20): key fingerprints, age, bytes and rate each way.
  Json& tunnels = j["open_tunnels"] = Json::array();
  if (view.metrics.busiest_tunnels) {
    for (const auto& t : view.metrics.busiest_tunnels()) {
      tunnels.push_back({{"connector", t.connector},
                         {"listener", t.listener},
                         {"age_seconds", static_cast<std::int64_t>(t.age_seconds)},
                         {"bytes_to_listener", t.bytes[0]},
                         {"bytes_to_connector", t.bytes[1]},
                         {"bytes_per_second_to_listener", t.rate[0]},
                         {"bytes_per_second_to_connector", t.rate[1]}});
    }
  }
  return j.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

std::string render_samples_json(const std::vector<MetricsSample>& samples) {
  Json list = Json::array();
  for (const auto& s : samples) {
    list.push_back({{"t", s.unix_ms},
                    {"bytes", s.relayed_bytes_total},
                    {"accepts", s.accepts_total},
                    {"connections", s.connections},
                    {"tunnels", s.tunnels},
                    {"listeners", s.listeners}});
  }
  const auto interval = std::chrono::duration<double>(status_sample_interval).count();
  Json j{{"interval_seconds", interval}, {"samples", std::move(list)}};
  return j.dump() + "\n";
}

std::string format_utc(std::chrono::system_clock::time_point when) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(when);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char buf[32];
  const auto n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return std::string(buf, n);
}

}  // namespace strelay
