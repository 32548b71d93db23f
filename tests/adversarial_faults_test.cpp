// Adversarial suite, section "Resources and faults" of ../shared/design/adversarial-tests.md,
// second half (faults and shutdown; the first half, resources, is adversarial_resources_test),
// against the real strelay binary. Each test ends with the four checks of
// WatchedRelay::check_clean: canary, gauges and fds, clean exit without sanitizer reports, no
// secret logged.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iomanip>
#include <mutex>
#include <sstream>
#include <thread>

#include "common/coro.hpp"
#include "support/adversarial.hpp"
#include "support/hostile_client.hpp"
#include "support/relay_probe.hpp"
#include "support/watched_relay.hpp"

using namespace strelay;
using namespace strelay::test;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using What = HostileClient::Reply::What;
TEST_CASE(
    "Disconnects: an abrupt disconnect mid-frame (RST or FIN) reaches the partner as PeerGone "
    "within 1 s") {
  WatchedRelay relay(adversarial_flags());
  auto die = [](HostileClient& c, bool rst) {
    if (rst) {
      c.reset();
    } else {
      c.fin();
    }
  };
  auto run = [&](bool rst) {
    {  // a listener with a connect pending dies in the middle of a frame
      auto p = hostile_pipe(relay.address(), false);
      const auto frame = p.listener->seal_next(FrameKind::ping, std::array<std::uint8_t, 8>{});
      p.listener->send_raw(std::span(frame).first(10));
      const auto start = Clock::now();
      die(*p.listener, rst);
      const auto r = p.connector->next_message(2s);
      REQUIRE(is<Refused>(r));
      CHECK(std::get<Refused>(*r.message).reason == RefuseReason::peer_gone);
      CHECK(Clock::now() - start < 1s);
    }
    {  // one end of a tunnel dies in the middle of an end-to-end frame: the other end's pipe closes
      auto p = hostile_pipe(relay.address(), true);
      p.listener->close();
      const std::vector<std::uint8_t> half_frame{0x01, 0x00, 0xaa, 0xbb,
                                                 0xcc};  // announces 256 bytes
      p.connector->send_raw(half_frame);
      std::this_thread::sleep_for(50ms);
      const auto start = Clock::now();
      die(*p.connector, rst);
      CHECK(p.acceptor->wait_closed(1s));
      CHECK(Clock::now() - start < 1s);
    }
  };
  run(true);   // by a reset (SO_LINGER 0)
  run(false);  // by a FIN
  relay.check_clean(2s);
}

TEST_CASE(
    "Fairness: one bulk pair and 100 small ping-pong pairs all complete, with every byte intact") {
  // No clock is asserted here (no wall-clock assertions in tests): the 2x latency bound is for
  // the benchmarks in bench/. This test asserts that the small pairs are served to the end while
  // the bulk pair runs, and that every byte arrives unchanged; latencies are reported.
  constexpr int small_pairs = 100;
  constexpr int rounds = 20;
  constexpr std::size_t bulk_bytes = 32 * 1024 * 1024;
  raise_test_nofile_limit();
  WatchedRelay relay(adversarial_flags({"--connect-burst", "1000"}));
  std::vector<double> latencies_ms;
  bool bulk_intact = false;
  run_task(
      [&]() -> asio::awaitable<void> {
        std::vector<PairedPipe> pipes;
        for (int i = 0; i <= small_pairs; ++i) {
          pipes.push_back(
              co_await make_pipe(relay.address(), Identity::generate(), Identity::generate()));
        }
        std::atomic<bool> bulk_done{false};
        auto bulk = [&]() -> asio::awaitable<void> {
          auto& p = pipes[0];
          std::vector<std::uint8_t> out(bulk_bytes);
          for (std::size_t i = 0; i < out.size(); ++i)
            out[i] = static_cast<std::uint8_t>(i * 7 + i / 65536);
          std::vector<std::uint8_t> in(bulk_bytes);
          auto writer = [&]() -> asio::awaitable<void> {
            co_await asio::async_write(p.connector, asio::buffer(out), await_tuple);
          };
          asio::co_spawn(co_await asio::this_coro::executor, writer(), asio::detached);
          auto [ec, n] = co_await asio::async_read(p.acceptor, asio::buffer(in), await_tuple);
          bulk_intact = !ec && n == bulk_bytes && in == out;
          bulk_done = true;
        };
        auto small = [&](int i) -> asio::awaitable<void> {
          auto& p = pipes[static_cast<std::size_t>(i + 1)];
          for (int r = 0; r < rounds; ++r) {
            std::array<std::uint8_t, 32> out{};
            out.fill(static_cast<std::uint8_t>(i + r));
            std::array<std::uint8_t, 32> back{};
            const auto start = Clock::now();
            auto [e1, n1] = co_await asio::async_write(p.connector, asio::buffer(out), await_tuple);
            REQUIRE_FALSE(e1);
            auto [e2, n2] = co_await asio::async_read(p.acceptor, asio::buffer(back), await_tuple);
            REQUIRE_FALSE(e2);
            REQUIRE(back == out);
            auto [e3, n3] = co_await asio::async_write(p.acceptor, asio::buffer(back), await_tuple);
            REQUIRE_FALSE(e3);
            auto [e4, n4] = co_await asio::async_read(p.connector, asio::buffer(out), await_tuple);
            REQUIRE_FALSE(e4);
            CHECK(out == back);
            latencies_ms.push_back(
                std::chrono::duration<double, std::milli>(Clock::now() - start).count());
          }
        };
        co_await run_concurrently(small_pairs + 1,
                                  [&](int i) { return i == 0 ? bulk() : small(i - 1); });
        CHECK(bulk_done.load());
      }(),
      120s);
  CHECK(bulk_intact);
  REQUIRE(latencies_ms.size() == static_cast<std::size_t>(small_pairs * rounds));
  std::sort(latencies_ms.begin(), latencies_ms.end());
  MESSAGE("small pairs' round trips beside a 32 MiB bulk pair: median "
          << latencies_ms[latencies_ms.size() / 2] << " ms, p99 "
          << latencies_ms[latencies_ms.size() * 99 / 100] << " ms (not asserted; see bench/)");
  relay.check_clean(2s);
}

namespace {

// How far the relay's wall clock (its /status "now", whole seconds UTC) is from this process's.
std::chrono::seconds wall_clock_offset(const Probe& probe) {
  const auto now = probe.status().at("now").get<std::string>();
  std::tm utc{};
  std::istringstream in(now);
  in >> std::get_time(&utc, "%Y-%m-%dT%H:%M:%SZ");
  REQUIRE_MESSAGE(!in.fail(), "/status now: " << now);
  const auto relay_time = std::chrono::system_clock::from_time_t(::timegm(&utc));
  return std::chrono::duration_cast<std::chrono::seconds>(relay_time -
                                                          std::chrono::system_clock::now());
}

}  // namespace

TEST_CASE("Clock jumps: a jump of the wall clock disconnects no one and no deadline overflows") {
  // tests/support/wall_clock_shift.c, preloaded into strelay, moves its wall clock
  // (CLOCK_REALTIME) mid-run by an offset read from a file at every call; CLOCK_MONOTONIC and
  // every wait stay real, as when an operator or NTP steps the clock. (That file says why not
  // libfaketime.)
  char pattern[] = "/tmp/strelay-wallclock-XXXXXX";
  REQUIRE(::mkdtemp(pattern) != nullptr);
  const std::filesystem::path dir = pattern;
  const auto offset_file = dir / "offset";
  auto set_offset = [&](const std::string& offset) {  // replaced whole: never read half-written
    const auto next = dir / "offset.next";
    std::ofstream(next, std::ios::trunc) << offset << "\n";
    std::filesystem::rename(next, offset_file);
  };
  set_offset("+0");
  // Only the relay gets the preload: set for the spawn, removed at once.
  const char* asan_before = std::getenv("ASAN_OPTIONS");
  const std::string asan = std::string(asan_before ? asan_before : "") + (asan_before ? ":" : "") +
                           "verify_asan_link_order=0";
  ::setenv("LD_PRELOAD", STRELAY_WALL_CLOCK_SHIFT, 1);
  ::setenv("STRELAY_WALL_CLOCK_OFFSET_FILE", offset_file.c_str(), 1);
  ::setenv("ASAN_OPTIONS", asan.c_str(), 1);
  std::optional<WatchedRelay> relay;
  try {
    relay.emplace(adversarial_flags({"--handshake-timeout", "3", "--half-tunnel-ttl", "3",
                                     "--keepalive-interval", "1", "--dead-peer-timeout", "8"}));
  } catch (...) {
    ::unsetenv("LD_PRELOAD");
    throw;
  }
  ::unsetenv("LD_PRELOAD");
  ::unsetenv("STRELAY_WALL_CLOCK_OFFSET_FILE");
  if (asan_before) {
    ::setenv("ASAN_OPTIONS", asan_before, 1);
  } else {
    ::unsetenv("ASAN_OPTIONS");
  }
  // The preload takes: the relay's wall clock (/status "now") moves with the file.
  CHECK(std::abs(wall_clock_offset(relay->probe()).count()) <= 5);
  set_offset("+86400");
  CHECK(std::abs(wall_clock_offset(relay->probe()).count() - 86400) <= 5);
  set_offset("+0");
  // A listener that answers pings, a connect pending towards it, a silent connection.
  auto p = hostile_pipe(relay->address(), false);
  const auto silent_opened = Clock::now();  // before the relay can start its deadline
  RawSocket silent("127.0.0.55", relay->address().endpoint);
  REQUIRE(silent.ok());
  // The listener answers the relay's pings from the start, on a thread of its own, until the
  // loop below takes it over: silent while the canary and the connect's TTL run (up to 8 s
  // more on a loaded machine), it reached its 8 s dead-peer timeout in a loaded run.
  std::jthread ponger([&](std::stop_token stop) {  // joined however the test ends
    while (!stop.stop_requested()) {
      const auto r = p.listener->receive(200ms, true);
      if (r.what != What::frame && r.what != What::timeout) break;
    }
  });
  const auto start = Clock::now();
  set_offset("+86400");  // a day forward
  std::this_thread::sleep_for(500ms);
  CHECK(relay->canary()->round_trips(3));
  set_offset("-86400");  // two days back
  std::this_thread::sleep_for(500ms);
  CHECK(relay->canary()->round_trips(3));
  // The deadlines still fire on the steady clock, once and on time, whatever the wall clock
  // did: the silent connection at its 3 s handshake deadline, the connect at its 3 s TTL.
  CHECK(silent.wait_peer_closed(4s));
  const auto silent_lived = Clock::now() - silent_opened;
  CHECK(silent_lived >= 3s - 50ms);
  CHECK(silent_lived < 3s + 1500ms);
  // Its TTL ends about now; up to 8 s more on a loaded machine (a late answer is still checked).
  const auto outcome = p.connector->next_message(8s);
  REQUIRE_MESSAGE(is<Refused>(outcome), "the pending connect got: what "
                                            << static_cast<int>(outcome.what) << ", close reason "
                                            << static_cast<int>(outcome.close_reason));
  CHECK(std::get<Refused>(*outcome.message).reason == RefuseReason::timeout);
  // The listener, silent so far (about 3 s, longer when the canary's round trips are slow on a
  // loaded machine: hence 8 s and not less), answers the relay's pings from now on, past its
  // 8 s dead-peer timeout: it is still there.
  set_offset("+3600");
  ponger.request_stop();
  ponger.join();
  while (Clock::now() - start < 10s) {
    const auto r = p.listener->receive(300ms, true);
    REQUIRE_MESSAGE((r.what == What::frame || r.what == What::timeout),
                    "the listener's connection ended "
                        << seconds(Clock::now() - start) << " s after the start: what "
                        << static_cast<int>(r.what) << ", close reason "
                        << static_cast<int>(r.close_reason));
  }
  CHECK(relay->probe().gauge("listeners") == relay->baseline().listeners + 1);
  CHECK(relay->probe().counter("closes_total", "dead_peer") == 0);
  CHECK(real_client(relay->address()) < 1s);
  set_offset("+0");
  p.listener->close();
  relay->check_clean(3s + 1s);
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
}

TEST_CASE(
    "Graceful shutdown: SIGTERM with 1,000 sessions open; every session gets Close{shutdown} and "
    "the relay exits 0 within the drain deadline") {
  constexpr int listeners = 800;
  constexpr int connectors = 200;
  constexpr int threads = 4;
  constexpr auto drain = 3s;
  REQUIRE(raise_test_nofile_limit() >= 2000);
  WatchedRelay relay(adversarial_flags({"--drain-timeout", "3", "--connect-burst", "1000"}));
  std::vector<std::unique_ptr<HostileClient>> sessions(listeners + connectors);
  std::atomic<int> failed{0};
  in_threads(threads, listeners, [&](int t, int i) {
    auto c = std::make_unique<HostileClient>(relay.address(), Hooks{},
                                             "127.0.6." + std::to_string(1 + t));
    if (!c->handshake(Listen{}) || !is<ListenOk>(c->next_message())) ++failed;
    c->release_identity();
    sessions[static_cast<std::size_t>(i)] = std::move(c);
  });
  // Connectors pending towards the first 200 listeners (whose IncomingConnection stays unread).
  in_threads(threads, connectors, [&](int t, int i) {
    auto c = std::make_unique<HostileClient>(relay.address(), Hooks{},
                                             "127.0.7." + std::to_string(1 + t));
    if (!c->handshake(Connect{sessions[static_cast<std::size_t>(i)]->public_key()})) ++failed;
    c->release_identity();
    sessions[static_cast<std::size_t>(listeners + i)] = std::move(c);
  });
  REQUIRE(failed.load() == 0);
  REQUIRE(eventually(
      [&] {
        return relay.probe().gauge("half_tunnels") == relay.baseline().half_tunnels + connectors;
      },
      10s));
  // Check 1 before the signal: the canary was never disturbed. It is then stopped, as its own
  // sessions would get Close{shutdown} too.
  CHECK(relay.canary()->round_trips(3));
  CHECK(relay.canary()->failures() == 0);
  relay.canary()->stop();
  const auto start = Clock::now();
  relay.process().signal(SIGTERM);
  std::atomic<int> shut_down{0};
  in_threads(threads, listeners + connectors, [&](int, int i) {
    auto& c = *sessions[static_cast<std::size_t>(i)];
    auto end = c.receive(drain + 2s);
    while (end.what == What::frame) end = c.receive(drain + 2s);  // an IncomingConnection, pongs
    if (ended_with(end, CloseReason::shutdown, false)) ++shut_down;
  });
  CHECK(shut_down.load() == listeners + connectors);
  const int status = relay.process().wait_exit(drain + 3s);
  const auto took = Clock::now() - start;
  MESSAGE("1,000 sessions told Close{shutdown}; strelay exited " << seconds(took)
                                                                 << " s after SIGTERM");
  CHECK(status == 0);
  CHECK(took < drain + 1s);
  // Checks 3 and 4; check 2 holds by construction: the process and all it held are gone.
  check_no_sanitizer_report(relay.process().log());
  check_no_secret_logged(relay.process().dir() / "relay.ident", relay.process().log());
}

TEST_CASE(
    "Peer never reads: a listener that pings without reading the pongs stops being read and is "
    "closed long before the write-stall timeout, not left to grow a queue") {
  WatchedRelay relay(adversarial_flags());
  const auto errors_before = relay.probe().counter("closes_total", "protocol_error");
  const auto timeouts_before = relay.probe().counter("closes_total", "timeout");
  const auto stalls_before = relay.probe().counter("closes_total", "stalled");
  HostileClient c(relay.address(), {}, "127.0.0.54");
  REQUIRE(c.handshake(Listen{}));
  REQUIRE(is<ListenOk>(c.next_message()));
  // Sends are bounded in time; a send normally ends with the relay's close, not this limit.
  const timeval send_limit{10, 0};
  ::setsockopt(c.fd(), SOL_SOCKET, SO_SNDTIMEO, &send_limit, sizeof send_limit);
  // Our own send queue is small (64 KiB), so what was sent is about what the relay took: the
  // pongs it holds toward us (listener_send_queue_bytes, then max_pongs_due) plus the small
  // queues on the way. (Not a small SO_RCVBUF: then loopback TCP drops segments and both ends
  // sit in retransmission backoff for seconds, and the relay is never sent the pings that would
  // reach the bound.)
  const int send_queue = 32 * 1024;  // Linux doubles it
  ::setsockopt(c.fd(), SOL_SOCKET, SO_SNDBUF, &send_queue, sizeof send_queue);
  // Pings in batches of 256, one write each: once the queues toward us are full, pings arrive
  // far faster than pongs leave and the owed pongs reach their bound.
  std::size_t sent = 0;
  const auto until = Clock::now() + 20s;
  while (sent < 1'000'000 && Clock::now() < until && c.send_pings(sent, 256)) sent += 256;
  INFO("pings sent before the relay stopped taking them: " << sent);
  // Without the bound (max_pongs_due) the relay reads all 1,000,000 and queues a pong for each.
  // Without the listener's bounded send queue, the kernel holds about 4 MiB of pongs (some
  // 150,000) before the relay's writer blocks; under a sanitizer, loopback TCP's zero windows
  // once stalled our sends past their limit before that, and the relay was never closed.
  CHECK(sent < 60'000);
  // Generous for a loaded sanitizer build; the reasons below say it was the bound that closed it.
  CHECK(c.wait_closed(15s));
  std::this_thread::sleep_for(1100ms);  // /status re-reads its counters at most once a second
  // Closed at the bound (protocol_error); never at the per-frame deadline or the stall timeout.
  const auto errors = relay.probe().counter("closes_total", "protocol_error") - errors_before;
  const auto timeouts = relay.probe().counter("closes_total", "timeout") - timeouts_before;
  CHECK(errors == 1);
  CHECK(timeouts == 0);
  CHECK(relay.probe().counter("closes_total", "stalled") == stalls_before);
  relay.check_clean(2s);
}
