// Tests for strelay/relay_state: the end-to-end msg1 with Connect (docs/protocol.md 4.4, "The
// end-to-end msg1 with connect"; issue 17.2). The relay keeps a connect's msg1 with its
// half-tunnel, hands it only to a listener that said Listen{early_e2e}, and pairs an Accept that
// names a msg1 with exactly the connect that sent it. It never reads the bytes.
#include <doctest/doctest.h>

#include "strelay/relay_state.hpp"
#include "support/relay_state_fixture.hpp"

using namespace strelay;
using namespace strelay::test::pairing;

namespace {

E2eMsg1 msg1(std::uint8_t fill) {
  E2eMsg1 m{};
  m.fill(fill);
  return m;
}

Actions incoming_with(ConnId listener, char from, std::optional<E2eMsg1> m) {
  return {SendTo{listener, IncomingConnection{key(from), m}}};
}

Actions paired_early(ConnId connector, ConnId acceptor, char from, char listener) {
  return {Paired{connector, acceptor, key(from), key(listener), true}};
}

}  // namespace

TEST_CASE("the msg1 goes to a listener that opted in, and never to one that did not") {
  RelayState state({}, fixed_key);
  REQUIRE(state.listen(1, key('B'), t0, nullptr, true) == listen_ok(1));
  REQUIRE(state.listen(2, key('C'), t0) == listen_ok(2));  // an older listener: no opt-in
  CHECK(state.connect(3, key('A'), key('B'), t0, nullptr, msg1(0x11)) ==
        incoming_with(1, 'A', msg1(0x11)));
  CHECK(state.connect(4, key('A'), key('C'), t0, nullptr, msg1(0x22)) == incoming(2, 'A'));
  // A connect without msg1 to an opted-in listener: nothing to hand on.
  CHECK(state.connect(5, key('D'), key('B'), t0) == incoming(1, 'D'));
}

TEST_CASE("handle() carries the fields: Listen{early_e2e}, Connect{msg1}, Accept{msg1}") {
  RelayState state({}, fixed_key);
  REQUIRE(state.handle(1, key('B'), Listen{true}, t0) == listen_ok(1));
  CHECK(state.handle(2, key('A'), Connect{key('B'), msg1(7)}, t0) ==
        incoming_with(1, 'A', msg1(7)));
  CHECK(state.handle(3, key('B'), Accept{key('A'), msg1(7)}, t0) == paired_early(2, 3, 'A', 'B'));
}

TEST_CASE("an Accept naming a msg1 pairs the connect that sent it, not the oldest") {
  RelayState state({}, fixed_key);
  REQUIRE(state.listen(1, key('B'), t0, nullptr, true) == listen_ok(1));
  REQUIRE(state.connect(2, key('A'), key('B'), t0, nullptr, msg1(1)) ==
          incoming_with(1, 'A', msg1(1)));
  REQUIRE(state.connect(3, key('A'), key('B'), t0, nullptr, msg1(2)) ==
          incoming_with(1, 'A', msg1(2)));
  CHECK(state.accept(4, key('B'), key('A'), t0, msg1(2)) == paired_early(3, 4, 'A', 'B'));
  // A msg1 nobody pending sent: refused explicitly, and the remaining connect is untouched.
  CHECK(state.accept(5, key('B'), key('A'), t0, msg1(9)) == refused(5, RefuseReason::no_pending));
  CHECK(state.half_tunnels() == 1);
  // An Accept without msg1 takes the oldest, as before, and the connector is not told "early".
  CHECK(state.accept(6, key('B'), key('A'), t0) == paired(2, 6, 'A', 'B'));
}

TEST_CASE("a replacing listener gets the msg1 only if it opted in itself") {
  RelayState state({}, fixed_key);
  REQUIRE(state.listen(1, key('B'), t0, nullptr, true) == listen_ok(1));
  REQUIRE(state.connect(2, key('A'), key('B'), t0, nullptr, msg1(5)) ==
          incoming_with(1, 'A', msg1(5)));
  // An older listener of the same key replaces it: announced without the msg1.
  CHECK(state.listen(3, key('B'), t0) ==
        Actions{CloseConn{1, CloseReason::replaced}} + listen_ok(3) + incoming(3, 'A'));
  // A newer one that opted in gets it again.
  CHECK(state.listen(4, key('B'), t0, nullptr, true) ==
        Actions{CloseConn{3, CloseReason::replaced}} + listen_ok(4) +
            incoming_with(4, 'A', msg1(5)));
  CHECK(state.disconnect(4, t0) == refused(2, RefuseReason::peer_gone));
  CHECK(state.disconnect(3, t0) == none());
  CHECK(state.disconnect(1, t0) == none());
  CHECK(state.index_entries() == 2);  // A's connect bucket and its LRU entry: no opt-in left
}
