// Tests for strelay/relay_state's topics and strelay/topics (docs/protocol.md 4.9; issue 18):
// joins and leaves on a listening connection, who is introduced to whom, and the limits at max
// and max + 1.
#include <doctest/doctest.h>

#include "strelay/relay_state.hpp"
#include "support/relay_state_fixture.hpp"

using namespace strelay;
using namespace strelay::test::pairing;

namespace {

TopicId topic(std::uint8_t n) {
  TopicId t{};
  t.fill(n);
  return t;
}

Actions joined(ConnId c, std::uint8_t t, std::uint32_t members, std::uint32_t introduced) {
  return {SendTo{c, TopicJoined{topic(t), members, introduced}}};
}
// `newcomer` learns of `member` and `member` of `newcomer`.
Actions introduced(ConnId newcomer, char newcomer_key, ConnId member, char member_key,
                   std::uint8_t t) {
  return {SendTo{newcomer, Introduction{topic(t), key(member_key)}},
          SendTo{member, Introduction{topic(t), key(newcomer_key)}}};
}
Actions topic_refused(ConnId c, std::uint8_t t, RefuseReason reason) {
  return {SendTo{c, TopicRefused{topic(t), reason}}};
}
Actions left(ConnId c, std::uint8_t t) {
  return {SendTo{c, TopicLeft{topic(t)}}};
}

// Listeners 1..n with keys A, B, ...
void listen_all(RelayState& state, int n) {
  for (int i = 0; i < n; ++i) {
    REQUIRE(state.listen(static_cast<ConnId>(i + 1), key(static_cast<char>('A' + i)), t0) ==
            listen_ok(static_cast<ConnId>(i + 1)));
  }
}

}  // namespace

TEST_CASE("two listeners on one topic are introduced to each other, once") {
  RelayState state({}, fixed_key);
  listen_all(state, 3);
  CHECK(state.join_topic(1, topic(9), t0) == joined(1, 9, 0, 0));
  CHECK(state.join_topic(2, topic(9), t0) == joined(2, 9, 1, 1) + introduced(2, 'B', 1, 'A', 9));
  // A third on another topic meets nobody; joining again changes nothing.
  CHECK(state.join_topic(3, topic(8), t0) == joined(3, 8, 0, 0));
  CHECK(state.join_topic(2, topic(9), t0) == joined(2, 9, 1, 0));
  // Newest first: C joins 9 and meets B, then A.
  CHECK(state.join_topic(3, topic(9), t0) ==
        joined(3, 9, 2, 2) + introduced(3, 'C', 2, 'B', 9) + introduced(3, 'C', 1, 'A', 9));
  CHECK(state.topics() == 2);
  CHECK(state.topic_memberships() == 4);
}

TEST_CASE("leave, replace and disconnect take a listener out of its topics") {
  RelayState state({}, fixed_key);
  listen_all(state, 2);
  REQUIRE(state.join_topic(1, topic(9), t0) == joined(1, 9, 0, 0));
  SUBCASE("leave: answered, also when not a member") {
    CHECK(state.leave_topic(1, topic(9), t0) == left(1, 9));
    CHECK(state.leave_topic(1, topic(9), t0) == left(1, 9));
    CHECK(state.join_topic(2, topic(9), t0) == joined(2, 9, 0, 0));
  }
  SUBCASE("the listener goes") {
    CHECK(state.disconnect(1, t0) == none());
    CHECK(state.join_topic(2, topic(9), t0) == joined(2, 9, 0, 0));
  }
  SUBCASE("a newer listen replaces it: the new one must join again") {
    REQUIRE(state.listen(3, key('A'), t0) == closed(1, CloseReason::replaced) + listen_ok(3));
    CHECK(state.join_topic(2, topic(9), t0) == joined(2, 9, 0, 0));
    CHECK(state.join_topic(3, topic(9), t0) == joined(3, 9, 1, 1) + introduced(3, 'A', 2, 'B', 9));
  }
  CHECK(state.disconnect(1, t0) == none());
  CHECK(state.disconnect(2, t0) == none());
  CHECK(state.disconnect(3, t0) == none());
  CHECK(state.topics() == 0);
  CHECK(state.topic_memberships() == 0);
  CHECK(state.index_entries() == 0);
}

TEST_CASE("only a listening connection has topics: anything else is a protocol error") {
  RelayState state({}, fixed_key);
  listen_all(state, 1);
  REQUIRE(state.connect(5, key('C'), key('A'), t0) == incoming(1, 'C'));
  CHECK(state.join_topic(5, topic(9), t0) ==
        closed(5, CloseReason::protocol_error));  // a waiting connector
  CHECK(state.leave_topic(6, topic(9), t0) == closed(6, CloseReason::protocol_error));  // none
  CHECK(state.handle(1, key('A'), JoinTopic{topic(9)}, t0) == joined(1, 9, 0, 0));
  CHECK(state.handle(1, key('A'), LeaveTopic{topic(9)}, t0) == left(1, 9));
}

TEST_CASE("limits at max and max + 1: topics per node, members per topic, introductions") {
  PairingLimits limits;
  limits.topics = {.topics_per_node = 3, .members_per_topic = 4, .introductions_per_join = 2};
  RelayState state(limits, fixed_key);
  listen_all(state, 6);
  SUBCASE("topics per node") {
    for (std::uint8_t t = 1; t <= 3; ++t)
      CHECK(state.join_topic(1, topic(t), t0) == joined(1, t, 0, 0));
    CHECK(state.join_topic(1, topic(4), t0) == topic_refused(1, 4, R::overloaded));
    CHECK(state.take_limit_hits()[static_cast<std::size_t>(PairingLimit::topics_per_node)] == 1);
    CHECK(state.leave_topic(1, topic(2), t0) == left(1, 2));
    CHECK(state.join_topic(1, topic(4), t0) == joined(1, 4, 0, 0));  // room again
  }
  SUBCASE("members per topic, and the newest introduced first") {
    CHECK(state.join_topic(1, topic(9), t0) == joined(1, 9, 0, 0));
    CHECK(state.join_topic(2, topic(9), t0) == joined(2, 9, 1, 1) + introduced(2, 'B', 1, 'A', 9));
    CHECK(state.join_topic(3, topic(9), t0) ==
          joined(3, 9, 2, 2) + introduced(3, 'C', 2, 'B', 9) + introduced(3, 'C', 1, 'A', 9));
    // The fourth meets the newest two of three (the count says three).
    CHECK(state.join_topic(4, topic(9), t0) ==
          joined(4, 9, 3, 2) + introduced(4, 'D', 3, 'C', 9) + introduced(4, 'D', 2, 'B', 9));
    CHECK(state.join_topic(5, topic(9), t0) == topic_refused(5, 9, R::overloaded));  // max + 1
    CHECK(state.take_limit_hits()[static_cast<std::size_t>(PairingLimit::members_per_topic)] == 1);
    CHECK(state.disconnect(2, t0) == none());
    CHECK(state.join_topic(5, topic(9), t0) ==
          joined(5, 9, 3, 2) + introduced(5, 'E', 4, 'D', 9) + introduced(5, 'E', 3, 'C', 9));
  }
}

TEST_CASE("join and leave churn per listening connection: a token bucket, refused when empty") {
  PairingLimits limits;
  limits.topic_churn_rate = 1;
  limits.topic_churn_burst = 3;
  RelayState state(limits, fixed_key);
  listen_all(state, 2);
  CHECK(state.join_topic(1, topic(1), t0) == joined(1, 1, 0, 0));
  CHECK(state.leave_topic(1, topic(1), t0) == left(1, 1));
  CHECK(state.join_topic(1, topic(1), t0) == joined(1, 1, 0, 0));  // the burst's third
  CHECK(state.join_topic(1, topic(2), t0) == topic_refused(1, 2, R::rate_limited));
  CHECK(state.leave_topic(1, topic(1), t0) == left(1, 1));  // a leave is never refused
  CHECK(state.take_limit_hits()[static_cast<std::size_t>(PairingLimit::topic_churn)] == 2);
  // Another listener has its own bucket; a second later there is a token again.
  CHECK(state.join_topic(2, topic(2), t0) == joined(2, 2, 0, 0));
  CHECK(state.join_topic(1, topic(2), t0 + 1s) ==
        joined(1, 2, 1, 1) + introduced(1, 'A', 2, 'B', 2));
}

TEST_CASE("a flood of members in one topic costs each join at most the introductions cap") {
  PairingLimits limits;
  limits.topics.introductions_per_join = 32;
  limits.listeners = {100000, 100000};
  RelayState state(limits, fixed_key);
  std::mt19937_64 rng(18);
  std::size_t most = 0;
  for (ConnId c = 1; c <= 1000; ++c) {
    REQUIRE(state.listen(c, random_key(rng), t0).size() == 1);
    most = std::max(most, state.join_topic(c, topic(7), t0).size());
  }
  CHECK(most == 1 + 2 * 32);
  CHECK(state.topic_memberships() == 1000);
  for (ConnId c = 1; c <= 1000; ++c) (void)state.disconnect(c, t0);
  CHECK(state.index_entries() <= 2);  // nothing of the topic is left
}

TEST_CASE(
    "introductions per listener at max and max + 1: a pair either end cannot pay for is not "
    "introduced to either, and counted") {
  PairingLimits limits;
  limits.introduction_rate = 1;
  limits.introduction_burst = 2;
  RelayState state(limits, fixed_key);
  listen_all(state, 5);
  const auto hits = [&state] {
    return state.take_limit_hits()[static_cast<std::size_t>(PairingLimit::introductions)];
  };
  CHECK(state.join_topic(1, topic(9), t0) == joined(1, 9, 0, 0));
  CHECK(state.join_topic(2, topic(9), t0) == joined(2, 9, 1, 1) + introduced(2, 'B', 1, 'A', 9));
  // A's second introduction, its burst's last (max).
  CHECK(state.join_topic(3, topic(9), t0) ==
        joined(3, 9, 2, 2) + introduced(3, 'C', 2, 'B', 9) + introduced(3, 'C', 1, 'A', 9));
  CHECK(hits() == 0);
  // max + 1: A, B and C have no token left, so D meets nobody (the count still says three).
  CHECK(state.join_topic(4, topic(9), t0) == joined(4, 9, 3, 0));
  CHECK(hits() == 3);
  // 1.5 s later A, B and C have a token again and D two; E's own two tokens go to the newest
  // two, D and C, and B and A are not introduced to it.
  CHECK(state.join_topic(5, topic(9), t0 + 1500ms) ==
        joined(5, 9, 4, 2) + introduced(5, 'E', 4, 'D', 9) + introduced(5, 'E', 3, 'C', 9));
  CHECK(hits() == 2);
  for (ConnId c = 1; c <= 5; ++c) (void)state.disconnect(c, t0 + 2s);
  CHECK(state.index_entries() == 0);
}

TEST_CASE("an allowlisted relay applies its allowlist to topics: a revoked key leaves them") {
  RelayState state({}, fixed_key);
  REQUIRE(state.set_allowlist(allow_only({key('A'), key('B'), key('C')})) == none());
  listen_all(state, 2);
  CHECK(state.join_topic(1, topic(9), t0) == joined(1, 9, 0, 0));
  CHECK(state.join_topic(2, topic(9), t0) == joined(2, 9, 1, 1) + introduced(2, 'B', 1, 'A', 9));
  // A is revoked: its listen is closed, and with it its membership.
  (void)state.set_allowlist(allow_only({key('B'), key('C')}));
  CHECK(state.topic_memberships() == 1);
  REQUIRE(state.listen(3, key('C'), t0) == listen_ok(3));
  CHECK(state.join_topic(3, topic(9), t0) == joined(3, 9, 1, 1) + introduced(3, 'C', 2, 'B', 9));
}
