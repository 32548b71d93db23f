// Test support for the relay's end-to-end and resource tests: what a test needs besides a node.
//
//  - Probe: reads a running strelay from outside, as an operator would: /status and /metrics on
//    its --metrics-addr port (parsed from the start-up line), CPU time and resident memory
//    from /proc/PID/stat and /proc/PID/statm (readable even though strelay is not dumpable).
//  - Gauges: the gauges every resource test brings back to baseline.
//  - RawSocket: a plain TCP connection from a chosen 127.0.0.x source, for silent, dripping or
//    mass connections, where the protocol is not wanted.
//  - open_connection_from: relay_client's open_connection from a chosen source address.
//  - Canary: a listener and a paired tunnel that ping-pong bytes on their own thread for the
//    whole test, so a test can tell whether anything else was disturbed.
//  - PrefixedRelay: strelay started under a wrapper command (prlimit), which RelayProcess
//    cannot do.
//  - relay_seed: the relay identity's seed in base64url, to check that no log line holds it.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <nlohmann/json.hpp>

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

// ---------------------------------------------------------------- reading the relay

// The gauges that must come back to baseline after every resource test.
struct Gauges {
  std::int64_t connections = -1;
  std::int64_t pending_handshakes = -1;
  std::int64_t listeners = -1;
  std::int64_t half_tunnels = -1;
  std::int64_t tunnels = -1;
  std::int64_t tunnel_buffered_bytes = -1;
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

class Probe {
 public:
  Probe(pid_t pid, unsigned short metrics_port) : pid_(pid), port_(metrics_port) {}
  // For a relay started with --metrics-addr 127.0.0.1:0 (REQUIREs the port in its log).
  explicit Probe(const RelayProcess& relay);

  unsigned short port() const { return port_; }
  // GET over a fresh connection (Connection: close); nullopt when it fails or times out.
  std::optional<HttpReply> get(std::string_view path,
                               std::chrono::milliseconds timeout = std::chrono::milliseconds(3000)) const;
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
    const NodeMessage& request, std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));

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
boost::asio::awaitable<bool> with_timeout(boost::asio::awaitable<void> op, std::chrono::milliseconds limit);

// Runs body(0), ..., body(n - 1) concurrently on the current executor and waits for them all;
// rethrows the first exception (a failed REQUIRE) once all have ended.
boost::asio::awaitable<void> run_concurrently(int n, std::function<boost::asio::awaitable<void>(int)> body);

// ---------------------------------------------------------------- the canary

// A listener and one paired tunnel through the relay, from source 127.0.0.9, on their own
// thread: every 100 ms the connector sends 16 bytes and the acceptor echoes them. The listener
// answers keepalive pings. Any failure (a wrong echo, an echo later than 5 s, a close of the
// listener or of the pipe) is recorded; the test asserts at the end.
class Canary {
 public:
  explicit Canary(const RelayAddress& relay, const std::string& source = "127.0.0.9");
  ~Canary();
  Canary(const Canary&) = delete;
  Canary& operator=(const Canary&) = delete;

  // Waits until `n` more round trips have succeeded since the call (false on failure or after
  // `limit`).
  bool round_trips(int n, std::chrono::milliseconds limit = std::chrono::milliseconds(10000));
  int completed() const { return completed_.load(); }
  int failures() const { return failures_.load(); }
  std::string error() const;
  // Ends the pairing (closes all three connections) and joins the thread.
  void stop();

 private:
  boost::asio::awaitable<void> run(RelayAddress relay, boost::asio::ip::address source);
  boost::asio::awaitable<void> keep_listening(Channel& listener);
  boost::asio::awaitable<void> echo(tcp::socket& acceptor);
  boost::asio::awaitable<void> ping_pong(tcp::socket& connector);
  void fail(const std::string& what);

  boost::asio::io_context ioc_;
  std::thread thread_;
  std::atomic<bool> ready_{false};
  std::atomic<bool> stopping_{false};
  std::atomic<int> completed_{0};
  std::atomic<int> failures_{0};
  mutable std::mutex mutex_;  // guards error_
  std::string error_;
};

// ---------------------------------------------------------------- the frame of a test

// A relay started with --metrics-addr 127.0.0.1:0 and `extra`, a canary through it, and the
// gauges' baseline taken once the canary is paired. check_clean() is every test's ending.
class WatchedRelay {
 public:
  explicit WatchedRelay(std::vector<std::string> extra = {}, bool with_canary = true);

  RelayProcess& process() { return relay_; }
  const RelayAddress& address() const { return relay_.address(); }
  const Probe& probe() const { return probe_; }
  const Gauges& baseline() const { return baseline_; }
  Canary* canary() { return canary_ ? &*canary_ : nullptr; }

  // The four checks that end every test (adversarial-tests.md):
  //  1. the canary still round-trips, and never failed;
  //  2. every gauge (open fds and buffered bytes included) is back to its baseline within
  //     `limit` (the test's longest timeout + 1 s);
  //  3. the relay exits 0 on SIGTERM, and its stderr holds no sanitizer report;
  //  4. its log holds no secret: the relay's seed and signing key, and every secret in the
  //     SecretLedger (node seeds, ephemeral secrets and DH outputs of hostile clients), in hex,
  //     base64url or base64.
  // The relay is stopped afterwards: call it last.
  void check_clean(std::chrono::milliseconds limit);

 private:
  RelayProcess relay_;
  Probe probe_;
  std::optional<Canary> canary_;
  Gauges baseline_;
};

// CHECKs that neither the relay's identity seed and signing key (in hex, base64url or base64,
// whole or their first half) nor any secret of the SecretLedger appears in `log`.
void check_no_secret_logged(const std::filesystem::path& ident_file, const std::string& log);
// CHECKs that `log` (a relay's stderr) holds no report of ASan, UBSan, LSan or TSan.
void check_no_sanitizer_report(const std::string& log);
// SIGTERM, then CHECKs an exit status of 0 within `limit`, and no sanitizer report.
void check_clean_exit(RelayProcess& relay, std::chrono::milliseconds limit);

// ---------------------------------------------------------------- a wrapped relay

// strelay under a wrapper, e.g. {"prlimit", "--nofile=64:64", "--"}: the wrapper must exec
// strelay so the PID is strelay's. A fresh identity; --laddr 127.0.0.1:0 and
// --metrics-addr 127.0.0.1:0 are added before `extra`.
class PrefixedRelay {
 public:
  PrefixedRelay(std::vector<std::string> prefix, std::vector<std::string> extra);
  ~PrefixedRelay();
  PrefixedRelay(const PrefixedRelay&) = delete;
  PrefixedRelay& operator=(const PrefixedRelay&) = delete;

  const RelayAddress& address() const { return address_; }
  pid_t pid() const { return pid_; }
  Probe probe() const { return Probe(pid_, metrics_port_); }
  std::string log() const;
  const std::filesystem::path& dir() const { return dir_; }
  // SIGTERM, then waits up to `limit`: the exit status (128 + signal when killed by one), or -1
  // on timeout (then it is killed).
  int terminate(std::chrono::milliseconds limit);

 private:
  std::filesystem::path dir_;
  pid_t pid_ = -1;
  RelayAddress address_;
  unsigned short metrics_port_ = 0;
};

}  // namespace strelay::test
