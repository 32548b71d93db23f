// Tests for common/keepalive: the one keepalive and pong policy of every connection, sans-io.
#include "common/keepalive.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace strelay;
using namespace std::chrono_literals;

namespace {

using Due = Keepalive::Due;
const Keepalive::Clock::time_point t0{};

PingToken token(std::uint8_t n) {
  PingToken t{};
  t[7] = n;
  return t;
}

}  // namespace

TEST_CASE("keepalive: a ping after each interval of silence, dead after the timeout") {
  Keepalive k(t0, 15s, 45s);
  CHECK(k.take_due(t0 + 14s).due == Due::nothing);
  CHECK(k.next_wakeup() == t0 + 15s);
  const auto first = k.take_due(t0 + 15s);
  REQUIRE(first.due == Due::ping);
  CHECK(k.take_due(t0 + 20s).due == Due::nothing);
  CHECK(k.next_wakeup() == t0 + 30s);
  SUBCASE("a pong measures the round trip and counts as life") {
    PingToken wrong = first.token;
    wrong[7] ^= 1;
    CHECK_FALSE(k.on_pong(wrong, t0 + 16s).has_value());
    const auto rtt = k.on_pong(first.token, t0 + 16s);
    REQUIRE(rtt.has_value());
    CHECK(*rtt == 1s);
    CHECK(k.poll(t0 + 30s) == Keepalive::Action::wait);
    CHECK(k.next_wakeup() == t0 + 31s);
    CHECK_FALSE(k.on_pong(first.token, t0 + 17s).has_value());  // answered once only
  }
  SUBCASE("no answer at all: dead at 45 s of silence") {
    CHECK(k.take_due(t0 + 30s).due == Due::ping);
    CHECK(k.next_wakeup() == t0 + 45s);
    CHECK(k.poll(t0 + 44s) == Keepalive::Action::wait);
    CHECK(k.take_due(t0 + 45s).due == Due::dead);
  }
}

TEST_CASE(
    "keepalive: answering only (the relay's connectors and acceptors) until the timers start") {
  auto k = Keepalive::answering_only(t0);
  CHECK(k.take_due(t0 + 1h).due == Due::nothing);  // never pings, never declares death
  CHECK(k.next_wakeup() == Keepalive::Clock::time_point::max());
  REQUIRE(k.on_ping(token(7), t0 + 1h));
  CHECK(k.take_due(t0 + 1h) == Keepalive::Next{Due::pong, token(7)});
  k.start_timers(t0 + 2h, 15s, 45s);  // a listener: the relay pings it from now on
  CHECK(k.take_due(t0 + 2h + 14s).due == Due::nothing);
  CHECK(k.take_due(t0 + 2h + 15s).due == Due::ping);
  CHECK(k.take_due(t0 + 2h + 45s).due == Due::dead);
}

// One table: events at times, and what take_due() answers after each. The ping tokens are a
// counter from 1, so a row can name the token a ping must carry.
TEST_CASE("keepalive: what is due, event by event") {
  enum class Op { ping_in, pong_in, frame_in, request, take };
  struct Row {
    const char* what;
    Op op;
    std::chrono::seconds at;
    std::uint8_t token;  // ping_in / pong_in: the body; take: the expected token
    Due due;             // take only
  };
  const std::vector<Row> table{
      {"nothing is due at the start", Op::take, 0s, 0, Due::nothing},
      {"silence for an interval: a ping, token 1", Op::take, 15s, 1, Due::ping},
      {"the ping was taken as sent", Op::take, 15s, 0, Due::nothing},
      {"a ping from the peer", Op::ping_in, 16s, 7, Due::nothing},
      {"another ping from the peer", Op::ping_in, 16s, 8, Due::nothing},
      {"its pongs come first, oldest first", Op::take, 16s, 7, Due::pong},
      {"then the second pong", Op::take, 16s, 8, Due::pong},
      {"a ping from the peer was life: no ping of ours yet", Op::take, 30s, 0, Due::nothing},
      {"an interval after that ping: token 2", Op::take, 31s, 2, Due::ping},
      {"a requested ping goes at once: token 3", Op::request, 32s, 0, Due::nothing},
      {"the requested ping", Op::take, 32s, 3, Due::ping},
      {"a pong for an older ping is no answer, but life", Op::pong_in, 40s, 2, Due::nothing},
      {"quiet again", Op::take, 54s, 0, Due::nothing},
      {"an interval after the pong: token 4", Op::take, 55s, 4, Due::ping},
      {"a ping queued while the peer is silent", Op::ping_in, 56s, 9, Due::nothing},
      {"dead_peer_timeout after the last frame: dead, before any pong", Op::take, 101s, 0,
       Due::dead},
      {"and it stays dead", Op::take, 102s, 0, Due::dead},
  };
  Keepalive k(t0, 15s, 45s);
  for (const auto& row : table) {
    CAPTURE(std::string(row.what));
    const auto at = t0 + row.at;
    switch (row.op) {
      case Op::ping_in: CHECK(k.on_ping(token(row.token), at)); break;
      case Op::pong_in: CHECK_FALSE(k.on_pong(token(row.token), at).has_value()); break;
      case Op::frame_in: k.on_frame_received(at); break;
      case Op::request: k.request_ping(); break;
      case Op::take: {
        const auto next = k.take_due(at);
        CHECK(next.due == row.due);
        if (row.due == Due::ping || row.due == Due::pong) CHECK(next.token == token(row.token));
        break;
      }
    }
  }
}

TEST_CASE("keepalive: the round trip is the time to the matching pong, measured once") {
  Keepalive k(t0, 15s, 45s);
  k.request_ping();
  const auto ping = k.take_due(t0 + 1s);
  REQUIRE(ping.due == Due::ping);
  CHECK_FALSE(k.on_pong(token(99), t0 + 2s).has_value());
  const auto rtt = k.on_pong(ping.token, t0 + 3s);
  REQUIRE(rtt.has_value());
  CHECK(*rtt == 2s);
  CHECK(k.last_rtt() == 2s);
  CHECK_FALSE(k.on_pong(ping.token, t0 + 4s).has_value());
  // A short body (the transport rejects it first) is read as a zero-padded token, not past it.
  const std::array<std::uint8_t, 3> short_body{1, 2, 3};
  CHECK_FALSE(k.on_pong(short_body, t0 + 5s).has_value());
}

TEST_CASE("keepalive: at most max_pongs_due pongs wait; one more ping is refused") {
  Keepalive k(t0, 15s, 45s);
  for (std::size_t i = 0; i < max_pongs_due; ++i) {
    CHECK(k.on_ping(token(static_cast<std::uint8_t>(i)), t0 + 1s));
  }
  CHECK(k.pongs_due() == max_pongs_due);
  CHECK_FALSE(k.on_ping(token(200), t0 + 1s));  // max + 1
  CHECK(k.pongs_due() == max_pongs_due);        // nothing queued for it
  for (std::size_t i = 0; i < max_pongs_due; ++i) {
    const auto next = k.take_due(t0 + 2s);
    REQUIRE(next.due == Due::pong);
    CHECK(next.token == token(static_cast<std::uint8_t>(i)));
  }
  CHECK(k.on_ping(token(201), t0 + 3s));  // room again once answered
}

TEST_CASE("keepalive: next_wakeup says when to ask again") {
  Keepalive k(t0, 15s, 45s);
  CHECK(k.next_wakeup() == t0 + 15s);
  CHECK(k.on_ping(token(1), t0 + 5s));
  CHECK(k.next_wakeup() <= t0);  // a pong waits: ask now
  CHECK(k.take_due(t0 + 5s).due == Due::pong);
  CHECK(k.next_wakeup() == t0 + 20s);
  k.request_ping();
  CHECK(k.next_wakeup() <= t0);
  CHECK(k.take_due(t0 + 6s).due == Due::ping);
  CHECK(k.next_wakeup() == t0 + 21s);  // an interval after our ping
  CHECK(k.take_due(t0 + 20s).due == Due::nothing);
  CHECK(k.take_due(t0 + 21s).due == Due::ping);
  CHECK(k.next_wakeup() == t0 + 36s);
  CHECK(k.take_due(t0 + 36s).due == Due::ping);
  CHECK(k.next_wakeup() == t0 + 50s);  // dead at 5 s + 45 s comes before the next ping
  CHECK(k.take_due(t0 + 49s).due == Due::nothing);
  CHECK(k.take_due(t0 + 50s).due == Due::dead);
}
