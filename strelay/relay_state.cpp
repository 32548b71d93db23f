#include "strelay/relay_state.hpp"

#include <algorithm>
#include <array>

namespace strelay {

namespace {

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <class... F>
Overloaded(F...) -> Overloaded<F...>;

// The smallest step of the clock: a half-tunnel expires one tick after its deadline.
constexpr Clock::duration one_tick{1};

}  // namespace

std::size_t RelayState::PairHash::operator()(const PairKey& key) const {
  std::array<std::uint8_t, 2 * key_bytes> bytes{};
  std::copy(key.target.bytes().begin(), key.target.bytes().end(), bytes.begin());
  std::copy(key.from.bytes().begin(), key.from.bytes().end(), bytes.begin() + key_bytes);
  return hash(std::span<const std::uint8_t>(bytes));
}

RelayState::RelayState(const PairingLimits& limits, const HashKey& hash_key)
    : limits_(limits),
      listeners_(0, KeyedHash(hash_key)),
      by_target_(0, KeyedHash(hash_key)),
      by_pair_(0, PairHash{KeyedHash(hash_key)}),
      rates_(0, KeyedHash(hash_key)) {
  // Refuse a bad rate at start-up, not at the first Connect.
  (void)TokenBucket(limits.connect_rate, limits.connect_burst);
}

// ---------------------------------------------------------------- requests

Actions RelayState::handle(ConnId conn, const PublicKey& self, const NodeMessage& message,
                           TimePoint now) {
  return std::visit(Overloaded{
                        [&](const Listen&) { return listen(conn, self, now); },
                        [&](const Connect& m) { return connect(conn, self, m.target, now); },
                        [&](const Accept& m) { return accept(conn, self, m.from, now); },
                        [&](const RejectConnection& m) { return reject(conn, m.from, now); },
                    },
                    message);
}

Actions RelayState::listen(ConnId conn, const PublicKey& self, TimePoint now) {
  Actions out = expire(now);
  if (listener_keys_.contains(conn) || tunnels_.contains(conn)) {
    protocol_error(out, conn);
    return out;
  }
  if (!allowed(self)) {
    refuse(out, conn, RefuseReason::not_allowed);
    return out;
  }
  if (const auto old = listeners_.find(self); old != listeners_.end()) {
    // The newest Listen wins. The old listener's pending connectors stay: the new listener
    // has the same identity and can accept them.
    out.push_back(CloseConn{old->second, CloseReason::replaced});
    listener_keys_.erase(old->second);
    listeners_.erase(old);
  }
  listeners_.emplace(self, conn);
  listener_keys_.emplace(conn, self);
  out.push_back(SendTo{conn, ListenOk{}});
  for (const ConnId connector : pending_to(self)) {
    out.push_back(SendTo{conn, IncomingConnection{tunnels_.at(connector).from}});
  }
  return out;
}

Actions RelayState::connect(ConnId conn, const PublicKey& self, const PublicKey& target,
                            TimePoint now) {
  Actions out = expire(now);
  if (listener_keys_.contains(conn) || tunnels_.contains(conn)) {
    protocol_error(out, conn);
    return out;
  }
  const auto refusal = connect_refusal(self, target, now);
  if (refusal) {
    refuse(out, conn, *refusal);
    return out;
  }
  add_tunnel(conn, self, target, now);
  out.push_back(SendTo{listeners_.at(target), IncomingConnection{self}});
  return out;
}

// In the documented order; only the rate check changes state (it takes a token).
std::optional<RefuseReason> RelayState::connect_refusal(const PublicKey& self,
                                                        const PublicKey& target, TimePoint now) {
  if (!allowed(self)) return RefuseReason::not_allowed;
  if (const auto refusal = take_connect_token(self, now)) return refusal;
  if (!listeners_.contains(target)) return RefuseReason::not_found;
  if (tunnels_.size() >= limits_.half_tunnels_total) return RefuseReason::overloaded;
  const auto pair = by_pair_.find(PairKey{target, self});
  if (pair != by_pair_.end() && pair->second.size() >= limits_.half_tunnels_per_pair) {
    return RefuseReason::rate_limited;
  }
  return std::nullopt;
}

Actions RelayState::accept(ConnId conn, const PublicKey& self, const PublicKey& from,
                           TimePoint now) {
  Actions out = expire(now);
  if (listener_keys_.contains(conn) || tunnels_.contains(conn)) {
    protocol_error(out, conn);
    return out;
  }
  if (!allowed(self)) {
    refuse(out, conn, RefuseReason::not_allowed);
    return out;
  }
  // Only half-tunnels aimed at the acceptor's own key: another identity finds nothing.
  const auto pair = by_pair_.find(PairKey{self, from});
  if (pair == by_pair_.end()) {
    refuse(out, conn, RefuseReason::no_pending);
    return out;
  }
  const ConnId connector = pair->second.front();  // the oldest
  remove_tunnel(connector);
  out.push_back(Paired{connector, conn, from, self});
  return out;
}

Actions RelayState::reject(ConnId conn, const PublicKey& from, TimePoint now) {
  Actions out = expire(now);
  const auto listener = listener_keys_.find(conn);
  if (listener == listener_keys_.end()) {
    protocol_error(out, conn);  // only a listening connection may reject
    return out;
  }
  const auto pair = by_pair_.find(PairKey{listener->second, from});
  if (pair == by_pair_.end()) return out;               // nothing pending: it raced an outcome
  const std::vector<ConnId> connectors = pair->second;  // oldest first
  for (const ConnId connector : connectors) {
    remove_tunnel(connector);
    refuse(out, connector, RefuseReason::rejected);
  }
  return out;
}

// ---------------------------------------------------------------- events

Actions RelayState::disconnect(ConnId conn, TimePoint now) {
  Actions out = expire(now);
  drop_role(out, conn);
  return out;
}

Actions RelayState::expire(TimePoint now) {
  Actions out;
  while (!by_deadline_.empty() && by_deadline_.begin()->first.first < now) {
    const ConnId connector = by_deadline_.begin()->second;
    remove_tunnel(connector);
    refuse(out, connector, RefuseReason::timeout);
  }
  return out;
}

std::optional<TimePoint> RelayState::next_deadline() const {
  if (by_deadline_.empty()) return std::nullopt;
  return by_deadline_.begin()->first.first + one_tick;
}

void RelayState::set_limits(const PairingLimits& limits) {
  (void)TokenBucket(limits.connect_rate, limits.connect_burst);  // validate before changing
  limits_ = limits;
  for (auto& [key, entry] : rates_)
    entry.bucket.set_rate(limits.connect_rate, limits.connect_burst);
}

Actions RelayState::set_allowlist(std::optional<Allowlist> allowlist) {
  allowlist_ = std::move(allowlist);
  Actions out;
  if (!allowlist_) return out;
  std::vector<ConnId> dropped;
  for (const auto& [key, conn] : listeners_) {
    if (!allowed(key)) dropped.push_back(conn);
  }
  std::sort(dropped.begin(), dropped.end());  // a stable order, whatever the hash
  for (const ConnId conn : dropped) {
    out.push_back(CloseConn{conn, CloseReason::not_allowed});
    drop_listener(out, conn);
  }
  std::vector<std::pair<std::uint64_t, ConnId>> refused;  // (seq, connector): oldest first
  for (const auto& [connector, tunnel] : tunnels_) {
    if (!allowed(tunnel.from)) refused.emplace_back(tunnel.seq, connector);
  }
  std::sort(refused.begin(), refused.end());
  for (const auto& [seq, connector] : refused) {
    remove_tunnel(connector);
    refuse(out, connector, RefuseReason::not_allowed);
  }
  return out;
}

std::size_t RelayState::index_entries() const {
  std::size_t n = listeners_.size() + listener_keys_.size() + tunnels_.size() + by_target_.size() +
                  by_pair_.size() + by_deadline_.size() + rates_.size() + rate_lru_.size();
  for (const auto& [key, pending] : by_target_) n += pending.size();
  for (const auto& [key, pending] : by_pair_) n += pending.size();
  return n;
}

// ---------------------------------------------------------------- helpers

bool RelayState::allowed(const PublicKey& key) const {
  return !allowlist_ || allowlist_->contains(key);
}

// Buckets live in LRU order; a full bucket is the same as none, so full ones at the front go
// first. A new identity when the table is still full is refused as overloaded (fail closed:
// the alternative, no limit for new identities, is what a flood would want).
std::optional<RefuseReason> RelayState::take_connect_token(const PublicKey& self, TimePoint now) {
  while (!rate_lru_.empty() && rates_.at(rate_lru_.front()).bucket.is_full(now)) {
    rates_.erase(rate_lru_.front());
    rate_lru_.pop_front();
  }
  auto it = rates_.find(self);
  if (it == rates_.end()) {
    if (rates_.size() >= limits_.rate_entries_total) return RefuseReason::overloaded;
    TokenBucket bucket(limits_.connect_rate, limits_.connect_burst);
    it = rates_.emplace(self, RateEntry{bucket, rate_lru_.insert(rate_lru_.end(), self)}).first;
  } else {
    rate_lru_.splice(rate_lru_.end(), rate_lru_, it->second.lru_pos);
  }
  if (!it->second.bucket.try_take(now)) return RefuseReason::rate_limited;
  return std::nullopt;
}

void RelayState::refuse(Actions& out, ConnId conn, RefuseReason reason) {
  out.push_back(SendTo{conn, Refused{reason}});
  out.push_back(CloseConn{conn, close_reason_for(reason)});
}

void RelayState::protocol_error(Actions& out, ConnId conn) {
  out.push_back(CloseConn{conn, CloseReason::protocol_error});
  drop_role(out, conn);
}

void RelayState::drop_role(Actions& out, ConnId conn) {
  if (listener_keys_.contains(conn)) drop_listener(out, conn);
  if (tunnels_.contains(conn)) remove_tunnel(conn);  // the connector is gone: nobody to tell
}

// The listener is gone and, since a replaced listener is unregistered at once, no newer one
// exists: every connector waiting for this key learns it now.
void RelayState::drop_listener(Actions& out, ConnId conn) {
  const auto key = listener_keys_.find(conn);
  if (key == listener_keys_.end()) return;
  const PublicKey target = key->second;
  listeners_.erase(target);
  listener_keys_.erase(key);
  for (const ConnId connector : pending_to(target)) {
    remove_tunnel(connector);
    refuse(out, connector, RefuseReason::peer_gone);
  }
}

void RelayState::add_tunnel(ConnId conn, const PublicKey& from, const PublicKey& target,
                            TimePoint now) {
  const HalfTunnel tunnel{next_seq_++, from, target, now + limits_.half_tunnel_ttl};
  tunnels_.emplace(conn, tunnel);
  by_target_[target].emplace(tunnel.seq, conn);
  by_pair_[PairKey{target, from}].push_back(conn);
  by_deadline_.emplace(std::pair{tunnel.deadline, tunnel.seq}, conn);
}

// Removes the half-tunnel from every index, and any index entry it leaves empty.
void RelayState::remove_tunnel(ConnId conn) {
  const auto it = tunnels_.find(conn);
  if (it == tunnels_.end()) return;
  const HalfTunnel& tunnel = it->second;
  const auto target = by_target_.find(tunnel.target);
  target->second.erase(tunnel.seq);
  if (target->second.empty()) by_target_.erase(target);
  const auto pair = by_pair_.find(PairKey{tunnel.target, tunnel.from});
  std::erase(pair->second, conn);
  if (pair->second.empty()) by_pair_.erase(pair);
  by_deadline_.erase(std::pair{tunnel.deadline, tunnel.seq});
  tunnels_.erase(it);
}

std::vector<ConnId> RelayState::pending_to(const PublicKey& target) const {
  std::vector<ConnId> connectors;
  if (const auto it = by_target_.find(target); it != by_target_.end()) {
    for (const auto& [seq, connector] : it->second) connectors.push_back(connector);
  }
  return connectors;
}

}  // namespace strelay
