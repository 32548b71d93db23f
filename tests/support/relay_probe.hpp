// Test support for the relay's end-to-end and resource tests: what a test needs besides a node.
//
//  - Probe: reads a running strelay from outside, as an operator would: /status and /metrics on
//    its --metrics-addr port (parsed from the start-up line), CPU time and resident memory
//    from /proc/PID/stat and /proc/PID/statm (readable even though strelay is not dumpable).
//  - Gauges: the gauges every resource test brings back to baseline.
//  - RawSocket: a plain TCP connection from a chosen 127.0.0.x source, for silent, dripping or
//    mass connections, where the protocol is not wanted.
//  - open_connection_from: relay_client's open_connection from a chosen source address.
//  - relay_seed: the relay identity's seed in base64url, to check that no log line holds it.
// The frame every resource test runs in (the canary, WatchedRelay and its four checks,
// PrefixedRelay) is in support/watched_relay.hpp.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "support/relay_client.hpp"

namespace strelay::test {

// Resident memory says something about the relay only without a sanitizer: ASan holds freed
// memory in quarantine (up to 256 MiB) and pads every block, so in that build the memory bounds
// of the tests are reported, not asserted. (The binaries of one build share its flags.)
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool memory_is_measurable = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
inline constexpr bool memory_is_measurable = false;
#else
inline constexpr bool memory_is_measurable = true;
#endif
#else
inline constexpr bool memory_is_measurable = true;
#endif

// Flags for relays whose tests open many connections from 127.0.0.1 and are about other
// things: the per-source handshake rate (strelay_limits_test tests it) and the per-source caps
// of fair share (adversarial_fairness_test tests those) lifted.
inline const std::vector<std::string> fast_handshakes{"--handshake-rate", "100000",
                                                      "--handshake-burst", "100000"};
inline const std::vector<std::string> many_nodes_per_source{
    "--max-connections-per-source",      "100000",  "--max-listeners-per-source",        "100000",
    "--max-pending-connects-per-source", "100000",  "--max-pending-connects-per-target", "100000",
    "--connect-rate-per-source",         "1000000", "--connect-burst-per-source",        "1000000"};

// ---------------------------------------------------------------- reading the relay

// The gauges that must come back to baseline after every resource test.
struct Gauges {
  std::int64_t connections = -1;
  std::int64_t pending_handshakes = -1;
  std::int64_t listeners = -1;
  std::int64_t half_tunnels = -1;
  std::int64_t tunnels = -1;
  std::int64_t tunnel_buffered_bytes = -1;
  std::int64_t topic_memberships = -1;
  std::int64_t open_fds = -1;  // process_open_fds, counting the scrape's own connection
  friend bool operator==(const Gauges&, const Gauges&) = default;
};
std::string to_string(const Gauges& gauges);

struct HttpReply {
  int status = 0;
  std::string headers;
  std::string body;
};

// "metrics http://127.0.0.1:PORT/" in a start-up line; 0 when absent.
unsigned short parse_metrics_port(const std::string& log);
// The whole of a text file (empty when unreadable).
std::string read_file_text(const std::filesystem::path& path);

class Probe {
 public:
  Probe(pid_t pid, unsigned short metrics_port) : pid_(pid), port_(metrics_port) {}
  // For a relay started with --metrics-addr 127.0.0.1:0 (REQUIREs the port in its log).
  explicit Probe(const RelayProcess& relay);

  unsigned short port() const { return port_; }
  // GET over a fresh connection (Connection: close); nullopt when it fails or times out.
  std::optional<HttpReply> get(std::string_view path, std::chrono::milliseconds timeout =
                                                          std::chrono::milliseconds(3000)) const;
  nlohmann::json status() const;  // /status, REQUIRE'd to answer 200 with JSON
  Gauges gauges() const;
  // A counter from /status: counters[family][label], or counters[family] without a label.
  std::uint64_t counter(std::string_view family, std::string_view label = {}) const;
  std::int64_t gauge(std::string_view name) const;

  // utime + stime of the process, in seconds (/proc/PID/stat).
  double cpu_seconds() const;
  // Resident memory in bytes (/proc/PID/statm).
  std::int64_t rss_bytes() const;
  // Resident memory as the relay reports it on /status (process.resident_memory_bytes); the
  // relay samples its process figures at most once a second.
  std::int64_t status_rss_bytes() const;

  // Polls until the gauges equal `baseline`, up to `limit`; `last` gets the last reading.
  bool wait_for_gauges(const Gauges& baseline, std::chrono::milliseconds limit, Gauges& last) const;
  // Polls the stable baseline: two equal readings 1.1 s apart (the relay re-reads its open fds at
  // most once a second), with nothing buffered or pending. Call warm_up() first.
  Gauges settled_gauges(std::chrono::milliseconds limit = std::chrono::milliseconds(5000)) const;

 private:
  pid_t pid_;
  unsigned short port_;
};

// Opens and closes a few connections (from 127.0.0.8) so that every worker thread of the relay
// has opened its descriptors: open_fds then stays put for a baseline.
void warm_up(const RelayAddress& relay, const Probe& probe);

// Polls `condition` every 20 ms until it holds or `limit` passes.
template <class F>
bool eventually(F condition, std::chrono::milliseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (condition()) return true;
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// The relay identity's seed, base64url, from dir()/relay.ident: it must never be logged.
std::string relay_seed(const std::filesystem::path& ident_file);

// Raises this process's soft RLIMIT_NOFILE to its hard limit; returns the soft limit in force.
std::uint64_t raise_test_nofile_limit();

// ---------------------------------------------------------------- raw connections

// A non-blocking TCP connection from `source` (any 127.0.0.0/8 address) that never speaks
// unless told to. Move-only; closes on destruction.
class RawSocket {
 public:
  RawSocket() = default;
  // Connects (blocking, loopback completes at once). fd() < 0 when it failed; error() says why.
  RawSocket(const std::string& source, const tcp::endpoint& to);
  // Takes ownership of a connected socket (e.g. released from an Asio socket); made non-blocking.
  static RawSocket adopt(int fd);
  RawSocket(RawSocket&& other) noexcept
      : fd_(std::exchange(other.fd_, -1)), error_(other.error_), received_(other.received_) {}
  RawSocket& operator=(RawSocket&& other) noexcept;
  RawSocket(const RawSocket&) = delete;
  RawSocket& operator=(const RawSocket&) = delete;
  ~RawSocket() { close(); }

  int fd() const { return fd_; }
  int error() const { return error_; }
  bool ok() const { return fd_ >= 0; }
  // True when the peer closed (EOF or reset), looking without blocking; unread data is drained
  // (and counted in received()).
  bool peer_closed();
  std::uint64_t received() const { return received_; }
  // Waits up to `limit` for the peer to close; true when it did.
  bool wait_peer_closed(std::chrono::milliseconds limit);
  // Sends what it can without blocking; returns bytes sent (0 when the socket is full),
  // -1 once the peer is gone.
  std::int64_t send_some(std::span<const std::uint8_t> bytes);
  // Sets a small receive buffer (before data flows), so a non-reader fills up sooner.
  void set_receive_buffer(int bytes);
  void close();

 private:
  int fd_ = -1;
  int error_ = 0;
  std::uint64_t received_ = 0;
};

// The bytes a client sends before the relay answers: the preamble, then msg1 (a 2-byte length
// and a fresh X25519 ephemeral public key).
std::vector<std::uint8_t> preamble_and_msg1();

// ---------------------------------------------------------------- protocol connections

// open_connection() from a chosen source address (e.g. 127.0.0.9), so per-source limits of the
// relay apply to it apart from the test's other clients.
boost::asio::awaitable<RelayConnection> open_connection_from(
    const boost::asio::ip::address& source, const RelayAddress& relay, const Identity& self,
    const NodeMessage& request,
    std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));

// A listener, and one pipe made by a connect and an accept through the relay; REQUIREs every
// step to succeed (ListenOk, IncomingConnection{connector}, Connected on both with the right peer).
struct PairedPipe {
  RelayConnection listener;
  tcp::socket connector;
  tcp::socket acceptor;
};
boost::asio::awaitable<PairedPipe> make_pipe(const RelayAddress& relay, const Identity& listener,
                                             const Identity& connector);

// Runs `op` with a deadline on the current executor: true if it finished, false on timeout
// (the operation is then cancelled).
boost::asio::awaitable<bool> with_timeout(boost::asio::awaitable<void> op,
                                          std::chrono::milliseconds limit);

// Runs body(0), ..., body(n - 1) concurrently on the current executor and waits for them all;
// rethrows the first exception (a failed REQUIRE) once all have ended.
boost::asio::awaitable<void> run_concurrently(
    int n, std::function<boost::asio::awaitable<void>(int)> body);

}  // namespace strelay::test
