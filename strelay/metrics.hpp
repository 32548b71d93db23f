// The relay's counters and gauges, and their renderings for /metrics, /status and /samples.
//
// Every member of Metrics is a relaxed atomic, so a hot path (a tunnel's byte count, an
// accept) pays one uncontended atomic add and never takes a lock. The set is fixed: each
// metric is a named member, and each labelled family is indexed by an enum, so a typo is a
// compile error and a scrape never allocates per metric name.
//
// Ownership: Metrics is owned by the daemon and outlives every session, the HTTP server and
// the io_context threads. Any thread may bump any member. SampleRing has its own mutex; it is
// written by the HTTP server's sampling timer and read by the HTTP handlers.
//
// Rates: Prometheus users take rate(strelay_accepts_total[1m]) and
// rate(strelay_relayed_bytes_total[1m]). For people without Prometheus, /status, / and the
// strelay_accept_rate gauge report the rate over the last sample interval (status_sample_interval).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/protocol.hpp"
#include "strelay/bandwidth.hpp"
#include "strelay/carrier.hpp"

namespace strelay {

// ---------------------------------------------------------------- label sets

enum class AcceptError : std::uint8_t { emfile, enfile, other };
enum class HandshakeOutcome : std::uint8_t { ok, failed, timeout, bad_magic, bad_version, refused };
enum class LimitReason : std::uint8_t {
  pending_total,       // max_pending_handshakes
  pending_per_source,  // max_pending_per_source
  rate_per_source,     // handshake rate per source
  connections_total,   // max connections
  connect_rate,        // connect requests per identity
  half_tunnels,        // half-tunnel table full
  stalled,             // a peer stopped reading past the write-stall timeout
  // issue 14, fair under attack:
  pending_evicted,          // a pending handshake gave its slot to a lighter source (fair share)
  connection_evicted,       // an established connection was told Close{overloaded} (fair share)
  connections_per_source,   // max-connections-per-source / -per-prefix
  listeners_per_source,     // max-listeners-per-source
  half_tunnels_per_source,  // max-pending-connects-per-source
  half_tunnels_per_target,  // max-pending-connects-per-target
  connect_rate_per_source,  // connect-rate-per-source
  control_rate,             // control frames per connection
  http_per_source,          // the HTTP endpoint's per-source cap
  http_idle_closed,         // an idle HTTP keep-alive connection closed to make room
  not_allowed_tunnel,       // a tunnel stopped by a reload that revoked one end's key
  // issue 18, topics:
  topics_per_node,    // a join beyond the node's topics
  members_per_topic,  // a join into a full topic
  topic_churn,        // joins and leaves too fast on one listening connection
  introductions,      // a pair not introduced: an end's introduction rate was spent
};
enum class ConnectOutcome : std::uint8_t {
  connected,
  not_found,
  rejected,
  timeout,
  peer_gone,
  rate_limited,
  overloaded,
  not_allowed,
  no_pending,
};
enum class TunnelDirection : std::uint8_t { to_listener, to_connector };
enum class TunnelMode : std::uint8_t { splice, copy };
enum class ReloadOutcome : std::uint8_t { ok, failed };
// How the admission hook decided one Listen or Connect (strelay/admission_hook.hpp).
enum class HookOutcome : std::uint8_t {
  allowed,         // the hook said yes
  denied,          // the hook said no: Refused{not_allowed}
  cached_allowed,  // a cached yes
  cached_denied,   // a cached no
  failed_open,     // the hook failed (timeout, connection, status, answer); admitted by policy
  failed_closed,   // the hook failed; refused by policy: Refused{overloaded}
  busy_open,       // --admission-max-in-flight requests were out; admitted by policy
  busy_closed,     // --admission-max-in-flight requests were out; Refused{overloaded}
};
// Why the relay port refused a connection before any session (strelay/front, websocket).
enum class CarrierRefusal : std::uint8_t {
  bad_request,             // malformed HTTP, or bytes that are neither strelay nor HTTP
  header_too_large,        // the HTTP request over --max-request-bytes: 431
  not_websocket,           // a plain request at the WebSocket path: 426
  bad_upgrade,             // an upgrade Beast refused (no key, wrong version)
  bad_origin,              // an Origin not in --allow-origin: 403
  untrusted_forwarded,     // X-Forwarded-For / Forwarded from an address not trusted: 403
  bad_forwarded,           // a trusted proxy's forwarding header that names no address: 400
  untrusted_proxy_header,  // a PROXY header from an address not trusted
  bad_proxy_header,        // a malformed PROXY header (or one that lies about its length)
  deadline,                // the handshake deadline passed before the upgrade was done
  text_message,            // a WebSocket text message: close 1003
  protocol_error,          // a WebSocket protocol violation: close 1002
  too_big,                 // a WebSocket message over the limit: close 1009
  stalled,                 // a WebSocket peer that stopped reading
  busy,                    // admission refused a trusted proxy's client: 503
};
enum class WebOutcome : std::uint8_t { file, not_found, plain, method, bad_path };

// Each label set lists its values with their label text, in rendering order.
template <class E>
struct MetricLabels;

#define STRELAY_LABELS(E, ...)                                             \
  template <>                                                              \
  struct MetricLabels<E> {                                                 \
    static constexpr std::pair<E, std::string_view> all[] = {__VA_ARGS__}; \
  }
STRELAY_LABELS(AcceptError, {AcceptError::emfile, "emfile"}, {AcceptError::enfile, "enfile"},
               {AcceptError::other, "other"});
STRELAY_LABELS(HandshakeOutcome, {HandshakeOutcome::ok, "ok"}, {HandshakeOutcome::failed, "failed"},
               {HandshakeOutcome::timeout, "timeout"}, {HandshakeOutcome::bad_magic, "bad_magic"},
               {HandshakeOutcome::bad_version, "bad_version"},
               {HandshakeOutcome::refused, "refused"});
STRELAY_LABELS(LimitReason, {LimitReason::pending_total, "pending_total"},
               {LimitReason::pending_per_source, "pending_per_source"},
               {LimitReason::rate_per_source, "rate_per_source"},
               {LimitReason::connections_total, "connections_total"},
               {LimitReason::connect_rate, "connect_rate"},
               {LimitReason::half_tunnels, "half_tunnels"}, {LimitReason::stalled, "stalled"},
               {LimitReason::pending_evicted, "pending_evicted"},
               {LimitReason::connection_evicted, "connection_evicted"},
               {LimitReason::connections_per_source, "connections_per_source"},
               {LimitReason::listeners_per_source, "listeners_per_source"},
               {LimitReason::half_tunnels_per_source, "half_tunnels_per_source"},
               {LimitReason::half_tunnels_per_target, "half_tunnels_per_target"},
               {LimitReason::connect_rate_per_source, "connect_rate_per_source"},
               {LimitReason::control_rate, "control_rate"},
               {LimitReason::http_per_source, "http_per_source"},
               {LimitReason::http_idle_closed, "http_idle_closed"},
               {LimitReason::not_allowed_tunnel, "not_allowed_tunnel"},
               {LimitReason::topics_per_node, "topics_per_node"},
               {LimitReason::members_per_topic, "members_per_topic"},
               {LimitReason::topic_churn, "topic_churn"},
               {LimitReason::introductions, "introductions"});
// Close reasons have one name table, beside the enum (common/protocol.hpp): their labels are it.
template <>
struct MetricLabels<CloseReason> {
  static constexpr auto all = [] {
    std::array<std::pair<CloseReason, std::string_view>, all_close_reasons.size()> labels{};
    for (std::size_t i = 0; i < labels.size(); ++i) {
      labels[i] = {all_close_reasons[i], to_string(all_close_reasons[i])};
    }
    return labels;
  }();
};
STRELAY_LABELS(ConnectOutcome, {ConnectOutcome::connected, "connected"},
               {ConnectOutcome::not_found, "not_found"}, {ConnectOutcome::rejected, "rejected"},
               {ConnectOutcome::timeout, "timeout"}, {ConnectOutcome::peer_gone, "peer_gone"},
               {ConnectOutcome::rate_limited, "rate_limited"},
               {ConnectOutcome::overloaded, "overloaded"},
               {ConnectOutcome::not_allowed, "not_allowed"},
               {ConnectOutcome::no_pending, "no_pending"});
STRELAY_LABELS(TunnelDirection, {TunnelDirection::to_listener, "to_listener"},
               {TunnelDirection::to_connector, "to_connector"});
STRELAY_LABELS(TunnelMode, {TunnelMode::splice, "splice"}, {TunnelMode::copy, "copy"});
STRELAY_LABELS(ReloadOutcome, {ReloadOutcome::ok, "ok"}, {ReloadOutcome::failed, "failed"});
STRELAY_LABELS(HookOutcome, {HookOutcome::allowed, "allowed"}, {HookOutcome::denied, "denied"},
               {HookOutcome::cached_allowed, "cached_allowed"},
               {HookOutcome::cached_denied, "cached_denied"},
               {HookOutcome::failed_open, "failed_open"},
               {HookOutcome::failed_closed, "failed_closed"}, {HookOutcome::busy_open, "busy_open"},
               {HookOutcome::busy_closed, "busy_closed"});
STRELAY_LABELS(Carrier, {Carrier::tcp, "tcp"}, {Carrier::websocket, "websocket"});
STRELAY_LABELS(CarrierRefusal, {CarrierRefusal::bad_request, "bad_request"},
               {CarrierRefusal::header_too_large, "header_too_large"},
               {CarrierRefusal::not_websocket, "not_websocket"},
               {CarrierRefusal::bad_upgrade, "bad_upgrade"},
               {CarrierRefusal::bad_origin, "bad_origin"},
               {CarrierRefusal::untrusted_forwarded, "untrusted_forwarded"},
               {CarrierRefusal::bad_forwarded, "bad_forwarded"},
               {CarrierRefusal::untrusted_proxy_header, "untrusted_proxy_header"},
               {CarrierRefusal::bad_proxy_header, "bad_proxy_header"},
               {CarrierRefusal::deadline, "deadline"},
               {CarrierRefusal::text_message, "text_message"},
               {CarrierRefusal::protocol_error, "protocol_error"},
               {CarrierRefusal::too_big, "too_big"}, {CarrierRefusal::stalled, "stalled"},
               {CarrierRefusal::busy, "busy"});
STRELAY_LABELS(WebOutcome, {WebOutcome::file, "file"}, {WebOutcome::not_found, "not_found"},
               {WebOutcome::plain, "plain"}, {WebOutcome::method, "method"},
               {WebOutcome::bad_path, "bad_path"});
STRELAY_LABELS(BandwidthScope, {BandwidthScope::global, "global"},
               {BandwidthScope::tunnel, "tunnel"});
#undef STRELAY_LABELS

// The label text of a value ("unknown" for a value outside the set, e.g. a cast wire byte).
template <class E>
constexpr std::string_view metric_label(E value) {
  for (const auto& [v, name] : MetricLabels<E>::all) {
    if (v == value) return name;
  }
  return "unknown";
}

// ---------------------------------------------------------------- metric types

class Counter {
 public:
  void inc(std::uint64_t n = 1) noexcept { value_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t get() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

class Gauge {
 public:
  void add(std::int64_t n = 1) noexcept { value_.fetch_add(n, std::memory_order_relaxed); }
  void sub(std::int64_t n = 1) noexcept { value_.fetch_sub(n, std::memory_order_relaxed); }
  void set(std::int64_t n) noexcept { value_.store(n, std::memory_order_relaxed); }
  std::int64_t get() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::int64_t> value_{0};
};

// Holds one unit of a gauge for its lifetime (a connection, a listener, a tunnel), so no
// teardown path can forget the decrement.
class GaugeHold {
 public:
  GaugeHold() = default;
  explicit GaugeHold(Gauge& gauge) noexcept : gauge_(&gauge) { gauge_->add(); }
  ~GaugeHold() { release(); }
  GaugeHold(GaugeHold&& other) noexcept : gauge_(std::exchange(other.gauge_, nullptr)) {}
  GaugeHold& operator=(GaugeHold&& other) noexcept {
    if (this != &other) {
      release();
      gauge_ = std::exchange(other.gauge_, nullptr);
    }
    return *this;
  }
  GaugeHold(const GaugeHold&) = delete;
  GaugeHold& operator=(const GaugeHold&) = delete;
  void release() noexcept {
    if (gauge_ != nullptr) std::exchange(gauge_, nullptr)->sub();
  }

 private:
  Gauge* gauge_ = nullptr;
};

// A duration histogram with fixed buckets, in seconds. observe() is three relaxed adds, once per
// handshake or tunnel set-up (never per byte); a scrape reads the buckets without a lock, so a
// scrape racing an observe() may see a count one ahead of its bucket, as Prometheus allows.
class Histogram {
 public:
  static constexpr std::array<double, 11> bounds = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                    0.25,  0.5,   1,    2.5,   10};

  void observe(std::chrono::steady_clock::duration d) noexcept;
  // Observations at or below bounds[i] (cumulative, as Prometheus's `le`); i == bounds.size()
  // is every observation (+Inf).
  std::uint64_t cumulative(std::size_t i) const noexcept;
  std::uint64_t count() const noexcept { return count_.load(std::memory_order_relaxed); }
  double sum_seconds() const noexcept {
    return static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9;
  }

 private:
  std::array<std::atomic<std::uint64_t>, bounds.size() + 1> buckets_{};  // not cumulative
  std::atomic<std::uint64_t> sum_ns_{0};
  std::atomic<std::uint64_t> count_{0};
};

// Counters labelled by one enum; a value outside the set is counted under "unknown".
template <class E>
class CounterFamily {
 public:
  static constexpr std::size_t size = std::size(MetricLabels<E>::all);

  void inc(E value, std::uint64_t n = 1) noexcept {
    values_[index_of(value)].fetch_add(n, std::memory_order_relaxed);
  }
  std::uint64_t get(E value) const noexcept {
    return values_[index_of(value)].load(std::memory_order_relaxed);
  }
  std::uint64_t unknown() const noexcept { return values_[size].load(std::memory_order_relaxed); }
  std::uint64_t total() const noexcept {
    std::uint64_t sum = 0;
    for (const auto& v : values_) sum += v.load(std::memory_order_relaxed);
    return sum;
  }

 private:
  static constexpr std::size_t index_of(E value) noexcept {
    for (std::size_t i = 0; i < size; ++i) {
      if (MetricLabels<E>::all[i].first == value) return i;
    }
    return size;
  }
  std::array<std::atomic<std::uint64_t>, size + 1> values_{};
};

struct Metrics {
  Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // gauges
  Gauge connections;               // open TCP connections on the relay ports, in every state
  Gauge pending_handshakes;        // accepted, first request not yet handled
  Gauge listeners;                 // keys with a live Listen
  Gauge half_tunnels;              // Connects waiting for the listener's Accept
  Gauge standbys;                  // listeners' parked standby connections (issue 17.2)
  Gauge topics;                    // topic ids with at least one member (never the ids)
  Gauge topic_memberships;         // (listener, topic) pairs
  Gauge tunnels;                   // paired pipes
  Gauge tunnel_buffered_bytes;     // user-space bytes held in tunnel buffers, both directions
  Gauge listen_sockets;            // bound --laddr sockets
  Gauge allowlist_keys;            // keys on the allowlist; -1 when no allowlist (a public relay)
  Gauge websocket_connections;     // open WebSockets on the relay port (each is also a connection)
  Gauge websocket_buffered_bytes;  // bytes in WebSocket bridges' buffers, both directions
  Gauge admission_hook_in_flight;  // admission hook requests out now

  // counters
  Counter accepts_total;
  CounterFamily<AcceptError> accept_errors_total;
  CounterFamily<HandshakeOutcome> handshakes_total;
  CounterFamily<LimitReason> limit_hits_total;
  CounterFamily<CloseReason> closes_total;
  CounterFamily<ConnectOutcome> connect_outcomes_total;
  CounterFamily<TunnelDirection> bytes_relayed_total;  // exported as relayed_bytes_total
  CounterFamily<TunnelMode> tunnels_total;             // by how the tunnel moves bytes
  Counter listen_total;
  Counter replaced_total;
  CounterFamily<ReloadOutcome> reloads_total;
  CounterFamily<Carrier> carrier_sessions_total;         // connections handed to a session
  CounterFamily<CarrierRefusal> carrier_refusals_total;  // refused before any session
  Counter health_checks_total;  // closed before sending a byte: not a failed handshake
  CounterFamily<WebOutcome> web_requests_total;     // HTTP answered on the relay port (no upgrade)
  CounterFamily<HookOutcome> admission_hook_total;  // Listen/Connect decided by the hook
  CounterFamily<BandwidthScope> bandwidth_waits_total;  // a tunnel direction paced, by whose limit

  // histograms
  Histogram handshake_duration_seconds;     // the session's handshake, successful ones
  Histogram tunnel_setup_duration_seconds;  // a Connect request to its tunnel's start

  // The heaviest sources by prefix (counts only, never keys), for /status. The server sets the
  // source before the HTTP endpoint starts; it is read on the HTTP strand.
  struct SourceLoad {
    std::string prefix;  // "192.0.2.7", "2001:db8:1::/48", "198.51.100.0/24"
    std::uint64_t connections = 0;
    std::uint64_t pending = 0;
  };
  std::function<std::vector<SourceLoad>()> heaviest_sources;

  // The open tunnels that move the most bytes now (then the oldest), at most
  // status_tunnels_shown, for /status and the page. Set by the server like heaviest_sources.
  struct TunnelLoad {
    std::string connector;  // key fingerprints (PublicKey::fingerprint)
    std::string listener;
    double age_seconds = 0;
    std::array<std::uint64_t, 2> bytes{};  // [0]: to the listener, [1]: to the connector
    std::array<double, 2> rate{};          // bytes per second since the last look (>= 1 s ago)
  };
  std::function<std::vector<TunnelLoad>()> busiest_tunnels;

  std::chrono::steady_clock::duration uptime() const {
    return std::chrono::steady_clock::now() - started_;
  }

 private:
  std::chrono::steady_clock::time_point started_;
};

// ---------------------------------------------------------------- status and samples

// One limit as /status shows it: a number in the unit its name ends with
// ("handshake_timeout_seconds": 10), or, for a choice, text ("tunnel_socket_buffers": "clamp").
struct LimitValue {
  std::string name;
  double number = 0;
  std::string text{};  // empty: the limit is `number`
  friend bool operator==(const LimitValue&, const LimitValue&) = default;
};

// What the status renderers need besides the numbers. Set by the daemon at start (and again
// after a SIGHUP reload changes the limits).
struct StatusInfo {
  std::string version;
  std::string public_key;   // base64url
  std::string ticket_json;  // the relay ticket when --public-address is set; may be empty
  std::string
      qr_svg;  // an SVG of the ticket's QR code from common/qr; trusted markup; may be empty
  std::vector<std::string> listen_addresses;
  std::chrono::system_clock::time_point start_time{};
  std::vector<LimitValue> limits;
};

// Read at scrape time from /proc; -1 where unavailable.
struct ProcessStats {
  std::int64_t open_fds = -1;
  std::int64_t max_fds = -1;  // RLIMIT_NOFILE soft limit
  std::int64_t resident_bytes = -1;
  double cpu_seconds = -1;  // user and system CPU time (getrusage)
};
ProcessStats read_process_stats();

struct MetricsSample {
  std::int64_t unix_ms = 0;
  std::uint64_t relayed_bytes_total = 0;
  std::uint64_t accepts_total = 0;
  std::int64_t connections = 0;
  std::int64_t tunnels = 0;
  std::int64_t listeners = 0;
};
MetricsSample take_sample(const Metrics& metrics, std::chrono::system_clock::time_point now);

// The last `capacity` samples (status_sample_count every status_sample_interval: 10 minutes).
class SampleRing {
 public:
  explicit SampleRing(std::size_t capacity = status_sample_count) : capacity_(capacity) {}
  void push(const MetricsSample& sample);
  std::vector<MetricsSample> snapshot() const;

 private:
  std::size_t capacity_;
  mutable std::mutex mutex_;  // guards samples_
  std::deque<MetricsSample> samples_;
};

// Per-second rates between the last two samples; zero with fewer than two.
struct Rates {
  double accepts_per_second = 0;
  double relayed_bytes_per_second = 0;
  double interval_seconds = 0;
};
Rates compute_rates(const std::vector<MetricsSample>& samples);

// Everything a renderer reads, gathered once per request.
struct StatusView {
  const Metrics& metrics;
  const StatusInfo& info;
  ProcessStats process;
  Rates rates;
  std::chrono::system_clock::time_point now;
};

// Prometheus text exposition format 0.0.4: HELP and TYPE for each family, strelay_ prefix,
// plus the conventional process_* metrics (CPU seconds, open fds, max fds, resident memory,
// start time), and the duration histograms (_bucket{le}, _sum, _count).
std::string render_prometheus(const StatusView& view);
// /status: version, key, ticket, uptime, addresses, every gauge and counter, rates, limits.
std::string render_status_json(const StatusView& view);
// /samples: {"interval_seconds":5,"samples":[{"t":unix_ms,"bytes":..,"accepts":..,...}]}
std::string render_samples_json(const std::vector<MetricsSample>& samples);

// 2024-05-01T12:00:00Z
std::string format_utc(std::chrono::system_clock::time_point when);

}  // namespace strelay
