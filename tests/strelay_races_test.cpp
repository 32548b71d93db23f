// The relay's pairing and tunnel races, through the real strelay binary with 4 worker threads:
// racing connects to one listener, listens for one key replacing each other, an accept racing
// the listener's death, and tunnels torn down while bytes flow both ways. Each test repeats its
// race STRELAY_RACE_REPEATS times (default 5; CI's TSan stage runs 100, with strelay itself
// built under TSan, so a data race in the relay is a report, not a lucky interleaving).
//
// Every test ends the same way: the canary unharmed, the gauges back to baseline, no seed in
// the log, then SIGTERM must end strelay with status 0 and no sanitizer report in its log (a
// sanitizer in the relay ends it with a non-zero exit code and its report on stderr).
#include <doctest/doctest.h>
#include <signal.h>

#include <algorithm>
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/coro.hpp"
#include "support/relay_client.hpp"
#include "support/relay_probe.hpp"
#include "support/watched_relay.hpp"

using namespace strelay;
using namespace strelay::test;
using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace {

// How often each race runs: STRELAY_RACE_REPEATS, default 5, at most 10,000.
int repeats() {
  const char* text = std::getenv("STRELAY_RACE_REPEATS");
  const int n = text ? std::atoi(text) : 5;
  return std::clamp(n, 1, 10000);
}

// A bound for a whole test: generous per round, since sanitizer builds are many times slower.
std::chrono::milliseconds time_for(int rounds, std::chrono::milliseconds per_round) {
  return 30s + rounds * per_round;
}

// Four workers, so the two sides of a race are usually on different threads; no handshake or
// per-source limits in the way of many clients from 127.0.0.1.
const std::vector<std::string> race_flags = [] {
  // A listener answers 24 connectors a round, for up to STRELAY_TSAN_REPEATS rounds: the
  // per-connection control-frame rate (adversarial_fairness_test's) is lifted too.
  std::vector<std::string> flags{
      "--threads",      "4",       "--max-pending-per-source", "1024",
      "--control-rate", "1000000", "--control-burst",          "1000000"};
  flags.insert(flags.end(), fast_handshakes.begin(), fast_handshakes.end());
  flags.insert(flags.end(), many_nodes_per_source.begin(), many_nodes_per_source.end());
  return flags;
}();

std::optional<RefuseReason> refusal(const Received& r) {
  if (!is<Refused>(r)) return std::nullopt;
  return std::get<Refused>(*r.message).reason;
}

std::string tail(const std::string& log, std::size_t n = 4000) {
  return log.size() <= n ? log : log.substr(log.size() - n);
}

// The end of every test here (see the file comment).
void finish(WatchedRelay& relay) {
  relay.check_clean(5s);
  // check_clean may already have ended the relay (and checked its exit); if not, end it here.
  if (relay.process().running()) {
    relay.process().signal(SIGTERM);
    const int status = relay.process().wait_exit(30s);
    CHECK_MESSAGE(status == 0, "strelay exit status " << status << "; log ends:\n"
                                                      << tail(relay.process().log()));
  }
  const std::string log = relay.process().log();
  for (const char* report :
       {"AddressSanitizer", "LeakSanitizer", "ThreadSanitizer", "runtime error:"}) {
    CHECK_MESSAGE(log.find(report) == std::string::npos, "sanitizer report in strelay's log:\n"
                                                             << tail(log));
  }
}

// When a REQUIRE ends a test early, prints whether strelay still runs (its exit status if not)
// and the end of its log, which the relay's temporary directory would otherwise take with it.
struct LogOnFailure {
  WatchedRelay& relay;
  explicit LogOnFailure(WatchedRelay& r) : relay(r) {}
  LogOnFailure(const LogOnFailure&) = delete;
  LogOnFailure& operator=(const LogOnFailure&) = delete;
  ~LogOnFailure() {
    if (std::uncaught_exceptions() == 0) return;
    const int status = relay.process().wait_exit(100ms);
    const std::string how =
        status < 0 ? "still runs" : "exited with status " + std::to_string(status);
    std::fprintf(stderr, "strelay (pid %d, %s) %s; its log ends:\n%s\n",
                 static_cast<int>(relay.process().pid()), relay.process().dir().c_str(),
                 how.c_str(), tail(relay.process().log()).c_str());
  }
};

asio::awaitable<void> sleep_for(std::chrono::milliseconds d) {
  asio::steady_timer timer(co_await asio::this_coro::executor, d);
  co_await timer.async_wait(await_tuple);
}

// Writes 16 KiB chunks until the socket fails (the tunnel or the socket was closed).
asio::awaitable<void> write_until_error(tcp::socket& socket, std::uint64_t& sent) {
  const std::vector<std::uint8_t> chunk(16 * 1024, 0x5a);
  for (;;) {
    auto [ec, n] = co_await asio::async_write(socket, asio::buffer(chunk), await_tuple);
    sent += n;
    if (ec) co_return;
  }
}

// Reads until EOF or an error.
asio::awaitable<void> read_until_end(tcp::socket& socket, std::uint64_t& received) {
  std::vector<std::uint8_t> buffer(16 * 1024);
  for (;;) {
    auto [ec, n] = co_await socket.async_read_some(asio::buffer(buffer), await_tuple);
    received += n;
    if (ec) co_return;
  }
}

void reset(tcp::socket& socket) {
  boost::system::error_code ignored;
  socket.set_option(asio::socket_base::linger(true, 0), ignored);
  socket.close(ignored);
}

}  // namespace

TEST_CASE(
    "racing connects: 24 connectors at once to one listener, half accepted and half rejected, one "
    "outcome each, no pair made twice") {
  raise_test_nofile_limit();
  constexpr int connectors = 24;
  const int rounds = repeats();
  WatchedRelay relay(race_flags);
  const LogOnFailure on_failure{relay};
  const auto connected_before = relay.probe().counter("connect_outcomes_total", "connected");
  const auto rejected_before = relay.probe().counter("connect_outcomes_total", "rejected");
  const auto listener_id = Identity::generate();
  run_task(
      [&]() -> asio::awaitable<void> {
        auto listener = co_await open_connection(relay.address(), listener_id, Listen{});
        REQUIRE(is<ListenOk>(co_await next_message(*listener.channel)));
        for (int round = 0; round < rounds; ++round) {
          CAPTURE(round);
          std::vector<Identity> ids;
          std::map<PublicKey, int> index_of;
          for (int i = 0; i < connectors; ++i) {
            ids.push_back(Identity::generate());
            index_of[ids.back().public_key()] = i;
          }
          // Even connectors are accepted, odd ones rejected.
          std::vector<int> outcomes(connectors, 0), echoed(connectors, 0);
          std::multiset<int> paired;  // the connector each acceptor's pipe led to
          auto connect = [&](int i) -> asio::awaitable<void> {
            const auto at = static_cast<std::size_t>(i);
            auto c = co_await open_connection(relay.address(), ids[at],
                                              Connect{listener_id.public_key()});
            REQUIRE_FALSE(c.error);
            auto r = co_await next_message(*c.channel, 10000ms);
            ++outcomes[at];
            if (i % 2 == 1) {
              CHECK(refusal(r) == RefuseReason::rejected);
              co_return;
            }
            REQUIRE(is<Connected>(r));
            CHECK(std::get<Connected>(*r.message).peer == listener_id.public_key());
            auto pipe = c.channel->release_socket();
            const std::array<std::uint8_t, 2> tag{static_cast<std::uint8_t>(round),
                                                  static_cast<std::uint8_t>(i)};
            co_await asio::async_write(pipe, asio::buffer(tag), await_tuple);
            std::array<std::uint8_t, 2> back{};
            auto [ec, n] = co_await asio::async_read(pipe, asio::buffer(back), await_tuple);
            CHECK_FALSE(ec);
            if (back == tag) ++echoed[at];
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
            CHECK(tag[0] == static_cast<std::uint8_t>(round));
            CHECK(tag[1] == index_of.at(from));  // this pipe joins this acceptor to that connector
            paired.insert(tag[1]);
            co_await asio::async_write(pipe, asio::buffer(tag), await_tuple);
          };
          auto listen = [&]() -> asio::awaitable<void> {
            std::vector<PublicKey> to_accept, to_reject;
            while (static_cast<int>(to_accept.size() + to_reject.size()) < connectors) {
              auto r = co_await next_message(*listener.channel, 10000ms);
              REQUIRE(is<IncomingConnection>(r));
              const auto from = std::get<IncomingConnection>(*r.message).from;
              (index_of.at(from) % 2 == 0 ? to_accept : to_reject).push_back(from);
            }
            // The rejections go out on the listener's channel while the accepts race them.
            co_await run_concurrently(
                static_cast<int>(to_accept.size()) + 1, [&](int k) -> asio::awaitable<void> {
                  if (k < static_cast<int>(to_accept.size()))
                    return accept_one(to_accept[static_cast<std::size_t>(k)]);
                  return
                      [](Channel& channel, std::vector<PublicKey> keys) -> asio::awaitable<void> {
                        for (const auto& key : keys)
                          REQUIRE_FALSE(co_await send_request(channel, RejectConnection{key}));
                      }(*listener.channel, to_reject);
                });
          };
          co_await run_concurrently(connectors + 1,
                                    [&](int i) { return i < connectors ? connect(i) : listen(); });
          CHECK(std::count(outcomes.begin(), outcomes.end(), 1) == connectors);
          CHECK(std::count(echoed.begin(), echoed.end(), 1) == connectors / 2);
          CHECK(static_cast<int>(paired.size()) == connectors / 2);
          CHECK(static_cast<int>(std::set<int>(paired.begin(), paired.end()).size()) ==
                connectors / 2);
        }
      }(),
      time_for(rounds, 5s));
  CHECK(relay.probe().counter("connect_outcomes_total", "connected") - connected_before ==
        static_cast<std::uint64_t>(rounds * connectors / 2));
  CHECK(relay.probe().counter("connect_outcomes_total", "rejected") - rejected_before ==
        static_cast<std::uint64_t>(rounds * connectors / 2));
  finish(relay);
}

TEST_CASE(
    "listen replacement flapping: 8 listens for one key at once all get ListenOk, 7 are replaced, "
    "the survivor alone gets the connect") {
  constexpr int listens = 8;
  const int rounds = repeats();
  WatchedRelay relay(race_flags);
  const LogOnFailure on_failure{relay};
  const auto replaced_before = relay.probe().counter("replaced_total");
  run_task(
      [&]() -> asio::awaitable<void> {
        for (int round = 0; round < rounds; ++round) {
          CAPTURE(round);
          // A fresh key per round: the last round's survivor may still be closing in the relay,
          // and a new listen for its key would replace it (one replacement more, rightly).
          const auto key = Identity::generate();
          std::vector<RelayConnection> conns(listens);
          co_await run_concurrently(listens, [&](int i) -> asio::awaitable<void> {
            auto& conn = conns[static_cast<std::size_t>(i)];
            conn = co_await open_connection(relay.address(), key, Listen{});
            REQUIRE_FALSE(conn.error);
            REQUIRE(is<ListenOk>(
                co_await next_message(*conn.channel)));  // never overtaken by the close
          });
          // All 8 are in the table's history now; exactly one holds the key.
          const auto connector = Identity::generate();
          auto c = co_await open_connection(relay.address(), connector, Connect{key.public_key()});
          REQUIRE_FALSE(c.error);
          int replaced = 0, survivors = 0;
          std::size_t survivor = 0;
          co_await run_concurrently(listens, [&](int i) -> asio::awaitable<void> {
            auto r = co_await next_message(*conns[static_cast<std::size_t>(i)].channel, 10000ms);
            if (r.error == errc::channel_closed && r.close_reason == CloseReason::replaced) {
              ++replaced;
            } else {
              REQUIRE(is<IncomingConnection>(r));
              CHECK(std::get<IncomingConnection>(*r.message).from == connector.public_key());
              ++survivors;
              survivor = static_cast<std::size_t>(i);
            }
          });
          REQUIRE(survivors == 1);
          CHECK(replaced == listens - 1);
          REQUIRE_FALSE(co_await send_request(*conns[survivor].channel,
                                              RejectConnection{connector.public_key()}));
          CHECK(refusal(co_await next_message(*c.channel)) == RefuseReason::rejected);
        }
      }(),
      time_for(rounds, 5s));
  CHECK(relay.probe().counter("replaced_total") - replaced_before ==
        static_cast<std::uint64_t>(rounds * (listens - 1)));
  finish(relay);
}

TEST_CASE(
    "an accept racing the listener's death: the connector and the acceptor agree, Connected on "
    "both or neither") {
  const int rounds = repeats();
  WatchedRelay relay(race_flags);
  const LogOnFailure on_failure{relay};
  int paired = 0, refused = 0;
  run_task(
      [&]() -> asio::awaitable<void> {
        for (int round = 0; round < rounds; ++round) {
          CAPTURE(round);
          const auto listener_id = Identity::generate();
          const auto connector_id = Identity::generate();
          auto listener = co_await open_connection(relay.address(), listener_id, Listen{});
          REQUIRE(is<ListenOk>(co_await next_message(*listener.channel)));
          auto c = co_await open_connection(relay.address(), connector_id,
                                            Connect{listener_id.public_key()});
          REQUIRE_FALSE(c.error);
          REQUIRE(is<IncomingConnection>(co_await next_message(*listener.channel)));
          // The accept's handshake and the listener's end start together; the delay before the
          // end sweeps the window across rounds (0..7 ms), with FIN and RST alternating.
          RelayConnection a;
          Received accepted;
          co_await run_concurrently(2, [&](int k) -> asio::awaitable<void> {
            if (k == 0) {
              a = co_await open_connection(relay.address(), listener_id,
                                           Accept{connector_id.public_key()});
              REQUIRE_FALSE(a.error);
              accepted = co_await next_message(*a.channel, 10000ms);
            } else {
              co_await sleep_for(std::chrono::milliseconds(round % 8));
              if (round % 2 == 0) {
                listener.channel->close();
              } else {
                auto socket = listener.channel->release_socket();
                reset(socket);
              }
            }
          });
          auto outcome = co_await next_message(*c.channel, 10000ms);
          if (is<Connected>(outcome)) {
            ++paired;
            REQUIRE(is<Connected>(accepted));
            auto from_c = c.channel->release_socket();
            auto from_a = a.channel->release_socket();
            const std::array<std::uint8_t, 1> ping{0x42};
            std::array<std::uint8_t, 1> got{};
            co_await asio::async_write(from_c, asio::buffer(ping), await_tuple);
            auto [ec, n] = co_await asio::async_read(from_a, asio::buffer(got), await_tuple);
            CHECK_FALSE(ec);
            CHECK(got == ping);
          } else {
            ++refused;
            CHECK(refusal(outcome) == RefuseReason::peer_gone);
            CHECK_FALSE(
                is<Connected>(accepted));  // the acceptor is refused or closed, never paired
          }
        }
      }(),
      time_for(rounds, 5s));
  MESSAGE("accept won " << paired << " times, the listener's end " << refused << " times");
  CHECK(paired + refused == rounds);
  finish(relay);
}

TEST_CASE(
    "tunnels torn down while bytes flow both ways: closes, resets, and one end vanishing all end "
    "both sides and free the tunnel") {
  constexpr int pipes = 4;
  const int rounds = repeats();
  WatchedRelay relay(race_flags);
  const LogOnFailure on_failure{relay};
  run_task(
      [&]() -> asio::awaitable<void> {
        for (int round = 0; round < rounds; ++round) {
          CAPTURE(round);
          co_await run_concurrently(pipes, [&](int p) -> asio::awaitable<void> {
            auto pipe =
                co_await make_pipe(relay.address(), Identity::generate(), Identity::generate());
            std::uint64_t sent_c = 0, sent_a = 0, got_c = 0, got_a = 0;
            // 0: both ends close at once; 1: both reset at once; 2: the connector resets and
            // the acceptor, still writing, must be ended by the relay; 3: the same, mirrored.
            const int variant = (round + p) % 4;
            const bool ended = co_await with_timeout(
                run_concurrently(5,
                                 [&](int k) -> asio::awaitable<void> {
                                   switch (k) {
                                     case 0: return write_until_error(pipe.connector, sent_c);
                                     case 1: return read_until_end(pipe.connector, got_c);
                                     case 2: return write_until_error(pipe.acceptor, sent_a);
                                     case 3: return read_until_end(pipe.acceptor, got_a);
                                     default: break;
                                   }
                                   return [](PairedPipe& pipe, int variant, int round,
                                             std::uint64_t& got_c,
                                             std::uint64_t& got_a) -> asio::awaitable<void> {
                                     // Bytes are flowing both ways before anything ends.
                                     for (int i = 0; i < 500 && (got_c == 0 || got_a == 0); ++i)
                                       co_await sleep_for(2ms);
                                     co_await sleep_for(std::chrono::milliseconds(round % 5));
                                     boost::system::error_code ignored;
                                     switch (variant) {
                                       case 0:
                                         pipe.connector.close(ignored);
                                         pipe.acceptor.close(ignored);
                                         break;
                                       case 1:
                                         reset(pipe.connector);
                                         reset(pipe.acceptor);
                                         break;
                                       case 2: reset(pipe.connector); break;
                                       default: reset(pipe.acceptor); break;
                                     }
                                   }(pipe, variant, round, got_c, got_a);
                                 }),
                10s);
            CHECK_MESSAGE(ended, "variant " << variant << ": a side did not see the tunnel end");
            CHECK(got_c > 0);
            CHECK(got_a > 0);
          });
        }
      }(),
      time_for(rounds, 15s));
  finish(relay);
}
