// Tests for strelay/relay_state: the pairing table, as a table of sequences, against a naive
// reference model, and under flapping, racing and flooding.
#include "strelay/relay_state.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

using namespace strelay;
using namespace std::chrono_literals;

namespace {

const TimePoint t0 = TimePoint{} + 1000h;
const HashKey fixed_key{7, 7, 7};

// Deterministic identities A, B, C, D, ... (seed bytes all equal to the index + 1).
const std::vector<PublicKey>& keys() {
  static const std::vector<PublicKey> all = [] {
    std::vector<PublicKey> out;
    for (std::uint8_t i = 0; i < 8; ++i) {
      std::array<std::uint8_t, key_bytes> seed{};
      seed.fill(static_cast<std::uint8_t>(i + 1));
      out.push_back(Identity::from_seed(seed).public_key());
    }
    return out;
  }();
  return all;
}
const PublicKey& key(char name) {
  return keys().at(static_cast<std::size_t>(name - 'A'));
}

PublicKey random_key(std::mt19937_64& rng) {
  std::array<std::uint8_t, key_bytes> raw{};
  for (auto& b : raw) b = static_cast<std::uint8_t>(rng());
  return PublicKey(raw);  // the table never checks points: decode already did
}

// ---------------------------------------------------------------- readable actions

std::string name(const PublicKey& k) {
  const auto& all = keys();
  const auto it = std::find(all.begin(), all.end(), k);
  return it == all.end() ? "?" : std::string(1, static_cast<char>('A' + (it - all.begin())));
}

std::string describe(const RelayMessage& m) {
  if (std::holds_alternative<ListenOk>(m)) return "ListenOk";
  if (const auto* x = std::get_if<IncomingConnection>(&m)) return "Incoming{" + name(x->from) + "}";
  if (const auto* x = std::get_if<Connected>(&m)) return "Connected{" + name(x->peer) + "}";
  return std::string("Refused{") + to_string(std::get<Refused>(m).reason) + "}";
}

std::string describe(const Action& a) {
  if (const auto* x = std::get_if<SendTo>(&a)) {
    return "send " + std::to_string(x->to) + " " + describe(x->message);
  }
  if (const auto* x = std::get_if<CloseConn>(&a)) {
    return "close " + std::to_string(x->conn) + " reason " +
           std::to_string(static_cast<int>(x->reason));
  }
  const auto& p = std::get<Paired>(a);
  return "paired " + std::to_string(p.connector) + "<-" + std::to_string(p.acceptor) + " " +
         name(p.connector_key) + "->" + name(p.listener_key);
}

std::string describe(const Actions& actions) {
  std::string out;
  for (const auto& a : actions) out += (out.empty() ? "" : "; ") + describe(a);
  return out.empty() ? "(none)" : out;
}

// ---------------------------------------------------------------- expected actions

Actions none() {
  return {};
}
Actions listen_ok(ConnId c) {
  return {SendTo{c, ListenOk{}}};
}
Actions incoming(ConnId listener, char from) {
  return {SendTo{listener, IncomingConnection{key(from)}}};
}
Actions refused(ConnId c, RefuseReason r) {
  return {SendTo{c, Refused{r}}, CloseConn{c, close_reason_for(r)}};
}
Actions closed(ConnId c, CloseReason r) {
  return {CloseConn{c, r}};
}
Actions paired(ConnId connector, ConnId acceptor, char from, char listener) {
  return {Paired{connector, acceptor, key(from), key(listener)}};
}
Allowlist allow_only(std::initializer_list<PublicKey> members) {
  Allowlist list;
  for (const auto& k : members) list.add(k);
  return list;
}

Actions operator+(Actions a, const Actions& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

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

using R = RefuseReason;
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

// ---------------------------------------------------------------- the reference model

// Deliberately naive: plain containers, linear scans, the rules as the header states them.
class Model {
 public:
  explicit Model(const PairingLimits& limits) : limits_(limits) {}

  Actions listen(ConnId c, const PublicKey& self, TimePoint now) {
    Actions out = expire(now);
    if (has_role(c)) return protocol_error(out, c);
    if (!allowed(self)) return out + refused(c, R::not_allowed);
    if (listeners_.count(self)) out.push_back(CloseConn{listeners_[self], CloseReason::replaced});
    listeners_[self] = c;
    out.push_back(SendTo{c, ListenOk{}});
    for (const auto& p : pending_) {
      if (p.target == self) out.push_back(SendTo{c, IncomingConnection{p.from}});
    }
    return out;
  }

  Actions connect(ConnId c, const PublicKey& self, const PublicKey& target, TimePoint now) {
    Actions out = expire(now);
    if (has_role(c)) return protocol_error(out, c);
    if (!allowed(self)) return out + refused(c, R::not_allowed);
    auto bucket = buckets_.try_emplace(self, limits_.connect_rate, limits_.connect_burst).first;
    if (!bucket->second.try_take(now)) return out + refused(c, R::rate_limited);
    if (!listeners_.count(target)) return out + refused(c, R::not_found);
    if (pending_.size() >= limits_.half_tunnels_total) return out + refused(c, R::overloaded);
    const auto same = std::count_if(pending_.begin(), pending_.end(), [&](const auto& p) {
      return p.from == self && p.target == target;
    });
    if (static_cast<std::size_t>(same) >= limits_.half_tunnels_per_pair) {
      return out + refused(c, R::rate_limited);
    }
    pending_.push_back({c, self, target, now + limits_.half_tunnel_ttl});
    out.push_back(SendTo{listeners_[target], IncomingConnection{self}});
    return out;
  }

  Actions accept(ConnId c, const PublicKey& self, const PublicKey& from, TimePoint now) {
    Actions out = expire(now);
    if (has_role(c)) return protocol_error(out, c);
    if (!allowed(self)) return out + refused(c, R::not_allowed);
    for (auto it = pending_.begin(); it != pending_.end(); ++it) {
      if (it->target == self && it->from == from) {
        out.push_back(Paired{it->conn, c, from, self});
        pending_.erase(it);
        return out;
      }
    }
    return out + refused(c, R::no_pending);
  }

  Actions reject(ConnId c, const PublicKey& from, TimePoint now) {
    Actions out = expire(now);
    const auto* self = listener_key(c);
    if (self == nullptr) return protocol_error(out, c);
    const PublicKey target = *self;
    end_pending(
        out, [&](const auto& p) { return p.target == target && p.from == from; }, R::rejected);
    return out;
  }

  Actions disconnect(ConnId c, TimePoint now) {
    Actions out = expire(now);
    drop(out, c);
    return out;
  }

  Actions expire(TimePoint now) {
    std::vector<Pending> due;
    std::copy_if(pending_.begin(), pending_.end(), std::back_inserter(due),
                 [&](const auto& p) { return p.deadline < now; });
    std::stable_sort(due.begin(), due.end(),
                     [](const auto& a, const auto& b) { return a.deadline < b.deadline; });
    Actions out;
    for (const auto& p : due) {
      std::erase_if(pending_, [&](const auto& q) { return q.conn == p.conn; });
      out = out + refused(p.conn, R::timeout);
    }
    return out;
  }

  Actions set_allowlist(std::optional<Allowlist> allowlist) {
    allow_ = std::move(allowlist);
    Actions out;
    std::vector<ConnId> dropped;
    for (const auto& [k, c] : listeners_) {
      if (!allowed(k)) dropped.push_back(c);
    }
    std::sort(dropped.begin(), dropped.end());
    for (const ConnId c : dropped) {
      out.push_back(CloseConn{c, CloseReason::not_allowed});
      drop(out, c);
    }
    end_pending(
        out, [&](const auto& p) { return !allowed(p.from); }, R::not_allowed);
    return out;
  }

  std::size_t listeners() const { return listeners_.size(); }
  std::size_t half_tunnels() const { return pending_.size(); }

 private:
  struct Pending {
    ConnId conn;
    PublicKey from;
    PublicKey target;
    TimePoint deadline;
  };

  bool allowed(const PublicKey& k) const { return !allow_ || allow_->contains(k); }
  const PublicKey* listener_key(ConnId c) const {
    for (const auto& [k, l] : listeners_) {
      if (l == c) return &k;
    }
    return nullptr;
  }
  bool has_role(ConnId c) const {
    return listener_key(c) != nullptr || std::any_of(pending_.begin(), pending_.end(),
                                                     [&](const auto& p) { return p.conn == c; });
  }
  Actions protocol_error(Actions& out, ConnId c) {
    out.push_back(CloseConn{c, CloseReason::protocol_error});
    drop(out, c);
    return out;
  }
  void drop(Actions& out, ConnId c) {
    if (const auto* k = listener_key(c)) {
      const PublicKey target = *k;
      listeners_.erase(target);
      end_pending(
          out, [&](const auto& p) { return p.target == target; }, R::peer_gone);
    }
    std::erase_if(pending_, [&](const auto& p) { return p.conn == c; });
  }
  template <class Pred>
  void end_pending(Actions& out, Pred pred, RefuseReason reason) {
    std::vector<Pending> ended;
    for (const auto& p : pending_) {
      if (pred(p)) ended.push_back(p);
    }
    for (const auto& p : ended) {
      std::erase_if(pending_, [&](const auto& q) { return q.conn == p.conn; });
      out = out + refused(p.conn, reason);
    }
  }

  PairingLimits limits_;
  std::optional<Allowlist> allow_;
  std::map<PublicKey, ConnId> listeners_;
  std::vector<Pending> pending_;  // creation order
  std::map<PublicKey, TokenBucket> buckets_;
};

// Connections that got a close or were paired are finished: a session feeds nothing more.
void retire(std::set<ConnId>& live, const Actions& actions) {
  for (const auto& a : actions) {
    if (const auto* c = std::get_if<CloseConn>(&a)) live.erase(c->conn);
    if (const auto* p = std::get_if<Paired>(&a)) {
      live.erase(p->connector);
      live.erase(p->acceptor);
    }
  }
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
  for (int round = 0; round < 20; ++round) {
    RelayState state({}, fixed_key);
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

// Drives RelayState and Model with the same random operations, as sessions would: requests
// come only from live connections (a connection is retired once closed or paired).
class RandomRun {
 public:
  explicit RandomRun(const PairingLimits& limits) : state_(limits, fixed_key), model_(limits) {}

  void step(int op) {
    real_.clear();
    naive_.clear();
    const auto roll = rng_() % 100;
    if (roll < 45 || live_.empty()) {
      first_request();
    } else if (roll < 80) {  // a later request on a live connection
      const ConnId c = any_live();
      if (listening_.contains(c) && rng_() % 20 != 0) {
        request(c, 3);
      } else if (rng_() % 5 == 0) {
        request(c, static_cast<int>(rng_() % 4));  // a protocol error, mostly
      }
    } else if (roll < 85) {
      const ConnId c = any_live();
      both([&](auto& t) { return t.disconnect(c, now_); });
      live_.erase(c);
    } else if (roll < 99) {
      now_ += std::chrono::seconds(rng_() % 16);
      if (rng_() % 2) both([&](auto& t) { return t.expire(now_); });
    } else if (rng_() % 4 == 0) {
      std::optional<Allowlist> allow;
      if (rng_() % 3 == 0) allow = allow_only({keys()[0], keys()[1], keys()[rng_() % 4]});
      both([&](auto& t) { return t.set_allowlist(allow); });
    }
    if (real_ != naive_) {
      FAIL("operation " << op << ": real " << describe(real_) << " | model " << describe(naive_));
    }
    observe();
    REQUIRE(state_.listeners() == model_.listeners());
    REQUIRE(state_.half_tunnels() == model_.half_tunnels());
  }

  // How often each action kind and refuse reason occurred.
  std::map<std::string, int> kinds;

 private:
  template <class F>
  void both(F f) {
    real_ = f(state_);
    naive_ = f(model_);
  }

  PublicKey pick_key() { return keys()[rng_() % 4]; }
  ConnId any_live() { return *std::next(live_.begin(), static_cast<long>(rng_() % live_.size())); }

  void first_request() {
    const ConnId c = next_conn_++;
    identity_[c] = pick_key();
    live_.insert(c);
    const auto r = rng_() % 10;
    if (r >= 7 && r < 9 && !announced_.empty() && rng_() % 4 != 0) {
      // Mostly, accept what some listener was told about, as a real node would.
      const auto& [listener, from] = announced_[rng_() % announced_.size()];
      identity_[c] = listener;
      request(c, 2, from);
    } else {
      request(c, r < 2 ? 0 : r < 7 ? 1 : r < 9 ? 2 : 3);  // 1 in 10 rejects before listening
    }
  }

  void request(ConnId c, int which, std::optional<PublicKey> chosen = std::nullopt) {
    const PublicKey self = identity_[c];
    const PublicKey other = chosen ? *chosen : pick_key();
    switch (which) {
      case 0: both([&](auto& t) { return t.listen(c, self, now_); }); break;
      case 1: both([&](auto& t) { return t.connect(c, self, other, now_); }); break;
      case 2: both([&](auto& t) { return t.accept(c, self, other, now_); }); break;
      default: both([&](auto& t) { return t.reject(c, other, now_); }); break;
    }
  }

  // Updates what the driver knows (listening connections, announcements, live connections).
  void observe() {
    for (const auto& a : real_) {
      ++kinds[describe(a).substr(0, describe(a).find(' '))];
      const auto* send = std::get_if<SendTo>(&a);
      if (send == nullptr) continue;
      if (const auto* r = std::get_if<Refused>(&send->message)) ++kinds[to_string(r->reason)];
      if (std::holds_alternative<ListenOk>(send->message)) listening_.insert(send->to);
      if (const auto* m = std::get_if<IncomingConnection>(&send->message)) {
        announced_.emplace_back(identity_[send->to], m->from);
        if (announced_.size() > 8) announced_.erase(announced_.begin());
      }
    }
    retire(live_, real_);
    std::erase_if(listening_, [&](ConnId c) { return !live_.contains(c); });
  }

  RelayState state_;
  Model model_;
  std::mt19937_64 rng_{7};
  Actions real_;
  Actions naive_;
  std::set<ConnId> live_;                                   // connections a session still feeds
  std::set<ConnId> listening_;                              // live ones that got ListenOk
  std::map<ConnId, PublicKey> identity_;                    // each one's authenticated key
  std::vector<std::pair<PublicKey, PublicKey>> announced_;  // (listener, from), the latest 8
  ConnId next_conn_ = 1;
  TimePoint now_ = t0;
};

TEST_CASE("random operations agree with the reference model (10^5 operations)") {
  PairingLimits limits;
  limits.connect_rate = 0.5;
  limits.connect_burst = 4;
  limits.half_tunnels_total = 6;
  limits.half_tunnels_per_pair = 2;
  RandomRun run(limits);
  for (int op = 0; op < 100000; ++op) run.step(op);
  // Every path was reached (this seed gives each of these hundreds to thousands of times).
  for (const char* k : {"send", "close", "paired", "not_found", "rejected", "timeout", "peer_gone",
                        "rate_limited", "overloaded", "no_pending", "not_allowed"}) {
    INFO(k);
    CHECK(run.kinds[k] > 0);
  }
}
