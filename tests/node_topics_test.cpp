// The node library's topics (issue 18; docs/protocol.md 4.9, docs/node-library.md) against real
// strelay processes on 127.0.0.1: two, three and fifty nodes meeting on one topic (every pair
// introduced exactly once, at both ends, none across topics), the opt-in friend rule, a node on
// two relays, leaving and a relay restart, and what the relay's log and /status show.
#include <doctest/doctest.h>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <map>
#include <set>

#include "common/base64url.hpp"
#include "common/coro.hpp"
#include "common/errors.hpp"
#include "common/node.hpp"
#include "common/topic.hpp"
#include "support/handshake_fixture.hpp"
#include "support/node_fixture.hpp"
#include "support/relay_client.hpp"
#include "support/relay_probe.hpp"

using namespace strelay;
using namespace strelay::test;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;
using Clock = std::chrono::steady_clock;

namespace {

// Every node here dials from 127.0.0.1: the per-source handshake rate (20/s, burst 5) would
// refuse them, so the relays lift it.
std::vector<std::string> lifted(std::vector<std::string> flags = {}) {
  flags.insert(flags.end(), {"--handshake-rate", "1000", "--handshake-burst", "1000"});
  return flags;
}

// Records topic events; `self` names the node in them.
struct TopicRecorder : NodeObserver {
  std::vector<TopicIntroduction> introductions;
  std::vector<std::pair<std::string, std::error_code>> refusals;
  int joins = 0;
  std::set<std::uint16_t> up;
  void relay_up(const RelayTicket& r) override { up.insert(r.address.port); }
  void relay_down(const RelayTicket& r, std::error_code, std::chrono::milliseconds) override {
    up.erase(r.address.port);
  }
  void topic_joined(const std::string&, const RelayTicket&, std::uint32_t, std::uint32_t) override {
    ++joins;
  }
  void topic_refused(const std::string& topic, const RelayTicket&, std::error_code why) override {
    refusals.emplace_back(topic, why);
  }
  void introduction(const TopicIntroduction& introduction) override {
    introductions.push_back(introduction);
  }
  std::size_t met(const PublicKey& peer, const std::string& topic) const {
    std::size_t n = 0;
    for (const auto& i : introductions) n += i.peer == peer && i.topic == topic;
    return n;
  }
};

// A node with its recorder.
struct Member {
  Member(asio::any_io_executor ex, Logger& log, NodeOptions options = fast_node_options(5s))
      : node(std::move(ex), Identity::generate(), log, options) {
    node.set_observer(&events);
  }
  Node node;
  TopicRecorder events;
};

// Connects `from` to `introduction`'s peer, which must accept on `to`; the bytes go both ways.
asio::awaitable<bool> exchange(Node& from, Node& to, const TopicIntroduction& introduction) {
  auto out = co_await from.connect_introduced(introduction);
  if (!out.stream) co_return false;
  auto in = co_await to.accept(Clock::now() + 5s);
  if (!in.stream) co_return false;
  std::array<std::uint8_t, 5> hello{'h', 'e', 'l', 'l', 'o'};
  co_await out.stream->write(hello);
  std::array<std::uint8_t, 16> buffer{};
  const auto r = co_await in.stream->read_some(buffer);
  const bool ok =
      !r.error && r.bytes == hello.size() && std::equal(hello.begin(), hello.end(), buffer.begin());
  co_await (out.stream->close() && in.stream->close());
  co_return ok;
}

const std::string room = "room 4f0c2e91d7";
const std::string other_room = "another room";

}  // namespace

TEST_CASE(
    "three nodes on one topic meet pairwise exactly once; a fourth on another topic meets "
    "nobody; the relay shows counts, never the topic") {
  RelayProcess relay(lifted({"--log-level", "debug", "--metrics-addr", "127.0.0.1:0"}));
  const auto ticket = ticket_of(relay);
  Logger log{Logger::Options{.level = LogLevel::warn}};
  run_task(
      [&]() -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        std::vector<std::unique_ptr<Member>> members;
        for (std::size_t i = 0; i < 4; ++i) members.push_back(std::make_unique<Member>(ex, log));
        for (std::size_t i = 0; i < 3; ++i) members[i]->node.join_topic(room);
        members[3]->node.join_topic(other_room);
        // Joined before or after listening: both work.
        for (auto& m : members) m->node.listen(list(ticket));
        members[0]->node.join_topic(room);  // again: a no-op
        const bool all_met = co_await soon(
            [&] {
              for (std::size_t i = 0; i < 3; ++i) {
                if (members[i]->events.introductions.size() < 2) return false;
              }
              return true;
            },
            10s);
        REQUIRE(all_met);
        co_await sleep_for(300ms);  // time for a duplicate to show
        for (std::size_t i = 0; i < 3; ++i) {
          CAPTURE(i);
          CHECK(members[i]->events.introductions.size() == 2);
          for (std::size_t j = 0; j < 3; ++j) {
            if (i != j) CHECK(members[i]->events.met(members[j]->node.public_key(), room) == 1);
          }
          // The newcomer flag: exactly the later joiner of each pair is the newcomer.
          for (const auto& intro : members[i]->events.introductions) {
            const auto& peer_events =
                std::find_if(members.begin(), members.end(),
                             [&](auto& m) { return m->node.public_key() == intro.peer; })
                    ->get()
                    ->events;
            const auto back =
                std::find_if(peer_events.introductions.begin(), peer_events.introductions.end(),
                             [&](auto& x) { return x.peer == members[i]->node.public_key(); });
            REQUIRE(back != peer_events.introductions.end());
            CHECK(back->newcomer != intro.newcomer);
          }
        }
        CHECK(members[3]->events.introductions.empty());
        CHECK(members[3]->events.joins == 1);
        // /status: counts only.
        Probe probe(relay.pid(), parse_metrics_port(relay.log()));
        const auto status = probe.status().dump();
        CHECK(probe.status().at("gauges").at("topics").get<int>() == 2);
        CHECK(probe.status().at("gauges").at("topic_memberships").get<int>() == 4);
        // Never the name, nor the id (hex or base64url), in the log or /status, even at debug.
        const auto id = topic_id(relay.address().key, room);
        for (const auto& text : {relay.log(), status}) {
          CHECK(text.find("room") == std::string::npos);
          CHECK(text.find(xk1::to_hex(id)) == std::string::npos);
          CHECK(text.find(to_base64url(id)) == std::string::npos);
        }
        for (auto& m : members) m->node.stop_listening();
      }(),
      30s);
}

TEST_CASE("fifty nodes on one topic: every pair introduced exactly once, at both ends") {
  constexpr std::size_t n = 50;
  RelayProcess relay(lifted({"--max-introductions-per-join", "64"}));
  const auto ticket = ticket_of(relay);
  Logger log{Logger::Options{.level = LogLevel::warn}};
  auto options = fast_node_options(5s);
  options.relay_standby = false;
  run_task(
      [&]() -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        std::vector<std::unique_ptr<Member>> members;
        std::map<PublicKey, std::size_t> index;
        for (std::size_t i = 0; i < n; ++i) {
          members.push_back(std::make_unique<Member>(ex, log, options));
          index[members.back()->node.public_key()] = i;
          members.back()->node.join_topic(room, {.accept_introduced = true});
          members.back()->node.listen(list(ticket));
        }
        const bool all_met = co_await soon(
            [&] {
              for (auto& m : members) {
                if (m->events.introductions.size() < n - 1) return false;
              }
              return true;
            },
            30s);
        REQUIRE(all_met);
        co_await sleep_for(300ms);
        std::set<std::pair<std::size_t, std::size_t>> pairs;  // (receiver, peer)
        for (std::size_t i = 0; i < n; ++i) {
          CHECK(members[i]->events.introductions.size() == n - 1);
          for (const auto& intro : members[i]->events.introductions) {
            CHECK(pairs.emplace(i, index.at(intro.peer)).second);  // once
            CHECK(index.at(intro.peer) != i);
          }
        }
        CHECK(pairs.size() == n * (n - 1));
        // Any two of them can connect through an introduction: they opted in.
        CHECK(co_await exchange(members[7]->node, members[31]->node,
                                *std::find_if(members[7]->events.introductions.begin(),
                                              members[7]->events.introductions.end(),
                                              [&](auto& x) { return index.at(x.peer) == 31; })));
        for (auto& m : members) m->node.stop_listening();
      }(),
      90s);
}

TEST_CASE("an introduced peer may connect only to a node that opted in, and only until it leaves") {
  RelayProcess relay(lifted());
  const auto ticket = ticket_of(relay);
  Logger log{Logger::Options{.level = LogLevel::warn}};
  run_task(
      [&]() -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        Member open(ex, log), closed(ex, log);
        open.node.join_topic(room, {.accept_introduced = true});
        closed.node.join_topic(room);
        open.node.listen(list(ticket));
        closed.node.listen(list(ticket));
        REQUIRE(co_await soon(
            [&] {
              return open.events.introductions.size() == 1 &&
                     closed.events.introductions.size() == 1;
            },
            10s));
        // closed -> open: accepted (open opted in), bytes flow.
        CHECK(co_await exchange(closed.node, open.node, closed.events.introductions[0]));
        // open -> closed: closed did not opt in, so it rejects.
        auto refused = co_await open.node.connect_introduced(open.events.introductions[0]);
        CHECK_FALSE(refused.stream);
        CHECK(refused.error == errc::rejected);
        // After open leaves, closed is a stranger to it again.
        open.node.leave_topic(room);
        auto after = co_await closed.node.connect_introduced(closed.events.introductions[0]);
        CHECK_FALSE(after.stream);
        CHECK(after.error == errc::rejected);
        open.node.stop_listening();
        closed.node.stop_listening();
      }(),
      30s);
}

TEST_CASE("a node on two relays meets a peer on either; the peers on one relay each do not meet") {
  RelayProcess relay1(lifted()), relay2(lifted());
  const auto t1 = ticket_of(relay1), t2 = ticket_of(relay2);
  Logger log{Logger::Options{.level = LogLevel::warn}};
  run_task(
      [&]() -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        Member both(ex, log), only1(ex, log), only2(ex, log);
        both.node.join_topic(room);
        only1.node.join_topic(room);
        only2.node.join_topic(room, {.accept_introduced = true});
        both.node.listen(list(t1, t2));
        only1.node.listen(list(t1));
        only2.node.listen(list(t2));
        REQUIRE(co_await soon([&] { return both.events.introductions.size() == 2; }, 10s));
        co_await sleep_for(300ms);
        CHECK(both.events.introductions.size() == 2);
        std::map<PublicKey, std::uint16_t> via;
        for (const auto& i : both.events.introductions) via[i.peer] = i.relay.address.port;
        CHECK(via[only1.node.public_key()] == t1.address.port);
        CHECK(via[only2.node.public_key()] == t2.address.port);
        CHECK(only1.events.introductions.size() == 1);
        CHECK(only2.events.introductions.size() == 1);
        // The id differs per relay: the same name, blinded with each relay's key.
        CHECK(topic_id(t1.public_key, room) != topic_id(t2.public_key, room));
        const auto to2 =
            std::find_if(both.events.introductions.begin(), both.events.introductions.end(),
                         [&](auto& i) { return i.peer == only2.node.public_key(); });
        CHECK(co_await exchange(both.node, only2.node, *to2));
        for (auto* m : {&both, &only1, &only2}) m->node.stop_listening();
      }(),
      30s);
}

TEST_CASE(
    "leave, join again, and a relay restart: the library joins again and the relay "
    "introduces again") {
  RelayProcess relay(lifted());
  const auto ticket = ticket_of(relay);
  Logger log{Logger::Options{.level = LogLevel::warn}};
  run_task(
      [&]() -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        Member a(ex, log), b(ex, log), c(ex, log);
        a.node.join_topic(room);
        b.node.join_topic(room);
        a.node.listen(list(ticket));
        b.node.listen(list(ticket));
        c.node.listen(list(ticket));
        REQUIRE(co_await soon([&] { return a.events.introductions.size() == 1; }, 10s));
        // A leaves; C joins and meets B only.
        a.node.leave_topic(room);
        co_await sleep_for(200ms);
        c.node.join_topic(room);
        REQUIRE(co_await soon([&] { return c.events.introductions.size() == 1; }, 10s));
        CHECK(c.events.met(b.node.public_key(), room) == 1);
        CHECK(a.events.introductions.size() == 1);  // A, gone from the topic, hears of nobody
        // A joins again and meets both.
        a.node.join_topic(room);
        REQUIRE(co_await soon([&] { return a.events.introductions.size() == 3; }, 10s));
        CHECK(a.events.met(c.node.public_key(), room) == 1);
        // The relay restarts: every node's link comes back, joins again, and each pair is
        // introduced once more (the relay forgot everything).
        const auto before = b.events.introductions.size();
        relay.kill();
        relay.restart();
        REQUIRE(co_await soon([&] { return b.events.introductions.size() == before + 2; }, 20s));
        co_await sleep_for(300ms);
        CHECK(b.events.introductions.size() == before + 2);
        for (auto* m : {&a, &b, &c}) m->node.stop_listening();
      }(),
      60s);
}

TEST_CASE("a topic name must be 1 to 256 bytes: the library refuses others before sending") {
  asio::io_context ioc;
  Logger log{Logger::Options{.level = LogLevel::warn}};
  Node node(ioc.get_executor(), Identity::generate(), log);
  CHECK_THROWS_AS(node.join_topic(""), std::invalid_argument);
  CHECK_THROWS_AS(node.join_topic(std::string(257, 'x')), std::invalid_argument);
  CHECK_NOTHROW(node.join_topic(std::string(256, 'x')));
}
