// The relay proper: the pairing table, the registries of sessions and tunnels, the dispatch of
// the table's decisions, and the half-tunnel TTL. It owns no thread, socket or acceptor (those
// are Server's); sessions reach it only through SessionHost, and it reaches a session only by
// posting to it (RelayMember), as in Asio's chat example (chat_room and chat_participant).
//
// The walk from accept to tunnel (docs/architecture.md):
//   Server::hand_off → Session (handshake, first request) → SessionHost::join → Registration::
//   submit → RelayState → dispatch → RelayMember::post → Session → Rendezvous::arrive →
//   Relay::start_tunnel → Tunnel; Registration's destructor leaves.
//
// Threading: every method may be called from any worker. mutex_ guards the pairing table,
// both registries, draining_, stopped_ and the TTL timer's pointer. Decisions are posted while
// mutex_ is held, so every session sees the decisions addressed to it in the order the table
// made them (a ListenOk is never overtaken by the Close{replaced} of a newer Listen handled on
// another worker). Posting only queues; it never blocks or calls back into the relay.
//
// Time: the pairing table takes `now` from the relay's clock (clock_); the TTL loop waits on
// a timer on that clock, on the executor given at construction (the server's worker 0).
#pragma once

#include <array>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <variant>

#include "common/keys.hpp"
#include "common/log.hpp"
#include "common/messages.hpp"
#include "strelay/clock.hpp"
#include "strelay/metrics.hpp"
#include "strelay/relay_state.hpp"
#include "strelay/rendezvous.hpp"
#include "strelay/tunnel.hpp"

namespace strelay {

// A decision for one session: a message from the pairing table, a close (from the table or
// from shutdown), or the rendezvous of its pairing.
using Outbound = std::variant<RelayMessage, CloseReason, std::shared_ptr<Rendezvous>>;

// A session as the relay sees it.
class RelayMember {
 public:
  // Thread-safe and never blocks: queues `item` for the session. Called under the relay's lock.
  virtual void post(Outbound item) = 0;
  // Where the connection comes from, for the pairing table's per-source caps (issue 14);
  // nullptr: not counted. Called under the relay's lock; must not block.
  virtual const Source* source() const { return nullptr; }

 protected:
  ~RelayMember() = default;
};

class Registration;

// The relay as a session sees it. Relay implements it; a test may stand in for it.
class SessionHost {
 public:
  // An authenticated session joins before its first request is handled. The registration's
  // destructor leaves: the session is erased from the registry and the pairing table forgets
  // its connection, in one step, on every path (return or exception).
  virtual Registration join(ConnId id, const PublicKey& peer,
                            std::shared_ptr<RelayMember> member) = 0;

 protected:
  ~SessionHost() = default;

 private:
  friend class Registration;
  virtual void request(ConnId id, const PublicKey& peer, const NodeMessage& message) = 0;
  virtual void leave(ConnId id) = 0;
};

// A session's membership of the relay (RAII): move-only, leaves when destroyed or reset.
class Registration {
 public:
  Registration() = default;
  Registration(SessionHost* host, ConnId id, const PublicKey& peer)
      : host_(host), id_(id), peer_(peer) {}
  Registration(Registration&& other) noexcept { *this = std::move(other); }
  Registration& operator=(Registration&& other) noexcept;
  ~Registration() { reset(); }

  // False when the relay was draining at join(): the session must close with Close{shutdown}.
  bool open() const { return host_ != nullptr; }
  // A request from the session's node; the table's decisions are posted to the sessions. A
  // no-op once left.
  void submit(const NodeMessage& message);
  // Leaves now (idempotent).
  void reset() noexcept;

 private:
  SessionHost* host_ = nullptr;
  ConnId id_ = 0;
  PublicKey peer_;
};

class Relay final : public SessionHost {
 public:
  struct Options {
    PairingLimits pairing;
    Tunnel::Options tunnel;
  };

  // `clock`, `metrics`, `log` and `observer` must outlive the relay; `timer_executor` runs the
  // TTL loop. The relay must outlive every session and tunnel that uses it.
  Relay(const Options& options, Clock& clock, Metrics& metrics, Logger& log,
        TunnelObserver& observer, boost::asio::any_io_executor timer_executor);
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  // ---- for sessions (SessionHost)
  Registration join(ConnId id, const PublicKey& peer, std::shared_ptr<RelayMember> member) override;

  // ---- for the server
  // Connection ids are never reused.
  ConnId next_conn_id() { return next_conn_.fetch_add(1, std::memory_order_relaxed); }
  // Spawns the TTL loop on the timer executor.
  void start();
  // SIGHUP: new limits apply to new requests and new tunnels.
  void set_options(const Options& options);
  // SIGHUP: nullopt is a public relay. Running tunnels whose either end is no longer allowed
  // are stopped (not_allowed: counted, logged), as listeners and pending connects are.
  void set_allowlist(std::optional<Allowlist> allowlist);
  // From now on join() refuses (Registration::open() is false) and new tunnels stop at once.
  void begin_drain();
  // Asks every session (listeners, pending connectors, handshaken nodes) to close with
  // `reason`; running tunnels are left to finish (the drain, issue 20.1).
  void close_sessions(CloseReason reason);
  // Stops every running tunnel with `reason`.
  void stop_tunnels(CloseReason reason);
  // Both of the above.
  void close_all(CloseReason reason) {
    close_sessions(reason);
    stop_tunnels(reason);
  }
  // The workers are stopping: the TTL loop ends, and sessions that leave from now on (as
  // their io_context destroys them) are only erased, with nothing posted.
  void stop();

  // Sizes, for tests that check nothing is left behind.
  std::size_t sessions() const;
  std::size_t listeners() const;
  std::size_t half_tunnels() const;
  std::size_t tunnels() const;
  // The open tunnels, busiest first (by the rate since the previous call, at least 1 s ago,
  // then by age), at most `max`.
  std::vector<Metrics::TunnelLoad> busiest_tunnels(std::size_t max);

 private:
  void request(ConnId id, const PublicKey& peer, const NodeMessage& message) override;
  void leave(ConnId id) override;
  void dispatch_locked(Actions actions);    // mutex_ held
  void count_locked(const Action& action);  // mutex_ held
  void arm_ttl_locked();                    // mutex_ held
  boost::asio::awaitable<void> ttl_loop();
  void start_tunnel(const Paired& pairing, TunnelEnd connector, TunnelEnd acceptor,
                    boost::asio::any_io_executor executor);
  void track(const std::shared_ptr<Tunnel>& tunnel, const Paired& pairing);
  void count_pairing_limits_locked();  // mutex_ held
  void untrack(const Tunnel* tunnel);

  Clock& clock_;
  Metrics& metrics_;
  Logger& log_;
  TunnelObserver& observer_;
  boost::asio::any_io_executor timer_executor_;
  std::atomic<ConnId> next_conn_{1};

  mutable std::mutex mutex_;
  RelayState state_;
  Tunnel::Options tunnel_options_;
  std::unordered_map<ConnId, std::weak_ptr<RelayMember>> sessions_;
  // When each pending Connect arrived, for the set-up histogram (until paired, refused or gone).
  std::unordered_map<ConnId, std::chrono::steady_clock::time_point> connect_started_;
  // Each tunnel with the keys of its two ends: a reload stops those whose key was revoked.
  struct TrackedTunnel {
    std::weak_ptr<Tunnel> tunnel;
    PublicKey connector_key;
    PublicKey listener_key;
    std::chrono::steady_clock::time_point opened = std::chrono::steady_clock::now();
    // The previous look, for the rate: its time, the bytes then, and the rate it found.
    std::chrono::steady_clock::time_point looked = opened;
    std::array<std::uint64_t, 2> looked_bytes{};
    std::array<double, 2> rate{};
  };
  std::unordered_map<const Tunnel*, TrackedTunnel> tunnels_;
  bool draining_ = false;
  bool stopped_ = false;
  std::optional<TimePoint> ttl_armed_at_;
  RelayTimer* ttl_timer_ = nullptr;  // the TTL loop's, while it runs
};

}  // namespace strelay
