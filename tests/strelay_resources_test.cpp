// The relay's resources under faults, through the real strelay binary on 127.0.0.1: running
// out of descriptors, a peer that never reads, racing connects, half-close. Every test ends
// with the checks that apply: the canary unharmed, the gauges back to baseline, no seed logged.
#include <doctest/doctest.h>
#include <signal.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <map>
#include <regex>
#include <set>
#include <thread>

#include "common/coro.hpp"
#include "support/relay_client.hpp"
#include "support/relay_probe.hpp"
#include "support/watched_relay.hpp"

using namespace strelay;
using namespace strelay::test;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
namespace {

double seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

std::vector<std::string> flags(std::vector<std::string> extra) {
  extra.insert(extra.end(), fast_handshakes.begin(), fast_handshakes.end());
  extra.insert(extra.end(), many_nodes_per_source.begin(), many_nodes_per_source.end());
  return extra;
}

// strelay with RLIMIT_NOFILE 64 (soft and hard, so it cannot raise it): 80% is 51 connections.
const std::vector<std::string> nofile_64{"prlimit", "--nofile=64:64", "--"};

std::vector<RawSocket> open_raw(const RelayAddress& relay, const std::string& source, int count) {
  std::vector<RawSocket> out;
  for (int i = 0; i < count; ++i) {
    out.emplace_back(source, relay.endpoint);
    REQUIRE(out.back().ok());
  }
  return out;
}

// The relay's "descriptor_budget" start-up log line (strelay/server.cpp).
struct LoggedBudget {
  std::size_t open_at_start = 0;
  std::size_t max_connections = 0;
  std::size_t pipe_fds = 0;
};

LoggedBudget logged_budget(const std::string& log) {
  auto field = [&log](const std::string& name) -> std::size_t {
    const std::regex pattern("event=descriptor_budget.* " + name + "=([0-9]+)");
    std::smatch match;
    REQUIRE_MESSAGE(std::regex_search(log, match, pattern),
                    "no descriptor_budget line with " << name << " in: " << log);
    return static_cast<std::size_t>(std::stoul(match[1]));
  };
  return {field("open_at_start"), field("max_connections"), field("pipe_fds")};
}

std::size_t count_open(std::vector<RawSocket>& sockets) {
  std::size_t open = 0;
  for (auto& s : sockets) open += s.peer_closed() ? 0 : 1;
  return open;
}

// A handshake and a NotFound: the relay serves a new client.
void check_serves_a_client(const RelayAddress& relay) {
  run_task(
      [&]() -> asio::awaitable<void> {
        auto c = co_await open_connection(relay, Identity::generate(),
                                          Connect{Identity::generate().public_key()});
        REQUIRE_FALSE(c.error);
        auto r = co_await next_message(*c.channel);
        CHECK(is<Refused>(r));
      }(),
      10s);
}

}  // namespace

TEST_CASE(
    "EMFILE: with a 64-descriptor limit, connections beyond the budgeted cap are refused before "
    "the descriptors run out") {
  PrefixedRelay relay(nofile_64,
                      flags({"--max-pending-handshakes", "64", "--max-pending-per-source", "64",
                             "--handshake-timeout", "10"}));
  const auto probe = relay.probe();
  REQUIRE(probe.status().at("process").at("max_fds") == 64);
  warm_up(relay.address(), probe);
  const auto baseline = probe.settled_gauges();
  const auto budget = logged_budget(relay.log());
  MESSAGE("descriptors open at start: " << budget.open_at_start << ", connection cap "
                                        << budget.max_connections << ", pipe descriptors "
                                        << budget.pipe_fds);
  // The cap is 80% of the limit at most, and leaves the relay's own descriptors, the HTTP
  // endpoint's (2 + 1 at this limit) and the margin free.
  CHECK(budget.max_connections <= 51);
  CHECK(budget.open_at_start + budget.max_connections + 3 + descriptor_margin <= 64);
  // (17 since the acceptors have a thread, and so an epoll, an eventfd and a timerfd, of
  // their own: docs/architecture.md, "Accepting".)
  CHECK(budget.max_connections >= 17);
  // The status page shows the cap in force, not 80% of the limit.
  CHECK(probe.status().at("limits").at("max_connections") == budget.max_connections);
  auto sockets = open_raw(relay.address(), "127.0.0.2", 70);
  std::this_thread::sleep_for(500ms);
  // Refused ones are closed at once; admitted ones stay open.
  CHECK(count_open(sockets) == budget.max_connections);
  CHECK(probe.counter("accept_errors_total", "emfile") == 0);
  CHECK(probe.counter("limit_hits_total", "connections_total") == 70 - budget.max_connections);
  sockets.clear();
  Gauges last;
  CHECK_MESSAGE(probe.wait_for_gauges(baseline, 3s, last), to_string(last));
  check_serves_a_client(relay.address());
  check_no_secret_logged(relay.dir() / "relay.ident", relay.log());
}

TEST_CASE(
    "EMFILE: when descriptors do run out, the accept loop neither spins nor dies, and resumes once "
    "they free up") {
  // A connection cap above what 64 descriptors allow, so accept() itself fails with EMFILE.
  PrefixedRelay relay(nofile_64,
                      flags({"--max-connections", "1000", "--max-pending-handshakes", "1000",
                             "--max-pending-per-source", "1000", "--handshake-timeout", "10"}));
  const auto probe = relay.probe();
  warm_up(relay.address(), probe);
  Canary canary(relay.address());
  const auto baseline = probe.settled_gauges();
  auto sockets = open_raw(relay.address(), "127.0.0.2", 80);  // more than 64 descriptors
  std::this_thread::sleep_for(300ms);
  const double cpu_before = probe.cpu_seconds();
  std::this_thread::sleep_for(2s);
  const double cpu_used = probe.cpu_seconds() - cpu_before;
  MESSAGE("relay CPU over 2 s at EMFILE: " << cpu_used << " s");
  CHECK(cpu_used < 1.0);
  CHECK(::kill(relay.pid(), 0) == 0);  // still running
  CHECK(count_open(sockets) == 80);    // none refused: the last ones wait in the backlog
  CHECK(canary.round_trips(3));        // open pipes keep flowing meanwhile
  sockets.clear();
  CHECK(probe.counter("accept_errors_total", "emfile") > 0);
  Gauges last;
  CHECK_MESSAGE(probe.wait_for_gauges(baseline, 3s, last), to_string(last));
  check_serves_a_client(relay.address());
  CHECK(canary.round_trips(3));
  CHECK(canary.failures() == 0);
  check_no_secret_logged(relay.dir() / "relay.ident", relay.log());
}

TEST_CASE("EMFILE: the connection cap leaves room for the descriptors of open tunnels") {
  // A spliced tunnel holds two pipes (four descriptors) besides its two sockets; pipes are
  // granted only from the descriptors the connection cap leaves, else the tunnel copies.
  PrefixedRelay relay(nofile_64,
                      flags({"--max-pending-handshakes", "64", "--max-pending-per-source", "64",
                             "--handshake-timeout", "10"}));
  const auto probe = relay.probe();
  warm_up(relay.address(), probe);
  Canary canary(relay.address());
  const auto baseline = probe.settled_gauges();
  auto sockets = open_raw(relay.address(), "127.0.0.2", 70);
  std::this_thread::sleep_for(1s);
  CHECK(canary.round_trips(3));  // at the cap, the tunnel still flows
  sockets.clear();
  CHECK(probe.counter("accept_errors_total", "emfile") == 0);
  CHECK(probe.counter("limit_hits_total", "connections_total") >
        0);  // the cap, not EMFILE, stopped them
  Gauges last;
  CHECK_MESSAGE(probe.wait_for_gauges(baseline, 3s, last), to_string(last));
  CHECK(canary.round_trips(3));
}

TEST_CASE(
    "a peer that never reads: the relay buffers at most its bound, then closes the tunnel as "
    "stalled") {
  constexpr std::int64_t bound = 65536;
  constexpr auto stall = 2s;
  WatchedRelay relay({"--tunnel-buffer", "65536", "--write-stall-timeout", "2"});
  RawSocket connector;
  RawSocket acceptor;
  run_task(
      [&]() -> asio::awaitable<void> {
        auto pipe = co_await make_pipe(relay.address(), Identity::generate(), Identity::generate());
        connector = RawSocket::adopt(pipe.connector.release());
        acceptor = RawSocket::adopt(pipe.acceptor.release());
      }(),
      20s);
  const std::vector<std::uint8_t> chunk(64 * 1024, 0xab);
  std::int64_t max_buffered = 0;
  std::int64_t sent = 0;
  std::optional<Clock::time_point> first_full;
  const auto start = Clock::now();
  auto next_sample = start;
  bool closed = false;
  while (!closed && Clock::now() - start < 15s) {
    const auto n = connector.send_some(chunk);
    if (n < 0) {
      closed = true;
      break;
    }
    sent += n;
    if (n == 0) {
      if (!first_full) first_full = Clock::now();
      std::this_thread::sleep_for(10ms);
    }
    if (Clock::now() >= next_sample) {
      max_buffered = std::max(max_buffered, relay.probe().gauge("tunnel_buffered_bytes"));
      next_sample = Clock::now() + 100ms;
    }
  }
  const auto ended = Clock::now();
  REQUIRE(closed);
  REQUIRE(first_full);
  MESSAGE("sent " << sent << " bytes before the stall; most buffered in the relay at a sample: "
                  << max_buffered);
  CHECK(max_buffered > 0);
  CHECK(max_buffered <= 2 * bound);
  CHECK(seconds(ended - *first_full) >= seconds(stall) - 0.5);
  CHECK(seconds(ended - *first_full) < seconds(stall) + 3.0);
  CHECK(acceptor.wait_peer_closed(5s));
  CHECK(relay.probe().counter("closes_total", "stalled") == 1);
  CHECK(relay.probe().counter("limit_hits_total", "stalled") == 1);
  relay.check_clean(stall + 1s);
}

TEST_CASE("an idle tunnel is closed as dead_peer after --dead-peer-timeout; a busy one stays") {
  constexpr auto idle = 3s;
  WatchedRelay relay(
      {"--keepalive-interval", "1", "--dead-peer-timeout", "3"});  // the canary is busy
  Clock::duration lived{};
  run_task(
      [&]() -> asio::awaitable<void> {
        const auto start = Clock::now();  // before the tunnel's last traffic
        auto pipe = co_await make_pipe(relay.address(), Identity::generate(), Identity::generate());
        pipe.listener.channel->close();  // it would not answer pings: only the tunnel is under test
        std::array<std::uint8_t, 1> byte{};
        auto [ec, n] = co_await pipe.connector.async_read_some(asio::buffer(byte), await_tuple);
        lived = Clock::now() - start;
        CHECK(ec);
      }(),
      20s);
  CHECK(seconds(lived) >= seconds(idle) - 0.05);
  CHECK(seconds(lived) < seconds(idle) + 1.5);
  CHECK(relay.probe().counter("closes_total", "dead_peer") == 1);
  relay.check_clean(2s);
}

TEST_CASE(
    "racing connects: 100 connectors at once to one listener, 5 times: one outcome each, no pair "
    "made twice") {
  raise_test_nofile_limit();
  constexpr std::size_t connectors = 100;
  constexpr int rounds = 5;
  WatchedRelay relay(flags({"--max-pending-per-source", "1024"}));
  const auto listener_id = Identity::generate();
  run_task(
      [&]() -> asio::awaitable<void> {
        auto listener = co_await open_connection(relay.address(), listener_id, Listen{});
        REQUIRE(is<ListenOk>(co_await next_message(*listener.channel)));
        for (int round = 0; round < rounds; ++round) {
          CAPTURE(round);
          std::vector<Identity> ids;
          std::map<PublicKey, int> index_of;
          for (std::size_t i = 0; i < connectors; ++i) {
            ids.push_back(Identity::generate());
            index_of[ids.back().public_key()] = static_cast<int>(i);
          }
          std::vector<int> outcomes(connectors, 0);  // outcomes seen per connector
          std::vector<int> echoed(connectors, 0);
          std::multiset<int> tags_at_acceptors;
          auto connect = [&](int i) -> asio::awaitable<void> {
            auto c = co_await open_connection(relay.address(), ids[static_cast<std::size_t>(i)],
                                              Connect{listener_id.public_key()});
            REQUIRE_FALSE(c.error);
            auto r = co_await next_message(*c.channel, 10000ms);
            ++outcomes[static_cast<std::size_t>(i)];
            REQUIRE(is<Connected>(r));
            auto pipe = c.channel->release_socket();
            const std::array<std::uint8_t, 2> tag{static_cast<std::uint8_t>(round),
                                                  static_cast<std::uint8_t>(i)};
            co_await asio::async_write(pipe, asio::buffer(tag), await_tuple);
            std::array<std::uint8_t, 2> back{};
            auto [ec, n] = co_await asio::async_read(pipe, asio::buffer(back), await_tuple);
            CHECK_FALSE(ec);
            if (back == tag) ++echoed[static_cast<std::size_t>(i)];
          };
          auto accept_one = [&](PublicKey from) -> asio::awaitable<void> {
            auto a = co_await open_connection(relay.address(), listener_id, Accept{from});
            REQUIRE_FALSE(a.error);
            auto r = co_await next_message(*a.channel, 10000ms);
            REQUIRE(is<Connected>(r));
            CHECK(std::get<Connected>(*r.message).peer == from);
            auto pipe = a.channel->release_socket();
            std::array<std::uint8_t, 2> tag{};
            auto [ec, n] = co_await asio::async_read(pipe, asio::buffer(tag), await_tuple);
            REQUIRE_FALSE(ec);
            CHECK(tag[0] == round);
            CHECK(tag[1] == index_of.at(from));  // the pipe joins this acceptor to that connector
            tags_at_acceptors.insert(tag[1]);
            co_await asio::async_write(pipe, asio::buffer(tag), await_tuple);
          };
          auto listen = [&]() -> asio::awaitable<void> {
            std::vector<PublicKey> incoming;
            while (incoming.size() < connectors) {
              auto r = co_await next_message(*listener.channel, 10000ms);
              REQUIRE(is<IncomingConnection>(r));
              incoming.push_back(std::get<IncomingConnection>(*r.message).from);
            }
            co_await run_concurrently(static_cast<int>(connectors), [&](int i) {
              return accept_one(incoming[static_cast<std::size_t>(i)]);
            });
          };
          co_await run_concurrently(static_cast<int>(connectors) + 1, [&](int i) {
            return i < static_cast<int>(connectors) ? connect(i) : listen();
          });
          CHECK(static_cast<std::size_t>(std::count(outcomes.begin(), outcomes.end(), 1)) ==
                connectors);
          CHECK(static_cast<std::size_t>(std::count(echoed.begin(), echoed.end(), 1)) ==
                connectors);
          CHECK(std::set<int>(tags_at_acceptors.begin(), tags_at_acceptors.end()).size() ==
                connectors);
          CHECK(tags_at_acceptors.size() == connectors);
        }
      }(),
      180s);
  CHECK(relay.probe().counter("connect_outcomes_total", "connected") ==
        connectors * rounds + 1);  // + the canary
  relay.check_clean(2s);
}

TEST_CASE(
    "half-close through a tunnel: one node shuts down its sending side, the other reads EOF and "
    "can still send") {
  WatchedRelay relay;
  const auto normal_before = relay.probe().counter("closes_total", "normal");
  run_task(
      [&]() -> asio::awaitable<void> {
        auto pipe = co_await make_pipe(relay.address(), Identity::generate(), Identity::generate());
        const std::array<std::uint8_t, 5> last{'b', 'y', 'e', '.', '\n'};
        co_await asio::async_write(pipe.connector, asio::buffer(last), await_tuple);
        pipe.connector.shutdown(tcp::socket::shutdown_send);
        std::array<std::uint8_t, 5> got{};
        auto [e1, n1] = co_await asio::async_read(pipe.acceptor, asio::buffer(got), await_tuple);
        CHECK_FALSE(e1);
        CHECK(got == last);
        std::array<std::uint8_t, 1> more{};
        auto [e2, n2] = co_await pipe.acceptor.async_read_some(asio::buffer(more), await_tuple);
        CHECK(e2 == asio::error::eof);
        // The other direction is still open.
        const auto reply = std::vector<std::uint8_t>(100000, 0x42);
        auto [e3, n3] = co_await asio::async_write(pipe.acceptor, asio::buffer(reply), await_tuple);
        CHECK_FALSE(e3);
        std::vector<std::uint8_t> got_reply(reply.size());
        auto [e4, n4] =
            co_await asio::async_read(pipe.connector, asio::buffer(got_reply), await_tuple);
        CHECK_FALSE(e4);
        CHECK(got_reply == reply);
        pipe.acceptor.shutdown(tcp::socket::shutdown_send);
        auto [e5, n5] = co_await pipe.connector.async_read_some(asio::buffer(more), await_tuple);
        CHECK(e5 == asio::error::eof);
      }(),
      20s);
  CHECK(eventually(
      [&] { return relay.probe().counter("closes_total", "normal") == normal_before + 1; }, 2s));
  // Bytes are counted per tunnel.
  const auto log = relay.process().log();
  CHECK(log.find("bytes_to_listener=5 bytes_to_connector=100000") != std::string::npos);
  relay.check_clean(2s);
}

TEST_CASE(
    "SIGTERM with 1,000 listeners open: every one gets Close{shutdown}, and strelay exits 0 within "
    "the drain deadline") {
  raise_test_nofile_limit();
  constexpr int sessions = 1000;
  constexpr int openers = 16;
  constexpr auto drain = 3s;
  RelayProcess relay(flags({"--drain-timeout", "3", "--max-pending-per-source", "64"}));
  int shut_down = 0;
  auto start = Clock::now();
  run_task(
      [&]() -> asio::awaitable<void> {
        std::vector<RelayConnection> listeners(sessions);  // sockets go before their io_context
        co_await run_concurrently(openers, [&](int w) -> asio::awaitable<void> {
          for (int i = w; i < sessions; i += openers) {
            auto& l = listeners[static_cast<std::size_t>(i)];
            l = co_await open_connection(relay.address(), Identity::generate(), Listen{});
            REQUIRE_FALSE(l.error);
            REQUIRE(is<ListenOk>(co_await next_message(*l.channel)));
          }
        });
        start = Clock::now();
        relay.signal(SIGTERM);
        co_await run_concurrently(sessions, [&](int i) -> asio::awaitable<void> {
          auto end =
              co_await next_message(*listeners[static_cast<std::size_t>(i)].channel, 10000ms);
          if (end.error == errc::channel_closed && end.close_reason == CloseReason::shutdown)
            ++shut_down;
        });
      }(),
      120s);
  CHECK(shut_down == sessions);
  CHECK(relay.wait_exit(drain + 3s) == 0);
  MESSAGE("strelay exited " << seconds(Clock::now() - start) << " s after SIGTERM");
  CHECK(Clock::now() - start < drain + 1s);
  check_no_secret_logged(relay.dir() / "relay.ident", relay.log());
}

TEST_CASE("SIGTERM does not wait out the drain deadline for connections still in their handshake") {
  // Nothing authenticated can be said to them, so there is nothing to wait for.
  constexpr auto drain = 3s;
  RelayProcess relay({"--drain-timeout", "3"});
  RawSocket silent("127.0.0.2", relay.address().endpoint);
  REQUIRE(silent.ok());
  std::this_thread::sleep_for(200ms);
  const auto start = Clock::now();
  relay.signal(SIGTERM);
  CHECK(relay.wait_exit(drain + 3s) == 0);
  const auto took = Clock::now() - start;
  MESSAGE("strelay exited " << seconds(took)
                            << " s after SIGTERM, with one silent connection open");
  CHECK(took < drain / 2);
  CHECK(silent.wait_peer_closed(1s));
}
