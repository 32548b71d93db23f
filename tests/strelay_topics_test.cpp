// Topics (issue 18; docs/protocol.md 4.9) against the real strelay binary on 127.0.0.1, with raw
// hop connections: two listeners on one topic are introduced to each other, a third on another
// topic to nobody; a join on a connection that is not listening is a protocol error; a listener
// that goes leaves its topics.
#include <doctest/doctest.h>

#include <boost/asio/steady_timer.hpp>

#include "common/coro.hpp"
#include "common/topic.hpp"
#include "support/relay_client.hpp"

using namespace strelay;
using namespace strelay::test;
using namespace std::chrono_literals;
namespace asio = boost::asio;

namespace {

// Joins `topic` and returns the TopicJoined.
asio::awaitable<TopicJoined> join(Channel& channel, const TopicId& topic) {
  REQUIRE(co_await send_request(channel, JoinTopic{topic}) == std::error_code{});
  const auto r = co_await next_message(channel, 2000ms);
  REQUIRE(is<TopicJoined>(r));
  co_return std::get<TopicJoined>(*r.message);
}

asio::awaitable<PublicKey> introduced(Channel& channel, const TopicId& topic) {
  const auto r = co_await next_message(channel, 2000ms);
  REQUIRE(is<Introduction>(r));
  CHECK(std::get<Introduction>(*r.message).topic == topic);
  co_return std::get<Introduction>(*r.message).peer;
}

}  // namespace

TEST_CASE("two listeners on one topic are introduced to each other; another topic meets nobody") {
  RelayProcess relay;
  const auto a = Identity::generate();
  const auto b = Identity::generate();
  const auto c = Identity::generate();
  run_task(
      [&]() -> asio::awaitable<void> {
        const auto room = topic_id(relay.address().key, "room 1");
        const auto other = topic_id(relay.address().key, "room 2");
        auto la = co_await listen_as(relay, a);
        auto lb = co_await listen_as(relay, b);
        auto lc = co_await listen_as(relay, c);
        const auto first = co_await join(la, room);
        CHECK(first.members == 0);
        CHECK(first.introduced == 0);
        const auto second = co_await join(lb, room);
        CHECK(second.members == 1);
        CHECK(second.introduced == 1);
        CHECK(co_await introduced(lb, room) == a.public_key());
        CHECK(co_await introduced(la, room) == b.public_key());
        const auto alone = co_await join(lc, other);
        CHECK(alone.members == 0);
        // Nothing more for A or B: C's topic is not theirs.
        CHECK((co_await next_message(la, 300ms)).error == errc::timeout);
        CHECK((co_await next_message(lb, 300ms)).error == errc::timeout);
        // B leaves; C joins the room and meets A only.
        REQUIRE(co_await send_request(lb, LeaveTopic{room}) == std::error_code{});
        CHECK(is<TopicLeft>(co_await next_message(lb, 2000ms)));
        const auto third = co_await join(lc, room);
        CHECK(third.members == 1);
        CHECK(co_await introduced(lc, room) == a.public_key());
        CHECK(co_await introduced(la, room) == c.public_key());
        // A goes: its topics go with it, and B, joining again, finds C alone (once the relay
        // has seen A's end: until then B meets both, and leaves to try again).
        la.close();
        bool alone_with_c = false;
        for (int attempt = 0; attempt < 20 && !alone_with_c; ++attempt) {
          const auto again = co_await join(lb, room);
          for (std::uint32_t i = 0; i < again.introduced; ++i) (void)co_await introduced(lb, room);
          alone_with_c = again.members == 1;
          if (!alone_with_c) {
            REQUIRE(co_await send_request(lb, LeaveTopic{room}) == std::error_code{});
            CHECK(is<TopicLeft>(co_await next_message(lb, 2000ms)));
            asio::steady_timer pause(co_await asio::this_coro::executor, 100ms);
            co_await pause.async_wait(await_tuple);
          }
        }
        CHECK(alone_with_c);
      }(),
      20s);
}

TEST_CASE("a join on a connection that is not listening is a protocol error") {
  RelayProcess relay;
  const auto a = Identity::generate();
  run_task(
      [&]() -> asio::awaitable<void> {
        auto r = co_await open_connection(relay.address(), a, JoinTopic{TopicId{}});
        REQUIRE_FALSE(r.error);
        const auto end = co_await next_message(*r.channel, 2000ms);
        CHECK(end.error == errc::channel_closed);
        CHECK(end.close_reason == CloseReason::protocol_error);
      }(),
      20s);
}

TEST_CASE(
    "the topic limits set by flags, through the binary at max and max + 1: churn, "
    "introductions per join, introductions per second") {
  RelayProcess relay({"--topic-churn-burst", "3", "--topic-churn-rate", "0.001",
                      "--max-introductions-per-join", "2", "--introduction-burst", "3",
                      "--introduction-rate", "0.001", "--max-topics-per-node", "2",
                      "--handshake-rate", "1000", "--handshake-burst", "1000"});
  std::vector<Identity> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(Identity::generate());
  run_task(
      [&]() -> asio::awaitable<void> {
        const auto room = topic_id(relay.address().key, "room");
        const auto other = topic_id(relay.address().key, "other");
        const auto third = topic_id(relay.address().key, "third");
        std::vector<Channel> l;
        for (const auto& id : ids) l.push_back(co_await listen_as(relay, id));
        // Topics per node: 2 (max) joined, the third (max + 1) refused overloaded.
        CHECK((co_await join(l[4], other)).members == 0);
        CHECK((co_await join(l[4], third)).members == 0);
        REQUIRE(co_await send_request(l[4], JoinTopic{room}) == std::error_code{});
        auto r = co_await next_message(l[4], 2000ms);
        REQUIRE(is<TopicRefused>(r));
        CHECK(std::get<TopicRefused>(*r.message).reason == RefuseReason::overloaded);
        // Churn: l[4] has used its burst of 3 (two joins and the refused one): a leave still
        // leaves, a join is refused rate_limited.
        REQUIRE(co_await send_request(l[4], LeaveTopic{other}) == std::error_code{});
        CHECK(is<TopicLeft>(co_await next_message(l[4], 2000ms)));
        REQUIRE(co_await send_request(l[4], JoinTopic{other}) == std::error_code{});
        r = co_await next_message(l[4], 2000ms);
        REQUIRE(is<TopicRefused>(r));
        CHECK(std::get<TopicRefused>(*r.message).reason == RefuseReason::rate_limited);
        // Introductions per join: the third member meets the newest 2 (max) of 2; the fourth
        // the newest 2 of 3 (max + 1: the count says 3).
        CHECK((co_await join(l[0], room)).members == 0);
        const auto second = co_await join(l[1], room);
        CHECK(second.introduced == 1);
        (void)co_await introduced(l[1], room);
        (void)co_await introduced(l[0], room);
        const auto third_join = co_await join(l[2], room);
        CHECK(third_join.members == 2);
        CHECK(third_join.introduced == 2);
        CHECK(co_await introduced(l[2], room) == ids[1].public_key());
        CHECK(co_await introduced(l[2], room) == ids[0].public_key());
        (void)co_await introduced(l[1], room);
        (void)co_await introduced(l[0], room);
        // Introductions per second (burst 3, no refill to speak of): l[1] and l[2] have had
        // 2 each. The fourth meets l[2] and l[1], their third (max).
        const auto fourth = co_await join(l[3], room);
        CHECK(fourth.members == 3);
        CHECK(fourth.introduced == 2);
        CHECK(co_await introduced(l[3], room) == ids[2].public_key());
        CHECK(co_await introduced(l[3], room) == ids[1].public_key());
        (void)co_await introduced(l[2], room);
        (void)co_await introduced(l[1], room);
        // A fifth: of the newest two, l[3] has a token left and is introduced (its third), l[2]
        // has none (max + 1): that pair is introduced to neither, and the count says so.
        const auto late = Identity::generate();
        auto l5 = co_await listen_as(relay, late);
        const auto fifth = co_await join(l5, room);
        CHECK(fifth.members == 4);
        CHECK(fifth.introduced == 1);
        CHECK(co_await introduced(l5, room) == ids[3].public_key());
        CHECK(co_await introduced(l[3], room) == late.public_key());
        CHECK((co_await next_message(l[2], 300ms)).error == errc::timeout);
        CHECK((co_await next_message(l5, 300ms)).error == errc::timeout);
      }(),
      20s);
}
