#include "strelay/relay_state.hpp"

#include <algorithm>
#include <array>
#include <utility>

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
      standbys_(0, KeyedHash(hash_key)),
      topics_(hash_key, limits.topics),
      by_target_(0, KeyedHash(hash_key)),
      by_pair_(0, PairHash{KeyedHash(hash_key)}),
      rates_(0, KeyedHash(hash_key)),
      listener_counts_(hash_key),
      half_tunnel_counts_(hash_key),
      tunnels_by_site_(0, KeyedHash(hash_key)),
      source_rates_(0, KeyedHash(hash_key)) {
  // Refuse a bad rate at start-up, not at the first Connect.
  (void)TokenBucket(limits.connect_rate, limits.connect_burst);
  (void)TokenBucket(limits.connect_rate_per_source, limits.connect_burst_per_source);
}

// ---------------------------------------------------------------- requests

Actions RelayState::handle(ConnId conn, const PublicKey& self, const NodeMessage& message,
                           TimePoint now, const Source* source) {
  return std::visit(
      Overloaded{
          [&](const Listen& m) { return listen(conn, self, now, source, m.early_e2e); },
          [&](const Connect& m) { return connect(conn, self, m.target, now, source, m.e2e_msg1); },
          [&](const Accept& m) { return accept(conn, self, m.from, now, m.e2e_msg1); },
          [&](const RejectConnection& m) { return reject(conn, m.from, now); },
          [&](const Standby&) { return standby(conn, self, now); },
          [&](const JoinTopic& m) { return join_topic(conn, m.topic, now); },
          [&](const LeaveTopic& m) { return leave_topic(conn, m.topic, now); },
      },
      message);
}

Actions RelayState::listen(ConnId conn, const PublicKey& self, TimePoint now, const Source* source,
                           bool early_e2e) {
  Actions out = expire(now);
  if (first_request_fails(out, conn, self)) return out;
  const auto old = listeners_.find(self);
  if (source != nullptr && listener_counts_.at_cap(*source, limits_.listeners)) {
    // A node re-listening from where it listened before replaces itself: never refused.
    const auto old_source =
        old == listeners_.end() ? listener_sources_.end() : listener_sources_.find(old->second);
    if (old_source == listener_sources_.end() || !(old_source->second.host() == source->host())) {
      hit(PairingLimit::listeners_per_source);
      refuse(out, conn, RefuseReason::overloaded);
      return out;
    }
  }
  if (old != listeners_.end()) {
    // The newest Listen wins. The old listener's pending connectors stay: the new listener
    // has the same identity and can accept them.
    out.push_back(CloseConn{old->second, CloseReason::replaced});
    drop_standby(out, self, CloseReason::replaced);  // it belonged to the replaced listen
    forget_listener_source(old->second);
    listener_keys_.erase(old->second);
    early_e2e_listeners_.erase(old->second);
    forget_listener_topics(old->second);
    listeners_.erase(old);
  }
  listeners_.emplace(self, conn);
  listener_keys_.emplace(conn, self);
  if (early_e2e) early_e2e_listeners_.insert(conn);
  if (source != nullptr) {
    listener_counts_.add(*source);
    listener_sources_.emplace(conn, *source);
  }
  out.push_back(SendTo{conn, ListenOk{}});
  for (const ConnId connector : pending_to(self)) {
    out.push_back(SendTo{conn, incoming_for(conn, connector)});
  }
  return out;
}

Actions RelayState::connect(ConnId conn, const PublicKey& self, const PublicKey& target,
                            TimePoint now, const Source* source,
                            const std::optional<E2eMsg1>& e2e_msg1) {
  Actions out = expire(now);
  if (has_role(conn)) {
    protocol_error(out, conn);
    return out;
  }
  ConnId cut = 0;
  const auto refusal = connect_refusal(self, target, now, source, cut);
  if (refusal) {
    refuse(out, conn, *refusal);
    return out;
  }
  if (cut != 0) {
    // Fair share: the heaviest site's oldest half-tunnel makes room.
    remove_tunnel(cut);
    refuse(out, cut, RefuseReason::overloaded);
  }
  add_tunnel(conn, self, target, now, source);
  tunnels_.at(conn).e2e_msg1 = e2e_msg1;
  const ConnId listener = listeners_.at(target);
  out.push_back(SendTo{listener, incoming_for(listener, conn)});
  return out;
}

// In the documented order; only the rate checks change state (they take tokens).
std::optional<RefuseReason> RelayState::connect_refusal(const PublicKey& self,
                                                        const PublicKey& target, TimePoint now,
                                                        const Source* source, ConnId& cut) {
  if (!allowed(self)) return RefuseReason::not_allowed;
  if (const auto refusal = take_connect_token(self, now)) return refusal;
  if (source != nullptr) {
    if (const auto refusal = take_source_token(*source, now)) return refusal;
  }
  if (!listeners_.contains(target)) return RefuseReason::not_found;
  if (const auto it = by_target_.find(target);
      it != by_target_.end() && it->second.size() >= limits_.half_tunnels_per_target) {
    hit(PairingLimit::half_tunnels_per_target);
    return RefuseReason::overloaded;
  }
  if (source != nullptr && half_tunnel_counts_.at_cap(*source, limits_.half_tunnels)) {
    hit(PairingLimit::half_tunnels_per_source);
    return RefuseReason::overloaded;
  }
  if (tunnels_.size() >= limits_.half_tunnels_total) {
    hit(PairingLimit::half_tunnels_total);
    cut = fair_share_cut(source);
    if (cut == 0) return RefuseReason::overloaded;
  }
  const auto pair = by_pair_.find(PairKey{target, self});
  if (pair != by_pair_.end() && pair->second.size() >= limits_.half_tunnels_per_pair) {
    cut = 0;
    return RefuseReason::rate_limited;
  }
  return std::nullopt;
}

ConnId RelayState::fair_share_cut(const Source* source) const {
  const auto heaviest = half_tunnel_counts_.heaviest();
  if (source == nullptr || !heaviest) return 0;
  if (half_tunnel_counts_.count(source->site()) + 1 >= heaviest->second) return 0;
  const auto site = tunnels_by_site_.find(heaviest->first);
  return site == tunnels_by_site_.end() || site->second.empty() ? 0 : site->second.begin()->second;
}

// The relay never reads the msg1: it hands it on, and compares it byte for byte.
IncomingConnection RelayState::incoming_for(ConnId listener, ConnId connector) const {
  const auto& tunnel = tunnels_.at(connector);
  if (!early_e2e_listeners_.contains(listener)) return IncomingConnection{tunnel.from};
  return IncomingConnection{tunnel.from, tunnel.e2e_msg1};
}

Actions RelayState::accept(ConnId conn, const PublicKey& self, const PublicKey& from, TimePoint now,
                           const std::optional<E2eMsg1>& e2e_msg1) {
  Actions out = expire(now);
  if (listener_keys_.contains(conn) || tunnels_.contains(conn)) {
    protocol_error(out, conn);
    return out;
  }
  // A standby closed by the relay (a newer standby, or its listen ended) whose Accept crossed
  // that close: the node reads the close and falls back to a new connection (docs/protocol.md
  // 4.4, "Standby"). Pairing it would start a tunnel on a connection that is closing.
  if (closed_standbys_.contains(conn)) return out;
  // A standby's one Accept: from here it is an ordinary acceptor.
  if (const auto parked = standby_keys_.find(conn); parked != standby_keys_.end()) {
    standbys_.erase(parked->second);
    standby_keys_.erase(parked);
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
  // With a msg1, the connect that sent it (the acceptor's msg2 answers that one and no
  // other); without, the oldest.
  auto chosen = pair->second.begin();
  if (e2e_msg1) {
    chosen = std::find_if(pair->second.begin(), pair->second.end(),
                          [&](ConnId c) { return tunnels_.at(c).e2e_msg1 == e2e_msg1; });
    if (chosen == pair->second.end()) {
      refuse(out, conn, RefuseReason::no_pending);
      return out;
    }
  }
  const ConnId connector = *chosen;
  remove_tunnel(connector);
  out.push_back(Paired{connector, conn, from, self, e2e_msg1.has_value()});
  return out;
}

Actions RelayState::standby(ConnId conn, const PublicKey& self, TimePoint now) {
  Actions out = expire(now);
  if (first_request_fails(out, conn, self)) return out;
  if (!listeners_.contains(self)) {
    refuse(out, conn, RefuseReason::not_found);  // a standby belongs to a live listen
    return out;
  }
  drop_standby(out, self, CloseReason::replaced);  // at most one per key: the newest wins
  standbys_.emplace(self, conn);
  standby_keys_.emplace(conn, self);
  return out;  // no reply: the node does not wait for one
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
  (void)TokenBucket(limits.connect_rate_per_source, limits.connect_burst_per_source);
  (void)TokenBucket(limits.topic_churn_rate, limits.topic_churn_burst);
  (void)TokenBucket(limits.introduction_rate, limits.introduction_burst);
  limits_ = limits;
  topics_.set_limits(limits.topics);
  for (auto& [conn, buckets] : topic_buckets_) {
    buckets.churn.set_rate(limits.topic_churn_rate, limits.topic_churn_burst);
    buckets.introductions.set_rate(limits.introduction_rate, limits.introduction_burst);
  }
  for (auto& [key, entry] : rates_)
    entry.bucket.set_rate(limits.connect_rate, limits.connect_burst);
  for (auto& [key, entry] : source_rates_)
    entry.bucket.set_rate(limits.connect_rate_per_source, limits.connect_burst_per_source);
}

std::array<std::uint64_t, pairing_limit_count> RelayState::take_limit_hits() {
  return std::exchange(hits_, {});
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
  std::size_t n = listeners_.size() + listener_keys_.size() + early_e2e_listeners_.size() +
                  standbys_.size() + standby_keys_.size() + closed_standbys_.size() +
                  tunnels_.size() + by_target_.size() + by_pair_.size() + by_deadline_.size() +
                  rates_.size() + rate_lru_.size() + listener_sources_.size() +
                  listener_counts_.entries() + half_tunnel_counts_.entries() +
                  tunnels_by_site_.size() + source_rates_.size() + source_rate_lru_.size() +
                  topics_.index_entries() + topic_buckets_.size();
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

// Per host, across its identities; bounded and evicted like the identities' buckets.
std::optional<RefuseReason> RelayState::take_source_token(const Source& source, TimePoint now) {
  while (!source_rate_lru_.empty() &&
         source_rates_.at(source_rate_lru_.front()).bucket.is_full(now)) {
    source_rates_.erase(source_rate_lru_.front());
    source_rate_lru_.pop_front();
  }
  auto it = source_rates_.find(source.host());
  if (it == source_rates_.end()) {
    if (source_rates_.size() >= limits_.rate_entries_total) return RefuseReason::overloaded;
    TokenBucket bucket(limits_.connect_rate_per_source, limits_.connect_burst_per_source);
    it = source_rates_
             .emplace(source.host(), SourceRate{bucket, source_rate_lru_.insert(
                                                            source_rate_lru_.end(), source.host())})
             .first;
  } else {
    source_rate_lru_.splice(source_rate_lru_.end(), source_rate_lru_, it->second.lru_pos);
  }
  if (!it->second.bucket.try_take(now)) {
    hit(PairingLimit::connect_rate_per_source);
    return RefuseReason::rate_limited;
  }
  return std::nullopt;
}

void RelayState::forget_listener_source(ConnId conn) {
  const auto it = listener_sources_.find(conn);
  if (it == listener_sources_.end()) return;
  listener_counts_.remove(it->second);
  listener_sources_.erase(it);
}

void RelayState::refuse(Actions& out, ConnId conn, RefuseReason reason) {
  out.push_back(SendTo{conn, Refused{reason}});
  out.push_back(CloseConn{conn, close_reason_for(reason)});
}

void RelayState::protocol_error(Actions& out, ConnId conn) {
  out.push_back(CloseConn{conn, CloseReason::protocol_error});
  drop_role(out, conn);
}

bool RelayState::first_request_fails(Actions& out, ConnId conn, const PublicKey& self) {
  if (has_role(conn)) {
    protocol_error(out, conn);
    return true;
  }
  if (!allowed(self)) {
    refuse(out, conn, RefuseReason::not_allowed);
    return true;
  }
  return false;
}

bool RelayState::has_role(ConnId conn) const {
  return listener_keys_.contains(conn) || tunnels_.contains(conn) || standby_keys_.contains(conn);
}

void RelayState::drop_standby(Actions& out, const PublicKey& key, CloseReason reason) {
  const auto it = standbys_.find(key);
  if (it == standbys_.end()) return;
  out.push_back(CloseConn{it->second, reason});
  closed_standbys_.insert(it->second);
  standby_keys_.erase(it->second);
  standbys_.erase(it);
}

void RelayState::drop_role(Actions& out, ConnId conn) {
  closed_standbys_.erase(conn);
  if (const auto parked = standby_keys_.find(conn); parked != standby_keys_.end()) {
    standbys_.erase(parked->second);  // the standby itself went: nobody to tell
    standby_keys_.erase(parked);
  }
  if (listener_keys_.contains(conn)) drop_listener(out, conn);
  if (tunnels_.contains(conn)) remove_tunnel(conn);  // the connector is gone: nobody to tell
}

// The listener is gone and, since a replaced listener is unregistered at once, no newer one
// exists: every connector waiting for this key learns it now.
void RelayState::drop_listener(Actions& out, ConnId conn) {
  const auto key = listener_keys_.find(conn);
  if (key == listener_keys_.end()) return;
  const PublicKey target = key->second;
  forget_listener_source(conn);
  listeners_.erase(target);
  listener_keys_.erase(key);
  early_e2e_listeners_.erase(conn);
  forget_listener_topics(conn);
  drop_standby(out, target, CloseReason::normal);  // its listen ended
  for (const ConnId connector : pending_to(target)) {
    remove_tunnel(connector);
    refuse(out, connector, RefuseReason::peer_gone);
  }
}

void RelayState::add_tunnel(ConnId conn, const PublicKey& from, const PublicKey& target,
                            TimePoint now, const Source* source) {
  HalfTunnel tunnel{next_seq_++, from, target, now + limits_.half_tunnel_ttl, std::nullopt};
  if (source != nullptr) {
    tunnel.source = *source;
    half_tunnel_counts_.add(*source);
    tunnels_by_site_[source->site()].emplace(tunnel.seq, conn);
  }
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
  if (tunnel.source) {
    half_tunnel_counts_.remove(*tunnel.source);
    const auto site = tunnels_by_site_.find(tunnel.source->site());
    site->second.erase(tunnel.seq);
    if (site->second.empty()) tunnels_by_site_.erase(site);
  }
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
