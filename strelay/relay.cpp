#include "strelay/relay.hpp"

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>

#include "common/coro.hpp"

namespace strelay {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

ConnectOutcome connect_outcome(RefuseReason reason) {
  switch (reason) {
    case RefuseReason::not_found: return ConnectOutcome::not_found;
    case RefuseReason::rejected: return ConnectOutcome::rejected;
    case RefuseReason::timeout: return ConnectOutcome::timeout;
    case RefuseReason::peer_gone: return ConnectOutcome::peer_gone;
    case RefuseReason::rate_limited: return ConnectOutcome::rate_limited;
    case RefuseReason::overloaded: return ConnectOutcome::overloaded;
    case RefuseReason::no_pending: return ConnectOutcome::no_pending;
    case RefuseReason::not_allowed: return ConnectOutcome::not_allowed;
  }
  return ConnectOutcome::overloaded;
}

}  // namespace

// ---------------------------------------------------------------- Registration

Registration& Registration::operator=(Registration&& other) noexcept {
  if (this != &other) {
    reset();
    host_ = std::exchange(other.host_, nullptr);
    id_ = other.id_;
    peer_ = other.peer_;
  }
  return *this;
}

void Registration::submit(const NodeMessage& message) {
  if (host_ != nullptr) host_->request(id_, peer_, message);
}

void Registration::reset() noexcept {
  if (auto* host = std::exchange(host_, nullptr)) host->leave(id_);
}

// ---------------------------------------------------------------- Relay

Relay::Relay(const Options& options, Clock& clock, Metrics& metrics, Logger& log,
             TunnelObserver& observer, asio::any_io_executor timer_executor)
    : clock_(clock),
      metrics_(metrics),
      log_(log),
      observer_(observer),
      timer_executor_(std::move(timer_executor)),
      state_(options.pairing),
      tunnel_options_(options.tunnel) {}

Registration Relay::join(ConnId id, const PublicKey& peer, std::shared_ptr<RelayMember> member) {
  std::lock_guard lock(mutex_);
  if (draining_) return {};
  sessions_[id] = std::move(member);
  return Registration(this, id, peer);
}

void Relay::request(ConnId id, const PublicKey& peer, const NodeMessage& message) {
  std::lock_guard lock(mutex_);
  const auto member = sessions_.find(id);
  const auto session = member == sessions_.end() ? nullptr : member->second.lock();
  auto actions =
      state_.handle(id, peer, message, clock_.now(), session ? session->source() : nullptr);
  count_pairing_limits_locked();
  if (std::holds_alternative<Listen>(message)) metrics_.listen_total.inc();
  if (std::holds_alternative<Connect>(message))
    connect_started_[id] = std::chrono::steady_clock::now();  // real time, for the histogram
  arm_ttl_locked();
  dispatch_locked(std::move(actions));
}

void Relay::leave(ConnId id) {
  std::lock_guard lock(mutex_);
  sessions_.erase(id);
  connect_started_.erase(id);
  if (stopped_) return;  // the workers are gone: nothing may be posted
  dispatch_locked(state_.disconnect(id, clock_.now()));
}

void Relay::count_locked(const Action& action) {
  if (const auto* send = std::get_if<SendTo>(&action)) {
    if (const auto* refused = std::get_if<Refused>(&send->message)) {
      connect_started_.erase(send->to);
      const auto outcome = connect_outcome(refused->reason);
      metrics_.connect_outcomes_total.inc(outcome);
      if (outcome == ConnectOutcome::rate_limited)
        metrics_.limit_hits_total.inc(LimitReason::connect_rate);
    }
  } else if (const auto* close = std::get_if<CloseConn>(&action)) {
    if (close->reason == CloseReason::replaced) metrics_.replaced_total.inc();
  } else {
    metrics_.connect_outcomes_total.inc(ConnectOutcome::connected);
  }
}

// Decisions are posted while the lock is held (see the header). A pairing one of whose ends
// has already gone is abandoned (its other end will find that when it arrives).
void Relay::dispatch_locked(Actions actions) {
  std::vector<std::shared_ptr<Rendezvous>> orphans;
  metrics_.listeners.set(static_cast<std::int64_t>(state_.listeners()));
  metrics_.half_tunnels.set(static_cast<std::int64_t>(state_.half_tunnels()));
  metrics_.standbys.set(static_cast<std::int64_t>(state_.standbys()));
  metrics_.topics.set(static_cast<std::int64_t>(state_.topics()));
  metrics_.topic_memberships.set(static_cast<std::int64_t>(state_.topic_memberships()));
  auto find = [this](ConnId id) -> std::shared_ptr<RelayMember> {
    auto it = sessions_.find(id);
    return it == sessions_.end() ? nullptr : it->second.lock();
  };
  std::vector<std::pair<std::shared_ptr<RelayMember>, Outbound>> posts;
  for (auto& action : actions) {
    count_locked(action);
    if (auto* send = std::get_if<SendTo>(&action)) {
      if (auto session = find(send->to))
        posts.emplace_back(std::move(session), std::move(send->message));
    } else if (auto* close = std::get_if<CloseConn>(&action)) {
      if (auto session = find(close->conn)) posts.emplace_back(std::move(session), close->reason);
    } else {
      const auto& paired = std::get<Paired>(action);
      std::optional<std::chrono::steady_clock::time_point> began;
      if (auto it = connect_started_.find(paired.connector); it != connect_started_.end()) {
        began = it->second;
        connect_started_.erase(it);
      }
      auto rendezvous = std::make_shared<Rendezvous>(
          paired, log_,
          [this, began](const Paired& p, TunnelEnd connector, TunnelEnd acceptor,
                        asio::any_io_executor ex) {
            if (began) {
              metrics_.tunnel_setup_duration_seconds.observe(std::chrono::steady_clock::now() -
                                                             *began);
            }
            start_tunnel(p, std::move(connector), std::move(acceptor), std::move(ex));
          });
      for (ConnId id : {paired.connector, paired.acceptor}) {
        if (auto session = find(id)) {
          posts.emplace_back(std::move(session), rendezvous);
        } else {
          orphans.push_back(rendezvous);  // that end is already gone
        }
      }
    }
  }
  for (auto& rendezvous : orphans) rendezvous->abandon(0);
  for (auto& [session, item] : posts) session->post(std::move(item));
}

// The pairing table's own limit hits (which cap refused, or which fair share cut), by reason.
void Relay::count_pairing_limits_locked() {
  static constexpr LimitReason reasons[pairing_limit_count] = {LimitReason::listeners_per_source,
                                                               LimitReason::half_tunnels_per_source,
                                                               LimitReason::half_tunnels_per_target,
                                                               LimitReason::half_tunnels,
                                                               LimitReason::connect_rate_per_source,
                                                               LimitReason::topics_per_node,
                                                               LimitReason::members_per_topic,
                                                               LimitReason::topic_churn,
                                                               LimitReason::introductions};
  const auto hits = state_.take_limit_hits();
  for (std::size_t i = 0; i < pairing_limit_count; ++i) {
    if (hits[i] != 0) metrics_.limit_hits_total.inc(reasons[i], hits[i]);
  }
}

void Relay::arm_ttl_locked() {
  const auto next = state_.next_deadline();
  if (!next || (ttl_armed_at_ && *ttl_armed_at_ <= *next)) return;
  ttl_armed_at_ = next;
  asio::post(timer_executor_, [this] {
    std::lock_guard lock(mutex_);
    if (ttl_timer_ != nullptr) ttl_timer_->cancel();
  });
}

void Relay::start() {
  asio::co_spawn(timer_executor_, ttl_loop(), asio::detached);
}

asio::awaitable<void> Relay::ttl_loop() {
  RelayTimer timer(timer_executor_, clock_);
  {
    std::lock_guard lock(mutex_);
    ttl_timer_ = &timer;
  }
  // Cleared however the loop ends, including when its io_context destroys it.
  struct Forget {
    Relay& relay;
    ~Forget() {
      std::lock_guard lock(relay.mutex_);
      relay.ttl_timer_ = nullptr;
    }
  } forget{*this};
  for (;;) {
    {
      std::lock_guard lock(mutex_);
      if (stopped_) break;
      ttl_armed_at_ = state_.next_deadline();
      timer.expires_at(ttl_armed_at_.value_or(Clock::time_point::max()));
    }
    co_await timer.async_wait(await_tuple);
    std::lock_guard lock(mutex_);
    if (stopped_) break;
    dispatch_locked(state_.expire(clock_.now()));
  }
}

void Relay::start_tunnel(const Paired& pairing, TunnelEnd connector, TunnelEnd acceptor,
                         asio::any_io_executor executor) {
  // Both descriptors go onto this worker: a tunnel runs on one thread, without locks.
  tcp::socket a = connector.socket.attach(executor);
  tcp::socket b = acceptor.socket.attach(executor);
  Tunnel::Options options;
  {
    std::lock_guard lock(mutex_);
    options = tunnel_options_;
  }
  auto tunnel = std::make_shared<Tunnel>(std::move(a), std::move(b), options, clock_, &observer_);
  track(tunnel, pairing);
  auto holds = std::make_shared<std::pair<ConnectionHold, ConnectionHold>>(
      std::move(connector.hold), std::move(acceptor.hold));
  auto run = [this, tunnel, pairing, holds]() -> asio::awaitable<void> {
    GaugeHold live(metrics_.tunnels);
    // Both lines build fingerprints (base64 strings): not when info is off (issue 17.2).
    if (log_.enabled(LogLevel::info)) {
      log_.info("tunnel_open", LogTags{pairing.connector, pairing.connector_key},
                {{"listener", pairing.listener_key}, {"acceptor_conn", pairing.acceptor}});
    }
    const auto result = co_await tunnel->run();
    untrack(tunnel.get());  // its close was counted before its sockets closed
    if (log_.enabled(LogLevel::info)) {
      log_.info("tunnel_closed", LogTags{pairing.connector, pairing.connector_key},
                {{"reason", metric_label(result.reason)},
                 {"bytes_to_listener", result.bytes[0]},
                 {"bytes_to_connector", result.bytes[1]},
                 {"spliced", result.spliced}});
    }
  };
  asio::co_spawn(executor, std::move(run), asio::detached);
}

void Relay::track(const std::shared_ptr<Tunnel>& tunnel, const Paired& pairing) {
  std::lock_guard lock(mutex_);
  tunnels_[tunnel.get()] = TrackedTunnel{tunnel, pairing.connector_key, pairing.listener_key};
  if (draining_) tunnel->stop(CloseReason::shutdown);
}

void Relay::untrack(const Tunnel* tunnel) {
  std::lock_guard lock(mutex_);
  tunnels_.erase(tunnel);
}

void Relay::set_options(const Options& options) {
  std::lock_guard lock(mutex_);
  state_.set_limits(options.pairing);
  tunnel_options_ = options.tunnel;
}

void Relay::set_allowlist(std::optional<Allowlist> allowlist) {
  metrics_.allowlist_keys.set(allowlist ? static_cast<std::int64_t>(allowlist->size()) : -1);
  std::vector<std::pair<std::shared_ptr<Tunnel>, TrackedTunnel>> revoked;
  {
    std::lock_guard lock(mutex_);
    if (allowlist) {
      // A revoked key must not keep a pipe running (issue 14.3): either end no longer allowed.
      for (auto& [ptr, tracked] : tunnels_) {
        if (allowlist->contains(tracked.connector_key) && allowlist->contains(tracked.listener_key))
          continue;
        if (auto tunnel = tracked.tunnel.lock()) revoked.emplace_back(std::move(tunnel), tracked);
      }
    }
    dispatch_locked(state_.set_allowlist(std::move(allowlist)));
  }
  for (auto& [tunnel, tracked] : revoked) {
    metrics_.limit_hits_total.inc(LimitReason::not_allowed_tunnel);
    log_.info("tunnel_revoked", LogTags{0, tracked.connector_key},
              {{"listener", tracked.listener_key}});
    tunnel->stop(CloseReason::not_allowed);  // counted in closes_total when it ends
  }
}

void Relay::begin_drain() {
  std::lock_guard lock(mutex_);
  draining_ = true;
}

void Relay::close_sessions(CloseReason reason) {
  std::lock_guard lock(mutex_);
  for (auto& [id, weak] : sessions_) {
    if (auto session = weak.lock()) session->post(reason);
  }
}

void Relay::stop_tunnels(CloseReason reason) {
  std::vector<std::shared_ptr<Tunnel>> tunnels;
  {
    std::lock_guard lock(mutex_);
    for (auto& [ptr, tracked] : tunnels_) {
      if (auto tunnel = tracked.tunnel.lock()) tunnels.push_back(std::move(tunnel));
    }
  }
  for (auto& tunnel : tunnels) tunnel->stop(reason);
}

void Relay::stop() {
  std::lock_guard lock(mutex_);
  stopped_ = true;
  if (ttl_timer_ != nullptr) ttl_timer_->cancel();
}

std::size_t Relay::sessions() const {
  std::lock_guard lock(mutex_);
  return sessions_.size();
}

std::size_t Relay::listeners() const {
  std::lock_guard lock(mutex_);
  return state_.listeners();
}

std::size_t Relay::half_tunnels() const {
  std::lock_guard lock(mutex_);
  return state_.half_tunnels();
}

std::vector<Metrics::TunnelLoad> Relay::busiest_tunnels(std::size_t max) {
  const auto now = std::chrono::steady_clock::now();
  std::vector<Metrics::TunnelLoad> out;
  std::lock_guard lock(mutex_);
  out.reserve(tunnels_.size());
  for (auto& [raw, tracked] : tunnels_) {
    const auto tunnel = tracked.tunnel.lock();
    if (!tunnel) continue;
    // The tunnel's a is the connector: a -> b goes to the listener.
    const auto bytes = tunnel->forwarded_bytes();
    const double since = std::chrono::duration<double>(now - tracked.looked).count();
    if (since >= 1.0) {
      for (std::size_t i = 0; i < 2; ++i) {
        tracked.rate[i] = static_cast<double>(bytes[i] - tracked.looked_bytes[i]) / since;
      }
      tracked.looked = now;
      tracked.looked_bytes = bytes;
    }
    out.push_back({tracked.connector_key.fingerprint(), tracked.listener_key.fingerprint(),
                   std::chrono::duration<double>(now - tracked.opened).count(), bytes,
                   tracked.rate});
  }
  const auto busier = [](const Metrics::TunnelLoad& x, const Metrics::TunnelLoad& y) {
    const double rx = x.rate[0] + x.rate[1], ry = y.rate[0] + y.rate[1];
    return rx != ry ? rx > ry : x.age_seconds > y.age_seconds;
  };
  const auto shown = std::min(max, out.size());
  std::partial_sort(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(shown), out.end(),
                    busier);
  out.resize(shown);
  return out;
}

std::size_t Relay::tunnels() const {
  std::lock_guard lock(mutex_);
  return tunnels_.size();
}

}  // namespace strelay
