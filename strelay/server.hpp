// The relay daemon's shell: worker threads, acceptors, admission, the descriptor budget, the
// settings in force, and shutdown. The relay proper (pairing table, registries, dispatch,
// TTL) is Relay (strelay/relay.hpp); a connection passes through Server once, in hand_off(),
// and never comes back to it.
//
// Threading (docs/architecture.md): one io_context per worker thread. A connection lives on one
// worker for its whole life. The acceptors run on a thread of their own, admit each new
// socket there and hand it to the next worker, round robin, where its front door starts:
// Asio's per-socket reactor
// state, which it keeps in a pool for the life of the process, is then allocated on the
// accepting thread, in its own malloc arena, and does not pin the pages that a burst of
// sessions leaves behind in the workers' arenas (docs/performance.md, issue 17.3: what a trim
// gives back after 10,000 listeners left). Shared state is small and locked briefly:
//   relay_        is internally locked (strelay/relay.hpp);
//   admission_    is internally locked (it also grants tunnels their pipe descriptors);
//   budget_mutex_ guards budget_ (the descriptor budget, set on worker 0 when run() starts);
//   settings_     is an atomic snapshot; metrics_ is relaxed atomics.
// Every deadline the relay keeps runs on the server's Clock (strelay/clock.hpp), which tests
// move through clock().
//
// Shutdown has one path: shutdown() closes the acceptors and asks every session to close with
// Close{shutdown} at once; running tunnels go on until they end, the drain deadline passes or
// shutdown() is called again; the rest are then stopped, and the workers. run() returns when
// the workers have stopped.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/keys.hpp"
#include "common/log.hpp"
#include "strelay/activation.hpp"
#include "strelay/admission_client.hpp"
#include "strelay/limits.hpp"
#include "strelay/metrics.hpp"
#include "strelay/relay.hpp"
#include "strelay/settings.hpp"

namespace strelay {

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
  // Socket activation (strelay/activation.hpp): serves on these listening sockets instead of
  // binding settings.listen and settings.websocket_listen. Takes ownership. Call before run().
  void adopt(const std::vector<ActivatedSocket>& sockets);
  // The bound addresses (with the real port when 0 was asked for).
  std::vector<boost::asio::ip::tcp::endpoint> local_endpoints() const;
  // An executor for helpers that should share worker 0 (the HTTP endpoint, signals).
  boost::asio::any_io_executor control_executor();

  // Runs the workers on their threads and blocks until shutdown has completed.
  void run();
  // Starts the drain; thread-safe. A second call ends the drain early: the tunnels still
  // running are stopped now (a second SIGTERM).
  void shutdown();
  // The relay's clock. Tests move it (Clock::advance); timers due by then fire at once.
  Clock& clock() { return clock_; }
  // The descriptor budget in force (all zero when settings.descriptors.nofile is 0), and the
  // descriptors the process had open when run() started.
  DescriptorBudget descriptor_budget() const;
  std::uint64_t descriptors_at_start() const { return fds_at_start_.load(); }
  // Runs `hook` on worker 0 when the drain starts (e.g. to stop the HTTP endpoint). Before run().
  void on_drain(std::function<void()> hook) { drain_hooks_.push_back(std::move(hook)); }
  // Runs `hook` on worker 0 once run() has applied the descriptor budget (e.g. to show the
  // connection cap in force on the status page). Before run(); not called without a budget.
  void on_budget(std::function<void(const DescriptorBudget&)> hook) {
    budget_hooks_.push_back(std::move(hook));
  }
  // SIGHUP: new limits and allowlist (nullopt: a public relay). Thread-safe.
  // The listen addresses and thread count of `settings` are ignored (they need a restart).
  void reload(const ServerSettings& settings, std::optional<Allowlist> allowlist);
  void set_allowlist(std::optional<Allowlist> allowlist);

  // For the daemon's helpers (HTTP endpoint, housekeeping, signals).
  std::shared_ptr<const ServerSettings> settings() const { return settings_.load(); }
  Metrics& metrics() { return metrics_; }
  Logger& log() { return log_; }
  bool draining() const { return draining_.load(std::memory_order_acquire); }
  // The most connections open at once since the last call; the count then starts again from
  // those open now. The trim policy (strelay/daemon.cpp) samples every 10 s and would miss a
  // burst that came and went between two samples (issue 17.3).
  std::int64_t take_connection_peak() {
    return connection_peak_.exchange(metrics_.connections.get(), std::memory_order_relaxed);
  }
  // The relay's tables, for tests that check nothing is left behind.
  const Relay& relay() const { return *relay_; }

  // For the front door (strelay/front), on the connection's worker. Per-source admission for
  // `source` (the TCP peer, or the client a trusted proxy names): nullopt when refused, which
  // is counted and logged here.
  std::optional<Admission::Admitted> admit(const boost::asio::ip::address& source);
  // The connection becomes a Session: `socket` is the TCP connection or a WebSocket bridge's
  // end, `client` the source its logs name. Returns its connection id.
  ConnId start_session(boost::asio::ip::tcp::socket socket,
                       const boost::asio::ip::tcp::endpoint& client, ConnectionHold hold);

 private:
  boost::asio::awaitable<void> accept_loop(boost::asio::ip::tcp::acceptor& acceptor,
                                           bool websocket_only);
  // The one place an accepted socket enters the relay, on the accepting thread: admission,
  // then the front door (strelay/front) is started on its worker; it tells the carrier apart
  // and calls start_session().
  void hand_off(boost::asio::ip::tcp::socket socket, const boost::asio::ip::tcp::endpoint& remote,
                bool websocket_only);
  boost::asio::awaitable<void> drain();
  // Until only handshaking connections are left, `deadline` passes, or (cuttable) the drain is
  // cut short by a second shutdown().
  boost::asio::awaitable<void> wait_connections_gone(TimePoint deadline, bool cuttable);
  // The admission limits of `settings` with the descriptor budget applied (fds_at_start_).
  AdmissionLimits budgeted(const ServerSettings& settings,
                           DescriptorBudget* budget = nullptr) const;
  void apply_descriptor_budget();  // on worker 0, before the first accept
  // The relay's options from `settings`, with the tunnels pointed at bandwidth_ (whose limits
  // this sets).
  Relay::Options relay_options(const ServerSettings& settings);

  const Identity& identity_;
  Clock clock_;  // before the workers: their timers are on it
  std::atomic<std::shared_ptr<const ServerSettings>> settings_;
  std::vector<boost::asio::ip::tcp::endpoint> listen_;
  std::unique_ptr<TunnelObserver> observer_;
  Metrics& metrics_;
  Logger& log_;
  Admission admission_;
  std::unique_ptr<AdmissionHook> hook_;  // --admission-url; null without it

  std::vector<std::unique_ptr<boost::asio::io_context>> workers_;
  std::vector<
      std::unique_ptr<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>>>
      work_;
  // The accepting thread's loop: the acceptors and their accept loops (hand_off runs here).
  std::unique_ptr<boost::asio::io_context> accept_context_ =
      std::make_unique<boost::asio::io_context>(1);
  std::unique_ptr<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>>
      accept_work_;
  std::vector<boost::asio::ip::tcp::acceptor> acceptors_;  // on accept_context_
  std::size_t tcp_acceptors_ = 0;  // the first ones; the rest are --websocket-laddr
  std::atomic<std::size_t> next_worker_{0};
  std::atomic<bool> draining_{false};
  std::atomic<std::int64_t> connection_peak_{0};  // see take_connection_peak()
  std::atomic<bool> drain_cut_{false};            // a second shutdown(): stop the tunnels now
  Bandwidth bandwidth_;           // the tunnels' rate limits; before the relay (its tunnels use it)
  std::unique_ptr<Relay> relay_;  // its TTL loop runs on worker 0; outlives the workers
  std::atomic<std::uint64_t> fds_at_start_{0};
  mutable std::mutex budget_mutex_;  // guards budget_
  DescriptorBudget budget_;
  std::vector<std::function<void()>> drain_hooks_;
  std::vector<std::function<void(const DescriptorBudget&)>> budget_hooks_;
};

}  // namespace strelay
