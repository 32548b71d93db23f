// Tests for strelay/relay_state: the listener's standby connection (docs/protocol.md 4.1,
// "Standby"; issue 17.2). A standby is parked under its key's live listener, at most one per
// key, used by its one Accept, and closed with its listen.
#include <doctest/doctest.h>

#include "strelay/relay_state.hpp"
#include "support/relay_state_fixture.hpp"

using namespace strelay;
using namespace strelay::test::pairing;
using namespace std::chrono_literals;

TEST_CASE("a standby is parked without a reply, and its Accept pairs like a new connection's") {
  RelayState state({}, fixed_key);
  REQUIRE(state.listen(1, key('B'), t0) == listen_ok(1));
  CHECK(state.standby(2, key('B'), t0) == none());
  CHECK(state.standbys() == 1);
  CHECK(state.connect(3, key('A'), key('B'), t0) == incoming(1, 'A'));
  CHECK(state.accept(2, key('B'), key('A'), t0) == paired(3, 2, 'A', 'B'));
  CHECK(state.standbys() == 0);  // used: it is an acceptor now, then forgotten
  CHECK(state.disconnect(2, t0) == none());
  CHECK(state.disconnect(1, t0) == none());
  CHECK(state.index_entries() == 2);  // only A's connect bucket (and its LRU entry)
}

TEST_CASE("a standby's Accept with nothing pending is refused as any Accept is") {
  RelayState state({}, fixed_key);
  REQUIRE(state.listen(1, key('B'), t0) == listen_ok(1));
  REQUIRE(state.standby(2, key('B'), t0) == none());
  CHECK(state.accept(2, key('B'), key('A'), t0) == refused(2, R::no_pending));
  CHECK(state.standbys() == 0);
  // The listener's next standby is not disturbed by the used one.
  CHECK(state.standby(3, key('B'), t0) == none());
  CHECK(state.disconnect(2, t0) == none());
  CHECK(state.standbys() == 1);
}

TEST_CASE("standbys per key: one is parked, the second replaces the first (Close{replaced})") {
  RelayState state({}, fixed_key);
  REQUIRE(state.listen(1, key('B'), t0) == listen_ok(1));
  CHECK(state.standby(2, key('B'), t0) == none());
  CHECK(state.standby(3, key('B'), t0) == closed(2, CloseReason::replaced));
  CHECK(state.standbys() == 1);
  CHECK(state.disconnect(2, t0) == none());  // the replaced one goes: nothing more to do
  REQUIRE(state.connect(4, key('A'), key('B'), t0) == incoming(1, 'A'));
  CHECK(state.accept(3, key('B'), key('A'), t0) == paired(4, 3, 'A', 'B'));
}

TEST_CASE("an Accept that crossed its standby's close pairs nothing; the fallback pairs") {
  // The node sends Accept on its standby while the relay, handling the node's next standby,
  // closes that one with Close{replaced}: the soak met this race about once a minute.
  RelayState state({}, fixed_key);
  REQUIRE(state.listen(1, key('B'), t0) == listen_ok(1));
  REQUIRE(state.standby(2, key('B'), t0) == none());
  REQUIRE(state.connect(4, key('A'), key('B'), t0) == incoming(1, 'A'));
  SUBCASE("replaced by a newer standby") {
    REQUIRE(state.standby(3, key('B'), t0) == closed(2, CloseReason::replaced));
    CHECK(state.accept(2, key('B'), key('A'), t0) == none());
    CHECK(state.half_tunnels() == 1);  // still pending, for the node's fallback
    CHECK(state.accept(5, key('B'), key('A'), t0) == paired(4, 5, 'A', 'B'));
    CHECK(state.standbys() == 1);  // the newer one, untouched
  }
  SUBCASE("closed with its replaced listen") {
    REQUIRE(state.listen(3, key('B'), t0) == closed(1, CloseReason::replaced) +
                                                 closed(2, CloseReason::replaced) + listen_ok(3) +
                                                 incoming(3, 'A'));
    CHECK(state.accept(2, key('B'), key('A'), t0) == none());
    CHECK(state.accept(5, key('B'), key('A'), t0) == paired(4, 5, 'A', 'B'));
  }
  const auto entries = state.index_entries();
  CHECK(state.disconnect(2, t0) == none());  // forgotten when it goes
  CHECK(state.index_entries() == entries - 1);
}

TEST_CASE("a standby without a live listen is refused explicitly: not_found") {
  RelayState state({}, fixed_key);
  CHECK(state.standby(1, key('B'), t0) == refused(1, R::not_found));
  REQUIRE(state.listen(2, key('C'), t0) == listen_ok(2));
  CHECK(state.standby(3, key('B'), t0) == refused(3, R::not_found));  // another key's listen
  CHECK(state.standbys() == 0);
  CHECK(state.index_entries() == 2);  // C's listener only
}

TEST_CASE("the standby closes with its listen: replaced, or gone") {
  RelayState state({}, fixed_key);
  REQUIRE(state.listen(1, key('B'), t0) == listen_ok(1));
  REQUIRE(state.standby(2, key('B'), t0) == none());
  SUBCASE("a newer listen wins: the old listener and its standby get Close{replaced}") {
    CHECK(state.listen(3, key('B'), t0) ==
          closed(1, CloseReason::replaced) + closed(2, CloseReason::replaced) + listen_ok(3));
    CHECK(state.standbys() == 0);
    CHECK(state.standby(4, key('B'), t0) == none());  // the new listen's own standby
    CHECK(state.standbys() == 1);
  }
  SUBCASE("the listener goes: its standby gets Close{normal}, pending connectors peer_gone") {
    REQUIRE(state.connect(3, key('A'), key('B'), t0) == incoming(1, 'A'));
    CHECK(state.disconnect(1, t0) == closed(2, CloseReason::normal) + refused(3, R::peer_gone));
    CHECK(state.standbys() == 0);
    CHECK(state.disconnect(2, t0) == none());
    CHECK(state.index_entries() == 2);  // A's connect bucket (and its LRU entry)
  }
  SUBCASE("the standby goes first: forgotten, the listener stays") {
    CHECK(state.disconnect(2, t0) == none());
    CHECK(state.standbys() == 0);
    CHECK(state.disconnect(1, t0) == none());
    CHECK(state.index_entries() == 0);
  }
}

TEST_CASE("a standby may send nothing but Accept: anything else is a protocol error") {
  RelayState state({}, fixed_key);
  REQUIRE(state.listen(1, key('B'), t0) == listen_ok(1));
  REQUIRE(state.connect(5, key('A'), key('B'), t0) == incoming(1, 'A'));
  SUBCASE("Listen") {
    REQUIRE(state.standby(2, key('B'), t0) == none());
    CHECK(state.listen(2, key('B'), t0) == closed(2, CloseReason::protocol_error));
  }
  SUBCASE("Connect") {
    REQUIRE(state.standby(2, key('B'), t0) == none());
    CHECK(state.connect(2, key('B'), key('B'), t0) == closed(2, CloseReason::protocol_error));
  }
  SUBCASE("RejectConnection") {
    REQUIRE(state.standby(2, key('B'), t0) == none());
    CHECK(state.reject(2, key('A'), t0) == closed(2, CloseReason::protocol_error));
  }
  SUBCASE("a second Standby") {
    REQUIRE(state.standby(2, key('B'), t0) == none());
    CHECK(state.standby(2, key('B'), t0) == closed(2, CloseReason::protocol_error));
  }
  SUBCASE("Standby on a listening or pending connection") {
    CHECK(state.standby(1, key('B'), t0) ==
          closed(1, CloseReason::protocol_error) + refused(5, R::peer_gone));
    CHECK(state.standby(5, key('A'), t0) == refused(5, R::not_found));  // already forgotten
  }
  CHECK(state.standbys() == 0);
  CHECK(state.half_tunnels() + state.listeners() <= 2);
}

TEST_CASE("allowlist: a standby needs the key listed, and a reload that drops it closes it") {
  RelayState state({}, fixed_key);
  REQUIRE(state.listen(1, key('B'), t0) == listen_ok(1));
  REQUIRE(state.standby(2, key('B'), t0) == none());
  CHECK(state.set_allowlist(allow_only({key('A')})) ==
        closed(1, CloseReason::not_allowed) + closed(2, CloseReason::normal));
  CHECK(state.standby(3, key('B'), t0) == refused(3, R::not_allowed));
  CHECK(state.standbys() == 0);
}

TEST_CASE("handle() dispatches Standby") {
  RelayState state({}, fixed_key);
  REQUIRE(state.handle(1, key('B'), Listen{}, t0) == listen_ok(1));
  CHECK(state.handle(2, key('B'), Standby{}, t0) == none());
  CHECK(state.standbys() == 1);
}
