// The relay's limits, through the real strelay binary on 127.0.0.1: each at its max and max+1
// where it is a count, with short timeouts set by flags. Every test ends with
// WatchedRelay::check_clean() (canary unharmed, gauges back to baseline, no seed in the log).
// Per-source limits are told apart by binding test sockets to 127.0.0.x sources; the canary
// uses 127.0.0.9 and the protocol clients 127.0.0.1.
#include <doctest/doctest.h>
#include <signal.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstring>
#include <map>
#include <thread>

#include "common/coro.hpp"
#include "support/relay_client.hpp"
#include "support/relay_probe.hpp"
#include "support/watched_relay.hpp"

using namespace strelay;
using namespace strelay::test;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;
using Clock = std::chrono::steady_clock;
namespace {

RefuseReason refusal(const Received& r) {
  REQUIRE(is<Refused>(r));
  return std::get<Refused>(*r.message).reason;
}

std::vector<std::string> flags(std::initializer_list<std::string> extra, bool fast = true) {
  std::vector<std::string> out(extra);
  if (fast) out.insert(out.end(), fast_handshakes.begin(), fast_handshakes.end());
  return out;
}

double seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

// A real client's round trip: handshake, Connect to an absent key, NotFound. Returns how long.
Clock::duration real_client(const RelayAddress& relay) {
  const auto start = Clock::now();
  run_task(
      [&]() -> asio::awaitable<void> {
        auto c = co_await open_connection(relay, Identity::generate(),
                                          Connect{Identity::generate().public_key()});
        REQUIRE_FALSE(c.error);
        CHECK(refusal(co_await next_message(*c.channel)) == RefuseReason::not_found);
      }(),
      10s);
  return Clock::now() - start;
}

struct Opened {
  RawSocket socket;
  Clock::time_point at;
};

// Opens `count` silent connections round robin over `sources`, and waits until the relay has
// accepted every one of them.
std::vector<Opened> open_silent(const WatchedRelay& relay, const std::vector<std::string>& sources,
                                int count) {
  const auto accepted_before = relay.probe().counter("accepts_total");
  std::vector<Opened> out;
  out.reserve(static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i) {
    const auto at = Clock::now();  // before the relay can start its deadline
    RawSocket s(sources[static_cast<std::size_t>(i) % sources.size()], relay.address().endpoint);
    REQUIRE_MESSAGE(s.ok(), "connect failed: " << std::strerror(s.error()));
    out.push_back({std::move(s), at});
  }
  REQUIRE(eventually(
      [&] {
        return relay.probe().counter("accepts_total") - accepted_before >=
               static_cast<std::uint64_t>(count);
      },
      20s));
  return out;
}

std::size_t count_open(std::vector<Opened>& sockets) {
  std::size_t open = 0;
  for (auto& s : sockets) open += s.socket.peer_closed() ? 0 : 1;
  return open;
}

}  // namespace

TEST_CASE(
    "silent connections: only the pending caps are admitted, each until the deadline, and real "
    "clients get through") {
  raise_test_nofile_limit();
  constexpr int total = 2000;
  constexpr auto deadline = 2s;
  WatchedRelay relay(flags({"--handshake-timeout", "2", "--max-pending-handshakes", "64"}));
  const auto rss_before = relay.probe().rss_bytes();

  SUBCASE(
      "from one source: the per-source cap of 8 holds, and a real client gets through in under 1 "
      "s") {
    auto sockets = open_silent(relay, {"127.0.0.2"}, total);
    CHECK(count_open(sockets) == 8);
    CHECK(relay.probe().gauge("pending_handshakes") == 8);
    CHECK(relay.probe().counter("limit_hits_total", "pending_per_source") == total - 8);
    // While they sit there, a real client from another source gets its answer at once.
    CHECK(real_client(relay.address()) < 1s);
    if (memory_is_measurable) CHECK(relay.probe().rss_bytes() - rss_before < 8 * 1024 * 1024);
    // Each admitted one is closed at the handshake deadline, not before.
    for (auto& s : sockets) {
      if (s.socket.peer_closed()) continue;
      REQUIRE(s.socket.wait_peer_closed(deadline + 3s));
      CHECK(s.socket.received() == 0);  // closed without a word
      const auto lived = Clock::now() - s.at;
      CHECK(seconds(lived) >= seconds(deadline) - 0.05);
      CHECK(seconds(lived) < seconds(deadline) + 1.5);
    }
  }

  SUBCASE(
      "from 40 sources: the total cap of 64 holds; after the deadline real clients get through "
      "again") {
    std::vector<std::string> sources;
    for (int i = 10; i < 50; ++i) sources.push_back("127.0.0." + std::to_string(i));
    auto sockets = open_silent(relay, sources, total);
    CHECK(count_open(sockets) == 64);
    CHECK(relay.probe().gauge("pending_handshakes") == 64);
    CHECK(relay.probe().counter("limit_hits_total", "pending_total") +
              relay.probe().counter("limit_hits_total", "pending_per_source") ==
          total - 64);
    if (memory_is_measurable) CHECK(relay.probe().rss_bytes() - rss_before < 8 * 1024 * 1024);
    for (auto& s : sockets) CHECK(s.socket.wait_peer_closed(deadline + 3s));
    CHECK(real_client(relay.address()) < 1s);
  }
  relay.check_clean(deadline + 1s);
}

TEST_CASE(
    "handshake slowloris: dripping the handshake byte by byte is cut at the absolute deadline") {
  constexpr auto deadline = 2s;
  WatchedRelay relay(flags({"--handshake-timeout", "2"}));
  const auto before = relay.probe().counter("handshakes_total", "timeout");
  auto bytes = preamble_and_msg1();  // 42 bytes: 4.2 s of drip
  std::size_t quick = 0;
  SUBCASE("the preamble and msg1, one byte every 100 ms") {
    quick = 0;
  }
  SUBCASE("the preamble and msg1 at once, then msg3's length and body one byte every 100 ms") {
    quick = bytes.size();
    // A plausible msg3 length (a 32-byte request), then the body too slowly.
    constexpr std::size_t msg3 = handshake_msg3_min_bytes + 32;
    bytes.push_back(static_cast<std::uint8_t>(msg3 >> 8));
    bytes.push_back(static_cast<std::uint8_t>(msg3 & 0xff));
    bytes.resize(bytes.size() + 40, 0x5a);
  }
  const auto start = Clock::now();  // before the relay can start its deadline
  RawSocket s("127.0.0.5", relay.address().endpoint);
  REQUIRE(s.ok());
  std::size_t sent = 0;
  if (quick > 0) {
    REQUIRE(s.send_some(std::span(bytes).first(quick)) == static_cast<std::int64_t>(quick));
    sent = quick;
  }
  bool closed = false;
  while (!closed && sent < bytes.size() && Clock::now() - start < 10s) {
    const auto n = s.send_some(std::span(bytes).subspan(sent, 1));
    if (n < 0) break;
    sent += static_cast<std::size_t>(n);
    closed = s.wait_peer_closed(100ms);
  }
  if (!closed) closed = s.wait_peer_closed(3s);
  const auto lived = Clock::now() - start;
  CHECK(closed);
  CHECK(sent < bytes.size());  // cut before the drip ended
  CHECK(seconds(lived) >= seconds(deadline) - 0.05);
  CHECK(seconds(lived) < seconds(deadline) + 1.0);
  CHECK(relay.probe().counter("handshakes_total", "timeout") == before + 1);
  relay.check_clean(deadline + 1s);
}

TEST_CASE(
    "per-source cap: the 9th pending handshake from 127.0.0.2 is refused while 127.0.0.3 is "
    "admitted") {
  WatchedRelay relay(flags({"--max-pending-per-source", "8"}));
  std::vector<RawSocket> eight;
  for (int i = 0; i < 8; ++i) eight.emplace_back("127.0.0.2", relay.address().endpoint);
  REQUIRE(eventually([&] { return relay.probe().gauge("pending_handshakes") == 8; }, 5s));
  RawSocket ninth("127.0.0.2", relay.address().endpoint);
  RawSocket other("127.0.0.3", relay.address().endpoint);
  CHECK(ninth.wait_peer_closed(2s));  // refused: closed without a word
  CHECK(ninth.received() == 0);
  CHECK_FALSE(other.wait_peer_closed(500ms));
  for (auto& s : eight) CHECK_FALSE(s.peer_closed());
  CHECK(relay.probe().gauge("pending_handshakes") == 9);
  CHECK(relay.probe().counter("limit_hits_total", "pending_per_source") == 1);
  // A freed slot is given again.
  eight.pop_back();
  REQUIRE(eventually([&] { return relay.probe().gauge("pending_handshakes") == 8; }, 5s));
  RawSocket again("127.0.0.2", relay.address().endpoint);
  CHECK_FALSE(again.wait_peer_closed(500ms));
  eight.clear();
  other.close();
  again.close();
  relay.check_clean(2s);
}

TEST_CASE(
    "handshake rate per source: of 6 immediate attempts with burst 5 at 20/s, the 6th is refused") {
  WatchedRelay relay(flags({"--handshake-rate", "20", "--handshake-burst", "5"}, false));
  // With strelay stopped, the kernel completes all six TCP handshakes into the backlog; on
  // SIGCONT the relay accepts them back to back, so no token returns in between (50 ms).
  relay.process().signal(SIGSTOP);
  std::vector<RawSocket> six;
  for (int i = 0; i < 6; ++i) six.emplace_back("127.0.0.4", relay.address().endpoint);
  relay.process().signal(SIGCONT);
  std::this_thread::sleep_for(500ms);
  int open = 0;
  for (auto& s : six) open += s.peer_closed() ? 0 : 1;
  CHECK(open == 5);
  CHECK(relay.probe().counter("limit_hits_total", "rate_per_source") == 1);
  // 500 ms later the bucket has refilled: the same source is admitted again.
  RawSocket later("127.0.0.4", relay.address().endpoint);
  CHECK_FALSE(later.wait_peer_closed(300ms));
  six.clear();
  later.close();
  relay.check_clean(2s);
}

TEST_CASE(
    "connect flooding: one identity's connects to 2,000 random keys are rate-limited, and memory "
    "stays flat") {
  constexpr int total = 2000;
  constexpr int burst = 20;
  WatchedRelay relay(flags(
      {"--connect-burst", "20", "--connect-rate", "0.001", "--max-pending-per-source", "64"}));
  const auto flooder = Identity::generate();
  std::vector<PublicKey> targets;
  for (int i = 0; i < total; ++i) targets.push_back(Identity::generate().public_key());
  std::map<RefuseReason, int> outcomes;
  std::int64_t rss_warm = 0;
  int next = 0;
  auto flood = [&](int count) {
    const int end = next + count;
    run_task(run_concurrently(16,
                              [&](int) -> asio::awaitable<void> {
                                while (next < end) {
                                  const auto& target = targets[static_cast<std::size_t>(next++)];
                                  auto c = co_await open_connection(relay.address(), flooder,
                                                                    Connect{target});
                                  REQUIRE_FALSE(c.error);
                                  auto outcome = co_await next_message(*c.channel);
                                  REQUIRE(is<Refused>(outcome));
                                  ++outcomes[std::get<Refused>(*outcome.message).reason];
                                }
                              }),
             120s);
  };
  flood(200);  // warm up the allocator before measuring
  rss_warm = relay.probe().rss_bytes();
  flood(total - 200);
  const auto rss_after = relay.probe().rss_bytes();
  CHECK(outcomes[RefuseReason::not_found] == burst);
  CHECK(outcomes[RefuseReason::rate_limited] == total - burst);
  CHECK(outcomes.size() == 2);
  MESSAGE("relay RSS after warm-up " << rss_warm / 1024 << " KiB, after the flood "
                                     << rss_after / 1024 << " KiB");
  if (memory_is_measurable) CHECK(rss_after - rss_warm < 8 * 1024 * 1024);
  CHECK(relay.probe().counter("limit_hits_total", "connect_rate") == total - burst);
  relay.check_clean(2s);
}

TEST_CASE(
    "the half-tunnel TTL: a connect the listener never accepts gets Refused{timeout} after it, not "
    "before") {
  constexpr auto ttl = 1s;
  WatchedRelay relay(flags({"--half-tunnel-ttl", "1"}));
  const auto listener = Identity::generate();
  const auto connector = Identity::generate();
  std::chrono::milliseconds wait_before_accept{};
  SUBCASE("accepted just inside the TTL") {
    wait_before_accept = 600ms;
  }
  SUBCASE("never accepted") {
    wait_before_accept = 0ms;
  }
  run_task(
      [&]() -> asio::awaitable<void> {
        auto l = co_await open_connection(relay.address(), listener, Listen{});
        REQUIRE(is<ListenOk>(co_await next_message(*l.channel)));
        const auto start = Clock::now();
        auto c =
            co_await open_connection(relay.address(), connector, Connect{listener.public_key()});
        REQUIRE(is<IncomingConnection>(co_await next_message(*l.channel)));
        CHECK(relay.probe().gauge("half_tunnels") == 1);
        if (wait_before_accept.count() > 0) {
          asio::steady_timer t(co_await asio::this_coro::executor);
          t.expires_at(start + wait_before_accept);
          co_await t.async_wait(await_tuple);
          auto a =
              co_await open_connection(relay.address(), listener, Accept{connector.public_key()});
          CHECK(is<Connected>(co_await next_message(*a.channel)));
          CHECK(is<Connected>(co_await next_message(*c.channel)));
          co_return;
        }
        auto outcome = co_await next_message(*c.channel, 5000ms);
        const auto waited = Clock::now() - start;
        CHECK(refusal(outcome) == RefuseReason::timeout);
        CHECK(seconds(waited) >= seconds(ttl));
        CHECK(seconds(waited) < seconds(ttl) + 2.0);
        auto end = co_await next_message(*c.channel);
        CHECK(end.error == errc::channel_closed);
        CHECK(end.close_reason == CloseReason::timeout);
        // Too late: the accept finds nothing.
        auto a =
            co_await open_connection(relay.address(), listener, Accept{connector.public_key()});
        CHECK(refusal(co_await next_message(*a.channel)) == RefuseReason::no_pending);
      }(),
      20s);
  relay.check_clean(2s);
}

TEST_CASE("connect rate per identity: the burst is served, burst+1 gets Refused{rate_limited}") {
  WatchedRelay relay(flags({"--connect-burst", "3", "--connect-rate", "0.001"}));
  const auto node = Identity::generate();
  const auto other = Identity::generate();
  run_task(
      [&]() -> asio::awaitable<void> {
        const auto absent = Identity::generate().public_key();
        for (int i = 0; i < 3; ++i) {
          auto c = co_await open_connection(relay.address(), node, Connect{absent});
          CHECK(refusal(co_await next_message(*c.channel)) == RefuseReason::not_found);
        }
        auto c = co_await open_connection(relay.address(), node, Connect{absent});
        CHECK(refusal(co_await next_message(*c.channel)) == RefuseReason::rate_limited);
        auto end = co_await next_message(*c.channel);
        CHECK(end.error == errc::channel_closed);
        CHECK(end.close_reason == CloseReason::rate_limited);
        // Another identity has its own bucket.
        auto o = co_await open_connection(relay.address(), other, Connect{absent});
        CHECK(refusal(co_await next_message(*o.channel)) == RefuseReason::not_found);
      }(),
      20s);
  relay.check_clean(2s);
}

TEST_CASE(
    "keepalive: a listener that never answers pings is closed as dead_peer; one that answers "
    "stays") {
  constexpr auto dead_after = 3s;
  WatchedRelay relay(flags({"--keepalive-interval", "1", "--dead-peer-timeout", "3"}));
  int pings = 0;
  Clock::duration lived{};
  run_task(
      [&]() -> asio::awaitable<void> {
        const auto start = Clock::now();  // before the mute listener's last word to the relay
        auto mute = co_await open_connection(relay.address(), Identity::generate(), Listen{});
        auto live = co_await open_connection(relay.address(), Identity::generate(), Listen{});
        REQUIRE(is<ListenOk>(co_await next_message(*live.channel)));
        auto never_answer = [&]() -> asio::awaitable<void> {
          for (;;) {  // frames read directly: pings are seen, never answered
            Message m;
            const auto ec = co_await mute.channel->receive(m, Clock::now() + 10s);
            if (!ec && m.kind == FrameKind::ping) ++pings;
            if (!ec) continue;
            lived = Clock::now() - start;
            CHECK(ec == errc::channel_closed);
            CHECK(m.close_reason == CloseReason::dead_peer);
            co_return;
          }
        };
        auto answer = [&]() -> asio::awaitable<void> {
          while (Clock::now() - start < dead_after + 1500ms) {
            auto r = co_await next_message(*live.channel, 500ms);  // answers pings
            REQUIRE(r.error == errc::timeout);
          }
        };
        co_await (never_answer() && answer());
      }(),
      20s);
  CHECK(pings >= 1);
  CHECK(seconds(lived) >= seconds(dead_after) - 0.05);
  CHECK(seconds(lived) < seconds(dead_after) + 1.5);
  CHECK(relay.probe().counter("closes_total", "dead_peer") == 1);
  relay.check_clean(dead_after + 1s);
}
