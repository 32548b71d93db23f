// The frame of the relay's resource and adversarial tests (adversarial-tests.md):
//
//  - Canary: a listener and a paired tunnel that ping-pong bytes on their own thread for the
//    whole test, so a test can tell whether anything else was disturbed.
//  - WatchedRelay: a relay, its canary and the gauges' baseline; check_clean() makes the four
//    checks that end every test.
//  - PrefixedRelay: strelay started under a wrapper command (prlimit), which RelayProcess
//    cannot do.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "support/relay_probe.hpp"

namespace strelay::test {

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

  // Reset by stop(): destroying it ends the coroutines, which closes their sockets (the relay's
  // drain lets a tunnel run until its ends close, so a stopped canary must really close).
  std::optional<boost::asio::io_context> ioc_{std::in_place};
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
