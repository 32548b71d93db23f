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

asio::awaitable<Channel> listen_as(const RelayProcess& relay, const Identity& self) {
  auto l = co_await open_connection(relay.address(), self, Listen{});
  REQUIRE_FALSE(l.error);
  const auto ok = co_await next_message(*l.channel, 2000ms);
  REQUIRE(is<ListenOk>(ok));
  co_return std::move(*l.channel);
}

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
