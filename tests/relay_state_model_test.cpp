// Tests for strelay/relay_state against a deliberately naive reference model: the same random
// operations, as sessions would send them, must give the same actions.
#include <doctest/doctest.h>

#include <algorithm>
#include <iterator>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "strelay/relay_state.hpp"
#include "support/relay_state_fixture.hpp"

using namespace strelay;
using namespace strelay::test::pairing;
using namespace std::chrono_literals;

namespace {

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

}  // namespace

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
