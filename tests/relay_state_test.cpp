// Tests for strelay/relay_state: the pairing table, as a table of sequences, and under
// flapping, racing and flooding. The randomized reference model is relay_state_model_test.cpp.
#include "strelay/relay_state.hpp"

#include <doctest/doctest.h>

#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "support/relay_state_fixture.hpp"

using namespace strelay;
using namespace strelay::test::pairing;
using namespace std::chrono_literals;

namespace {

// ---------------------------------------------------------------- the table

enum class Op { listen, connect, accept, reject, disconnect, expire };

struct Step {
  Op op;
  ConnId conn = 0;
  char self = 'A';   // the connection's authenticated key
  char other = 'A';  // connect: target; accept, reject: from
  Clock::duration at{};
  Actions expect;
};

struct Scenario {
  const char* name;
  std::vector<Step> steps;
  std::size_t listeners_after;
  std::size_t half_tunnels_after;
};

Actions run(RelayState& state, const Step& s) {
  const TimePoint now = t0 + s.at;
  switch (s.op) {
    case Op::listen: return state.listen(s.conn, key(s.self), now);
    case Op::connect: return state.connect(s.conn, key(s.self), key(s.other), now);
    case Op::accept: return state.accept(s.conn, key(s.self), key(s.other), now);
    case Op::reject: return state.reject(s.conn, key(s.other), now);
    case Op::disconnect: return state.disconnect(s.conn, now);
    case Op::expire: return state.expire(now);
  }
  return {};
}

constexpr auto ttl = half_tunnel_ttl;

// A function, not a global: keys need libsodium, which main() initialises.
std::vector<Scenario> scenarios() {
  return {
      {"connect to a key nobody listens on: not_found at once",
       {{Op::connect, 1, 'A', 'B', 0s, refused(1, R::not_found)}},
       0,
       0},
      {"listen, connect, accept: paired",
       {{Op::listen, 1, 'B', 'B', 0s, listen_ok(1)},
        {Op::connect, 2, 'A', 'B', 1s, incoming(1, 'A')},
        {Op::accept, 3, 'B', 'A', 2s, paired(2, 3, 'A', 'B')}},
       1,
       0},
      {"accept pairs the oldest pending connect first, then finds nothing",
       {{Op::listen, 1, 'B', 'B', 0s, listen_ok(1)},
        {Op::connect, 2, 'A', 'B', 0s, incoming(1, 'A')},
        {Op::connect, 3, 'A', 'B', 0s, incoming(1, 'A')},
        {Op::accept, 4, 'B', 'A', 0s, paired(2, 4, 'A', 'B')},
        {Op::accept, 5, 'B', 'A', 0s, paired(3, 5, 'A', 'B')},
        {Op::accept, 6, 'B', 'A', 0s, refused(6, R::no_pending)}},
       1,
       0},
      {"reject refuses every pending connect from that key, and only from it",
       {{Op::listen, 1, 'B', 'B', 0s, listen_ok(1)},
        {Op::connect, 2, 'A', 'B', 0s, incoming(1, 'A')},
        {Op::connect, 3, 'C', 'B', 0s, incoming(1, 'C')},
        {Op::connect, 4, 'A', 'B', 0s, incoming(1, 'A')},
        {Op::reject, 1, 'B', 'A', 0s, refused(2, R::rejected) + refused(4, R::rejected)},
        {Op::reject, 1, 'B', 'A', 0s, none()},  // nothing pending any more: a no-op
        {Op::accept, 5, 'B', 'A', 0s, refused(5, R::no_pending)},
        {Op::accept, 6, 'B', 'C', 0s, paired(3, 6, 'C', 'B')}},
       1,
       0},
      {"a newer listen replaces the old, and pending connects move to the new listener",
       {{Op::listen, 1, 'B', 'B', 0s, listen_ok(1)},
        {Op::connect, 2, 'A', 'B', 0s, incoming(1, 'A')},
        {Op::connect, 3, 'C', 'B', 0s, incoming(1, 'C')},
        {Op::listen, 4, 'B', 'B', 0s,
         closed(1, CloseReason::replaced) + listen_ok(4) + incoming(4, 'A') + incoming(4, 'C')},
        {Op::disconnect, 1, 'B', 'B', 0s, none()},  // the replaced connection closing later
        {Op::connect, 5, 'D', 'B', 0s, incoming(4, 'D')},
        {Op::accept, 6, 'B', 'C', 0s, paired(3, 6, 'C', 'B')}},
       1,
       2},
      {"the listener goes away: every pending connector gets peer_gone",
       {{Op::listen, 1, 'B', 'B', 0s, listen_ok(1)},
        {Op::connect, 2, 'A', 'B', 0s, incoming(1, 'A')},
        {Op::connect, 3, 'C', 'B', 0s, incoming(1, 'C')},
        {Op::disconnect, 1, 'B', 'B', 0s, refused(2, R::peer_gone) + refused(3, R::peer_gone)},
        {Op::connect, 4, 'A', 'B', 0s, refused(4, R::not_found)},
        {Op::accept, 5, 'B', 'A', 0s, refused(5, R::no_pending)}},
       0,
       0},
      {"a connector that goes away leaves nothing to accept",
       {{Op::listen, 1, 'B', 'B', 0s, listen_ok(1)},
        {Op::connect, 2, 'A', 'B', 0s, incoming(1, 'A')},
        {Op::disconnect, 2, 'A', 'A', 0s, none()},
        {Op::disconnect, 2, 'A', 'A', 0s, none()},  // idempotent
        {Op::accept, 3, 'B', 'A', 0s, refused(3, R::no_pending)}},
       1,
       0},
      {"TTL: still pending at exactly the TTL, timed out one tick later",
       {{Op::listen, 1, 'B', 'B', 0s, listen_ok(1)},
        {Op::connect, 2, 'A', 'B', 0s, incoming(1, 'A')},
        {Op::expire, 0, 'A', 'A', ttl, none()},
        {Op::expire, 0, 'A', 'A', ttl + 1ns, refused(2, R::timeout)}},
       1,
       0},
      {"TTL: an accept at exactly the TTL pairs",
       {{Op::listen, 1, 'B', 'B', 0s, listen_ok(1)},
        {Op::connect, 2, 'A', 'B', 0s, incoming(1, 'A')},
        {Op::accept, 3, 'B', 'A', ttl, paired(2, 3, 'A', 'B')}},
       1,
       0},
      {"TTL: an accept one tick late expires the half-tunnel first, then finds nothing",
       {{Op::listen, 1, 'B', 'B', 0s, listen_ok(1)},
        {Op::connect, 2, 'A', 'B', 0s, incoming(1, 'A')},
        {Op::connect, 3, 'C', 'B', 5s, incoming(1, 'C')},
        {Op::accept, 4, 'B', 'A', ttl + 1ns, refused(2, R::timeout) + refused(4, R::no_pending)},
        {Op::accept, 5, 'B', 'C', ttl + 5s, paired(3, 5, 'C', 'B')}},
       1,
       0},
      {"accept from another identity finds nothing",
       {{Op::listen, 1, 'B', 'B', 0s, listen_ok(1)},
        {Op::connect, 2, 'A', 'B', 0s, incoming(1, 'A')},
        {Op::accept, 3, 'C', 'A', 0s, refused(3, R::no_pending)},
        {Op::accept, 4, 'B', 'A', 0s, paired(2, 4, 'A', 'B')}},
       1,
       0},
      {"connect to self is allowed: another device of the same identity may listen",
       {{Op::listen, 1, 'A', 'A', 0s, listen_ok(1)},
        {Op::connect, 2, 'A', 'A', 0s, incoming(1, 'A')},
        {Op::accept, 3, 'A', 'A', 0s, paired(2, 3, 'A', 'A')}},
       1,
       0},
      {"a second request on a listening connection is a protocol error, and ends the listen",
       {{Op::listen, 1, 'B', 'B', 0s, listen_ok(1)},
        {Op::connect, 2, 'A', 'B', 0s, incoming(1, 'A')},
        {Op::listen, 1, 'B', 'B', 0s,
         closed(1, CloseReason::protocol_error) + refused(2, R::peer_gone)},
        {Op::connect, 3, 'A', 'B', 0s, refused(3, R::not_found)}},
       0,
       0},
      {"connect or accept on a listening connection is a protocol error",
       {{Op::listen, 1, 'B', 'B', 0s, listen_ok(1)},
        {Op::connect, 1, 'B', 'C', 0s, closed(1, CloseReason::protocol_error)},
        {Op::listen, 2, 'C', 'C', 0s, listen_ok(2)},
        {Op::accept, 2, 'C', 'A', 0s, closed(2, CloseReason::protocol_error)}},
       0,
       0},
      {"any request on a pending connector is a protocol error, and drops its half-tunnel",
       {{Op::listen, 1, 'B', 'B', 0s, listen_ok(1)},
        {Op::connect, 2, 'A', 'B', 0s, incoming(1, 'A')},
        {Op::accept, 2, 'A', 'B', 0s, closed(2, CloseReason::protocol_error)},
        {Op::connect, 3, 'A', 'B', 0s, incoming(1, 'A')},
        {Op::reject, 3, 'A', 'B', 0s, closed(3, CloseReason::protocol_error)},
        {Op::accept, 4, 'B', 'A', 0s, refused(4, R::no_pending)}},
       1,
       0},
      {"reject on a connection that is not listening is a protocol error",
       {{Op::reject, 1, 'B', 'A', 0s, closed(1, CloseReason::protocol_error)},
        {Op::disconnect, 9, 'A', 'A', 0s, none()}},
       0,
       0},
  };
}

}  // namespace

TEST_CASE("the pairing table follows each scenario exactly") {
  for (const auto& scenario : scenarios()) {
    RelayState state({}, fixed_key);
    INFO(scenario.name);
    for (std::size_t i = 0; i < scenario.steps.size(); ++i) {
      INFO("step " << i + 1);
      CHECK(describe(run(state, scenario.steps[i])) == describe(scenario.steps[i].expect));
    }
    CHECK(state.listeners() == scenario.listeners_after);
    CHECK(state.half_tunnels() == scenario.half_tunnels_after);
  }
}

TEST_CASE("handle() dispatches each decoded request") {
  RelayState state({}, fixed_key);
  CHECK(state.handle(1, key('B'), Listen{}, t0) == listen_ok(1));
  CHECK(state.handle(2, key('A'), Connect{key('B')}, t0) == incoming(1, 'A'));
  CHECK(state.handle(3, key('C'), Connect{key('B')}, t0) == incoming(1, 'C'));
  CHECK(state.handle(1, key('B'), RejectConnection{key('C')}, t0) == refused(3, R::rejected));
  CHECK(state.handle(4, key('B'), Accept{key('A')}, t0) == paired(2, 4, 'A', 'B'));
}

TEST_CASE("connect rate per identity: the burst of 20 passes, the 21st is rate_limited") {
  RelayState state({}, fixed_key);
  REQUIRE(state.listen(1, key('B'), t0) == listen_ok(1));
  ConnId c = 10;
  for (int i = 0; i < 20; ++i, ++c) {
    const auto r = state.connect(c, key('A'), key(i % 2 ? 'B' : 'C'), t0);
    CHECK(r == (i % 2 ? incoming(1, 'A') : refused(c, R::not_found)));  // not_found counts too
    if (i % 2) state.disconnect(c, t0);  // keep the pair cap out of the way
  }
  CHECK(state.connect(c, key('A'), key('B'), t0) == refused(c, R::rate_limited));
  ++c;
  CHECK(state.connect(c, key('C'), key('B'), t0) == incoming(1, 'C'));  // another identity
  ++c;
  CHECK(state.connect(c, key('A'), key('B'), t0 + 1s - 1ns) == refused(c, R::rate_limited));
  ++c;
  CHECK(state.connect(c, key('A'), key('B'), t0 + 1s) == incoming(1, 'A'));  // 60/min refill
}

TEST_CASE("pending connects per pair: the 8th is recorded, the 9th rate_limited") {
  RelayState state({}, fixed_key);
  REQUIRE(state.listen(1, key('B'), t0) == listen_ok(1));
  for (ConnId c = 10; c < 18; ++c)
    CHECK(state.connect(c, key('A'), key('B'), t0) == incoming(1, 'A'));
  CHECK(state.connect(18, key('A'), key('B'), t0) == refused(18, R::rate_limited));
  CHECK(state.connect(19, key('C'), key('B'), t0) == incoming(1, 'C'));  // another pair
  CHECK(state.accept(20, key('B'), key('A'), t0) == paired(10, 20, 'A', 'B'));
  CHECK(state.connect(21, key('A'), key('B'), t0) == incoming(1, 'A'));  // room again
  CHECK(state.half_tunnels() == 9);
}

TEST_CASE("half-tunnels in total: at the cap recorded, one more overloaded") {
  PairingLimits limits;
  limits.half_tunnels_total = 5;
  RelayState state(limits, fixed_key);
  REQUIRE(state.listen(1, key('H'), t0) == listen_ok(1));
  for (ConnId c = 10; c < 15; ++c) {
    CHECK(state.connect(c, key(static_cast<char>('A' + (c - 10))), key('H'), t0) ==
          incoming(1, static_cast<char>('A' + (c - 10))));
  }
  CHECK(state.connect(15, key('F'), key('H'), t0) == refused(15, R::overloaded));
  CHECK(state.connect(16, key('F'), key('G'), t0) == refused(16, R::not_found));  // no room needed
  state.disconnect(10, t0);
  CHECK(state.connect(17, key('F'), key('H'), t0) == incoming(1, 'F'));
}

TEST_CASE(
    "the rate table is bounded: full buckets are evicted, a new identity beyond is overloaded") {
  PairingLimits limits;
  limits.rate_entries_total = 3;
  RelayState state(limits, fixed_key);
  for (ConnId c = 1; c <= 3; ++c) {
    CHECK(state.connect(c, key(static_cast<char>('A' + c - 1)), key('H'), t0) ==
          refused(c, R::not_found));
  }
  CHECK(state.rate_entries() == 3);
  CHECK(state.connect(4, key('D'), key('H'), t0) == refused(4, R::overloaded));
  CHECK(state.connect(5, key('A'), key('H'), t0) == refused(5, R::not_found));  // known: fine
  // One token returns in 1 s: A's bucket (used twice) is not full then, B's and C's are.
  CHECK(state.connect(6, key('D'), key('H'), t0 + 1s) == refused(6, R::not_found));
  CHECK(state.rate_entries() == 2);  // B and C were full again and dropped; A stays; D added
}

TEST_CASE("allowlist: only listed keys may listen, connect and accept; a reload closes the rest") {
  RelayState state({}, fixed_key);
  CHECK(state.set_allowlist(allow_only({key('A'), key('B'), key('C')})) == none());
  CHECK(state.listen(1, key('D'), t0) == refused(1, R::not_allowed));
  CHECK(state.connect(2, key('D'), key('B'), t0) == refused(2, R::not_allowed));
  CHECK(state.accept(3, key('D'), key('A'), t0) == refused(3, R::not_allowed));
  CHECK(state.listen(4, key('B'), t0) == listen_ok(4));
  CHECK(state.listen(5, key('C'), t0) == listen_ok(5));
  CHECK(state.connect(6, key('A'), key('B'), t0) == incoming(4, 'A'));
  CHECK(state.connect(7, key('C'), key('B'), t0) == incoming(4, 'C'));
  CHECK(state.connect(8, key('A'), key('C'), t0) == incoming(5, 'A'));
  // B is dropped: its listener closes, and its pending connectors lose their peer. A is
  // dropped: its remaining pending connect is refused.
  CHECK(describe(state.set_allowlist(allow_only({key('C')}))) ==
        describe(closed(4, CloseReason::not_allowed) + refused(6, R::peer_gone) +
                 refused(7, R::peer_gone) + refused(8, R::not_allowed)));
  CHECK(state.listeners() == 1);
  CHECK(state.half_tunnels() == 0);
  CHECK(state.set_allowlist(std::nullopt) == none());
  CHECK(state.listen(9, key('D'), t0) == listen_ok(9));
  // An empty list means nobody (a private relay with no members yet), not everybody.
  CHECK(describe(state.set_allowlist(Allowlist{})) ==
        describe(closed(5, CloseReason::not_allowed) + closed(9, CloseReason::not_allowed)));
  CHECK(state.connect(10, key('C'), key('C'), t0) == refused(10, R::not_allowed));
}

TEST_CASE("next_deadline is one tick after the oldest half-tunnel's TTL") {
  RelayState state({}, fixed_key);
  CHECK_FALSE(state.next_deadline().has_value());
  state.listen(1, key('B'), t0);
  state.connect(2, key('A'), key('B'), t0 + 1s);
  state.connect(3, key('C'), key('B'), t0 + 2s);
  REQUIRE(state.next_deadline() == t0 + 1s + ttl + 1ns);
  CHECK(state.expire(*state.next_deadline() - 1ns) == none());
  CHECK(state.expire(*state.next_deadline()) == refused(2, R::timeout));
  CHECK(state.next_deadline() == t0 + 2s + ttl + 1ns);
  PairingLimits shorter;
  shorter.half_tunnel_ttl = 1s;
  state.set_limits(shorter);  // existing deadlines stay
  CHECK(state.next_deadline() == t0 + 2s + ttl + 1ns);
}

TEST_CASE("duplicate-listen flapping: 100 alternations leave one listener and nothing stale") {
  RelayState state({}, fixed_key);
  REQUIRE(state.listen(1, key('B'), t0) == listen_ok(1));
  REQUIRE(state.connect(2, key('A'), key('B'), t0) == incoming(1, 'A'));
  const std::size_t baseline = state.index_entries();
  ConnId previous = 1;
  for (ConnId c = 100; c < 200; ++c) {
    // Two devices of B fight over the key: each new connection replaces the previous one.
    CHECK(state.listen(c, key('B'), t0 + 1ms * c) ==
          closed(previous, CloseReason::replaced) + listen_ok(c) + incoming(c, 'A'));
    CHECK(state.disconnect(previous, t0 + 1ms * c) == none());
    previous = c;
  }
  CHECK(state.listeners() == 1);
  CHECK(state.half_tunnels() == 1);
  CHECK(state.index_entries() == baseline);
  CHECK(state.accept(300, key('B'), key('A'), t0 + 1s) == paired(2, 300, 'A', 'B'));
}

TEST_CASE("racing connects: 100 connectors to one listener each get exactly one outcome") {
  std::mt19937_64 rng(2024);
  PairingLimits limits;
  limits.half_tunnels_per_target = 1000;  // this case is about races, not the per-target cap
  for (int round = 0; round < 20; ++round) {
    RelayState state(limits, fixed_key);
    const PublicKey listener = random_key(rng);
    REQUIRE(state.listen(1, listener, t0).size() == 1);
    std::map<ConnId, PublicKey> connectors;
    std::map<ConnId, int> outcomes;
    std::set<ConnId> pairs;
    auto count = [&](const Actions& actions) {
      for (const auto& a : actions) {
        if (const auto* s = std::get_if<SendTo>(&a);
            s && std::holds_alternative<Refused>(s->message)) {
          ++outcomes[s->to];
        }
        if (const auto* p = std::get_if<Paired>(&a)) {
          ++outcomes[p->connector];
          CHECK(pairs.insert(p->acceptor).second);
          CHECK(connectors.at(p->connector) == p->connector_key);
        }
      }
    };
    for (ConnId c = 10; c < 110; ++c) {
      connectors[c] = random_key(rng);
      count(state.connect(c, connectors[c], listener, t0));
    }
    CHECK(state.half_tunnels() == 100);
    // The listener accepts some, rejects some, some connectors give up, the rest time out.
    ConnId acceptor = 1000;
    for (const auto& [c, k] : connectors) {
      switch (rng() % 4) {
        case 0: count(state.accept(acceptor++, listener, k, t0 + 1s)); break;
        case 1: count(state.reject(1, k, t0 + 1s)); break;
        case 2: count(state.accept(acceptor++, listener, k, t0 + 1s)); break;
        default: break;
      }
    }
    count(state.expire(t0 + ttl + 2s));
    for (const auto& [c, k] : connectors) CHECK(outcomes[c] == 1);
    CHECK(state.half_tunnels() == 0);
  }
}

TEST_CASE("connect flooding: 10,000 random targets are refused and nothing is stored") {
  std::mt19937_64 rng(99);
  SUBCASE("with the default rate: 20 not_found, then rate_limited") {
    RelayState state({}, fixed_key);
    std::map<RefuseReason, int> seen;
    for (ConnId c = 0; c < 10000; ++c) {
      const auto r = state.connect(c, key('A'), random_key(rng), t0 + 1ms * c);
      REQUIRE(r.size() == 2);
      ++seen[std::get<Refused>(std::get<SendTo>(r[0]).message).reason];
      REQUIRE(state.index_entries() <= 2);  // A's bucket and its LRU slot
    }
    CHECK(seen[R::not_found] == 20 + 9);  // the burst, then one per second over 9.999 s
    CHECK(seen[R::rate_limited] == 10000 - 29);
  }
  SUBCASE("with no rate limit: all not_found") {
    PairingLimits limits;
    limits.connect_rate = 1e9;
    limits.connect_burst = 1e9;
    RelayState state(limits, fixed_key);
    for (ConnId c = 0; c < 10000; ++c) {
      CHECK(state.connect(c, key('A'), random_key(rng), t0) == refused(c, R::not_found));
    }
    CHECK(state.index_entries() == 2);
    CHECK(state.half_tunnels() == 0);
  }
}

// ---------------------------------------------------------------- per-source caps (issue 14)

namespace {

Source from(const char* address) {
  return Source::from_address(boost::asio::ip::make_address(address));
}

// The refusal sent to `conn` among `actions` (a fair-share cut refuses another connection).
std::optional<RefuseReason> refusal_to(ConnId conn, const Actions& actions) {
  for (const auto& a : actions) {
    if (const auto* s = std::get_if<SendTo>(&a); s && s->to == conn) {
      if (const auto* r = std::get_if<Refused>(&s->message)) return r->reason;
    }
  }
  return std::nullopt;
}

}  // namespace

TEST_CASE(
    "listeners per source: the 64th Listen from one address is admitted, the 65th overloaded, "
    "counted") {
  std::mt19937_64 rng(14);
  RelayState state({}, fixed_key);
  const auto a = from("192.0.2.1");
  for (ConnId c = 1; c <= max_listeners_per_source; ++c) {
    REQUIRE(state.listen(c, random_key(rng), t0, &a) == listen_ok(c));
  }
  const auto key = random_key(rng);
  CHECK(state.listen(100, key, t0, &a) == refused(100, R::overloaded));
  CHECK(state.take_limit_hits()[static_cast<std::size_t>(PairingLimit::listeners_per_source)] == 1);
  CHECK(state.take_limit_hits()[static_cast<std::size_t>(PairingLimit::listeners_per_source)] ==
        0);  // taken
  const auto b = from("192.0.2.2");
  CHECK(state.listen(101, key, t0, &b) == listen_ok(101));  // another address
  // A listener re-listening from the same address replaces itself, even at the cap.
  const auto again = state.listen(102, key, t0, &b);
  CHECK(again == closed(101, CloseReason::replaced) + listen_ok(102));
  // A listener that goes gives its slot back.
  state.disconnect(1, t0);
  CHECK(state.listen(103, random_key(rng), t0, &a) == listen_ok(103));
  CHECK(state.heaviest_listener_sources(1).front().second == max_listeners_per_source);
}

TEST_CASE(
    "listeners per prefix: an IPv6 /48 holds 4 x 64 over its /64s; the next /64 in it is refused") {
  std::mt19937_64 rng(15);
  RelayState state({}, fixed_key);
  ConnId c = 1;
  // 4 /56s x 64 (the /56 cap is half the /48's: 128, so 64 per /64 fits): 256 in the /48.
  for (int net = 0; net < 4; ++net) {
    const auto address = "2001:db8:7:" + std::to_string(net) + "00::1";
    const auto s = from(address.c_str());
    for (std::size_t i = 0; i < max_listeners_per_source; ++i, ++c)
      REQUIRE(state.listen(c, random_key(rng), t0, &s) == listen_ok(c));
  }
  const auto next = from("2001:db8:7:ff00::1");
  CHECK(refusal_to(c, state.listen(c, random_key(rng), t0, &next)) == R::overloaded);
  const auto other = from("2001:db8:8::1");
  CHECK(state.listen(c + 1, random_key(rng), t0, &other) == listen_ok(c + 1));
}

TEST_CASE(
    "pending connects per target: 64 wait for one listener, the 65th is overloaded; per source: 64 "
    "from one address") {
  std::mt19937_64 rng(16);
  PairingLimits limits;
  limits.connect_rate_per_source = 1e6;
  limits.connect_burst_per_source = 1e6;
  RelayState state(limits, fixed_key);
  const auto target = random_key(rng);
  REQUIRE(state.listen(1, target, t0) == listen_ok(1));
  ConnId c = 10;
  for (std::size_t i = 0; i < max_half_tunnels_per_target; ++i, ++c) {
    const auto s = from(("198.51.100." + std::to_string(i + 1)).c_str());
    REQUIRE_FALSE(refusal_to(c, state.connect(c, random_key(rng), target, t0, &s)));
  }
  const auto s = from("198.51.100.200");
  CHECK(refusal_to(c, state.connect(c, random_key(rng), target, t0, &s)) == R::overloaded);
  ++c;
  CHECK(state.take_limit_hits()[static_cast<std::size_t>(PairingLimit::half_tunnels_per_target)] ==
        1);
  // Per source: 64 from one address over several listeners, the 65th overloaded.
  std::vector<PublicKey> targets;
  for (ConnId l = 2; l < 6; ++l) {
    targets.push_back(random_key(rng));
    REQUIRE(state.listen(l, targets.back(), t0) == listen_ok(l));
  }
  const auto one = from("203.0.113.9");
  for (std::size_t i = 0; i < max_half_tunnels_per_source; ++i, ++c) {
    REQUIRE_FALSE(
        refusal_to(c, state.connect(c, random_key(rng), targets[i % targets.size()], t0, &one)));
  }
  CHECK(refusal_to(c, state.connect(c, random_key(rng), targets[0], t0, &one)) == R::overloaded);
  ++c;
  CHECK(state.take_limit_hits()[static_cast<std::size_t>(PairingLimit::half_tunnels_per_source)] ==
        1);
  CHECK(state.half_tunnels() == max_half_tunnels_per_target + max_half_tunnels_per_source);
}

TEST_CASE(
    "connect rate per source: the burst of 100 over fresh identities passes, the 101st is "
    "rate_limited") {
  std::mt19937_64 rng(17);
  RelayState state({}, fixed_key);
  const auto s = from("192.0.2.50");
  for (ConnId c = 1; c <= 100; ++c) {
    CHECK(refusal_to(c, state.connect(c, random_key(rng), random_key(rng), t0, &s)) ==
          R::not_found);
  }
  CHECK(refusal_to(200, state.connect(200, random_key(rng), random_key(rng), t0, &s)) ==
        R::rate_limited);
  CHECK(state.take_limit_hits()[static_cast<std::size_t>(PairingLimit::connect_rate_per_source)] ==
        1);
  const auto other = from("192.0.2.51");
  CHECK(refusal_to(201, state.connect(201, random_key(rng), random_key(rng), t0, &other)) ==
        R::not_found);
  // 10 per second: one more after 100 ms.
  CHECK(refusal_to(202, state.connect(202, random_key(rng), random_key(rng), t0 + 100ms, &s)) ==
        R::not_found);
}

TEST_CASE(
    "half-tunnel table full: a connect from a lighter source cuts the heaviest source's oldest, "
    "counted") {
  std::mt19937_64 rng(18);
  PairingLimits limits;
  limits.half_tunnels_total = 10;
  RelayState state(limits, fixed_key);
  const auto target = random_key(rng);
  REQUIRE(state.listen(1, target, t0) == listen_ok(1));
  const auto heavy = from("192.0.2.1");
  const auto light = from("192.0.2.2");
  for (ConnId c = 10; c < 18; ++c)
    REQUIRE_FALSE(refusal_to(c, state.connect(c, random_key(rng), target, t0, &heavy)));
  for (ConnId c = 20; c < 22; ++c)
    REQUIRE_FALSE(refusal_to(c, state.connect(c, random_key(rng), target, t0, &light)));
  // Full. A third source: admitted; connector 10 (heavy's oldest) is refused overloaded.
  const auto third = from("192.0.2.3");
  const auto newcomer = random_key(rng);
  const auto actions = state.connect(30, newcomer, target, t0, &third);
  REQUIRE(actions.size() == 3);
  CHECK(actions[0] == Action{SendTo{10, Refused{R::overloaded}}});
  CHECK(actions[1] == Action{CloseConn{10, CloseReason::overloaded}});
  CHECK(actions[2] == Action{SendTo{1, IncomingConnection{newcomer}}});
  CHECK(state.half_tunnels() == 10);
  CHECK(state.take_limit_hits()[static_cast<std::size_t>(PairingLimit::half_tunnels_total)] == 1);
  // heavy 7, light 2, third 1. The light source cuts while it would still hold fewer.
  CHECK(refusal_to(40, state.connect(40, random_key(rng), target, t0, &light)) ==
        std::nullopt);  // 3 < 7
  CHECK(refusal_to(41, state.connect(41, random_key(rng), target, t0, &light)) ==
        std::nullopt);  // 4 < 6
  CHECK(refusal_to(42, state.connect(42, random_key(rng), target, t0, &light)) ==
        R::overloaded);  // 5 is not < 5
  CHECK(refusal_to(43, state.connect(43, random_key(rng), target, t0, &heavy)) ==
        R::overloaded);  // the heaviest
  // Without a source there is no fair share: refused.
  CHECK(refusal_to(60, state.connect(60, random_key(rng), target, t0)) == R::overloaded);
  CHECK(state.half_tunnels() == 10);
  state.disconnect(1, t0);
  CHECK(state.half_tunnels() == 0);
  CHECK(state.listeners() == 0);
}
