// The relay daemon's I/O core: worker threads, acceptors, the shared tables, and shutdown.
//
// Threading (docs/architecture.md): one io_context per worker thread. A connection lives on one
// worker for its whole life. The acceptors run on worker 0 and place each new socket on the
// next worker, round robin. Shared state is small and locked briefly:
//   state_mutex_  guards relay_state_, sessions_, tunnels_ and ttl_armed_at_;
//   admission_    is internally locked (it also grants tunnels their pipe descriptors);
//   budget_mutex_ guards budget_ (the descriptor budget, set on worker 0 when run() starts);
//   metrics_      is relaxed atomics.
// Timers that tests move run on strelay::Clock (strelay/clock.hpp); recheck_timers() makes the
// workers re-read it.
// Decisions of the pairing table are addressed to connection ids; the server looks the
// sessions up and posts each decision to its session's worker under state_mutex_, so that
// every session sees decisions in the order the table made them.
//
// Shutdown has one path: shutdown() closes the acceptors, asks every session to close with
// Close{shutdown} and every tunnel to stop, waits for them up to the drain deadline, then stops
// the workers. run() returns when the workers have stopped.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "common/keys.hpp"
#include "common/log.hpp"
#include "common/messages.hpp"
#include "strelay/carrier.hpp"
#include "strelay/limits.hpp"
#include "strelay/metrics.hpp"
#include "strelay/relay_state.hpp"
#include "strelay/tunnel.hpp"

namespace strelay {

class Session;

// Everything the server needs to know, in the units it uses. main builds it from the flags.
struct ServerSettings {
  // The descriptor budget (strelay/limits.hpp, plan_descriptors), applied when run() starts,
  // once every descriptor of the process's own is open. nofile 0: no budget, and
  // admission.connections_total and admission.pipe_fds_total are used as given (tests).
  struct Descriptors {
    std::uint64_t nofile = 0;             // the soft RLIMIT_NOFILE
    std::size_t connections_flag = 0;     // --max-connections; 0: automatic
    std::size_t http_connections = 0;     // the HTTP endpoint's cap; 0: no endpoint
  } descriptors;
  std::vector<boost::asio::ip::tcp::endpoint> listen;
  std::vector<boost::asio::ip::tcp::endpoint> websocket_listen;  // WebSocket (and HTTP) only
  CarrierSettings carrier;  // WebSocket path, origins, trusted proxies, web root
  unsigned threads = 0;  // 0: one per core
  AdmissionLimits admission;
  PairingLimits pairing;
  Tunnel::Options tunnel;
  Clock::duration handshake_timeout = handshake_deadline;
  Clock::duration write_stall = write_stall_timeout;
  Clock::duration keepalive = keepalive_interval;
  Clock::duration dead_peer = dead_peer_timeout;
  Clock::duration drain = drain_deadline;
};

class Server {
 public:
  // `identity`, `metrics` and `log` must outlive the server.
  Server(const Identity& identity, ServerSettings settings, Metrics& metrics, Logger& log);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds every listen address; throws std::system_error naming the address on failure
  // (address in use, permission). Call before run().
  void bind();
  // The bound addresses (with the real port when 0 was asked for).
  std::vector<boost::asio::ip::tcp::endpoint> local_endpoints() const;
  // An executor for helpers that should share worker 0 (the HTTP endpoint, signals).
  boost::asio::any_io_executor control_executor();

  // Runs the workers on their threads and blocks until shutdown has completed.
  void run();
  // Starts the drain; thread-safe and idempotent.
  void shutdown();
  // Tests that moved strelay::Clock forward: makes every worker re-read the clock at once, so
  // the timers now due fire (without this they fire at their old real-time instant).
  void recheck_timers();
  // The descriptor budget in force (all zero when settings.descriptors.nofile is 0), and the
  // descriptors the process had open when run() started.
  DescriptorBudget descriptor_budget() const;
  std::uint64_t descriptors_at_start() const { return fds_at_start_.load(); }
  // Runs `hook` on worker 0 when the drain starts (e.g. to stop the HTTP endpoint). Before run().
  void on_drain(std::function<void()> hook) { drain_hooks_.push_back(std::move(hook)); }
  // Runs `hook` on worker 0 once run() has applied the descriptor budget (e.g. to show the
  // connection cap in force on the status page). Before run(); not called without a budget.
  void on_budget(std::function<void(const DescriptorBudget&)> hook) { budget_hooks_.push_back(std::move(hook)); }
  // SIGHUP: new limits and allowlist (nullopt: a public relay). Thread-safe.
  // The listen addresses and thread count of `settings` are ignored (they need a restart).
  void reload(const ServerSettings& settings, std::optional<Allowlist> allowlist);
  void set_allowlist(std::optional<Allowlist> allowlist);

  // ---- for sessions (any worker thread)
  const Identity& identity() const { return identity_; }
  // The settings in force; a reload swaps in a new snapshot, and each session keeps the one
  // it started with.
  std::shared_ptr<const ServerSettings> settings() const { return settings_.load(); }
  Metrics& metrics() { return metrics_; }
  Logger& log() { return log_; }
  Admission& admission() { return admission_; }
  bool draining() const { return draining_.load(std::memory_order_acquire); }
  ConnId next_conn_id() { return next_conn_.fetch_add(1, std::memory_order_relaxed); }

  // A session that has authenticated joins the registry before its first request is handled,
  // and leaves it when it ends (the guard's destructor), so no path can forget either.
  class Registration {
   public:
    Registration() = default;
    Registration(Server* server, ConnId id) : server_(server), id_(id) {}
    Registration(Registration&& o) noexcept : server_(std::exchange(o.server_, nullptr)), id_(o.id_) {}
    Registration& operator=(Registration&&) = delete;
    ~Registration();

   private:
    Server* server_ = nullptr;
    ConnId id_ = 0;
  };
  Registration enroll(ConnId id, const std::shared_ptr<Session>& session);
  // Per-source admission for a connection's source (the TCP peer, or the client a trusted
  // proxy names): nullopt when refused, which is counted and logged here.
  std::optional<Admission::Admitted> admit(const boost::asio::ip::address& source);

  // A request from an authenticated session; its decisions are dispatched.
  void submit(ConnId id, const PublicKey& self, const NodeMessage& message);
  // The session is gone (idempotent); its decisions are dispatched.
  void disconnect(ConnId id);
  // A tunnel is running; it is stopped at shutdown. untrack() when it has ended.
  void track(const std::shared_ptr<Tunnel>& tunnel);
  void untrack(const Tunnel* tunnel);
  TunnelObserver& tunnel_observer() { return *observer_; }

 private:
  boost::asio::awaitable<void> accept_loop(boost::asio::ip::tcp::acceptor& acceptor, bool websocket_only);
  boost::asio::awaitable<void> ttl_loop();
  boost::asio::awaitable<void> drain();
  void dispatch_locked(Actions actions);  // state_mutex_ held
  void arm_ttl_locked();           // state_mutex_ held
  // The admission limits of `settings` with the descriptor budget applied (fds_at_start_).
  AdmissionLimits budgeted(const ServerSettings& settings, DescriptorBudget* budget = nullptr) const;
  void apply_descriptor_budget();  // on worker 0, before the first accept

  const Identity& identity_;
  std::atomic<std::shared_ptr<const ServerSettings>> settings_;
  std::vector<boost::asio::ip::tcp::endpoint> listen_;
  std::unique_ptr<TunnelObserver> observer_;
  Metrics& metrics_;
  Logger& log_;
  Admission admission_;

  std::vector<std::unique_ptr<boost::asio::io_context>> workers_;
  std::vector<std::unique_ptr<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>>>
      work_;
  std::vector<boost::asio::ip::tcp::acceptor> acceptors_;  // on worker 0
  std::size_t tcp_acceptors_ = 0;  // the first ones; the rest are --websocket-laddr
  std::atomic<std::size_t> next_worker_{0};
  std::atomic<ConnId> next_conn_{1};
  std::atomic<bool> draining_{false};
  std::atomic<bool> stopped_{false};

  std::mutex state_mutex_;
  RelayState relay_state_;
  std::unordered_map<ConnId, std::weak_ptr<Session>> sessions_;
  std::unordered_map<const Tunnel*, std::weak_ptr<Tunnel>> tunnels_;
  std::optional<TimePoint> ttl_armed_at_;
  std::unique_ptr<RelayTimer> ttl_timer_;  // on worker 0
  std::atomic<std::uint64_t> fds_at_start_{0};
  mutable std::mutex budget_mutex_;  // guards budget_
  DescriptorBudget budget_;
  std::vector<std::function<void()>> drain_hooks_;
  std::vector<std::function<void(const DescriptorBudget&)>> budget_hooks_;
};

}  // namespace strelay
