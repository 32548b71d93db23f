#include "strelay/server.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/coro.hpp"
#include "strelay/config.hpp"
#include "strelay/front.hpp"
#include "strelay/session.hpp"

namespace strelay {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

// /status lists this many of the heaviest sources.
constexpr std::size_t heaviest_sources_shown = 10;
// ... and this many of the busiest open tunnels.
constexpr std::size_t status_tunnels_shown = 20;

// Back-off of the accept loop when the process is out of descriptors: it retries, never spins.
constexpr auto accept_backoff_min = std::chrono::milliseconds(10);
constexpr auto accept_backoff_max = std::chrono::seconds(1);
// How often the drain looks whether every connection has gone.
constexpr auto drain_poll = std::chrono::milliseconds(20);
// After the drain deadline, how long the stopped tunnels get to close their sockets.
constexpr auto drain_stop_grace = std::chrono::seconds(2);

// Counts a tunnel's bytes and its end, and grants its pipes' descriptors from the admission's
// budget.
class MetricsObserver final : public TunnelObserver {
 public:
  MetricsObserver(Metrics& metrics, Admission& admission)
      : metrics_(metrics), admission_(admission) {}
  bool reserve_pipe_fds() override { return admission_.try_reserve_pipe_fds(tunnel_pipe_fds); }
  void release_pipe_fds() override { admission_.release_pipe_fds(tunnel_pipe_fds); }
  void opened(bool spliced) override {
    metrics_.tunnels_total.inc(spliced ? TunnelMode::splice : TunnelMode::copy);
  }
  void forwarded(int direction, std::uint64_t bytes) override {
    metrics_.bytes_relayed_total.inc(
        direction == 0 ? TunnelDirection::to_listener : TunnelDirection::to_connector, bytes);
  }
  void buffered(std::int64_t delta) override { metrics_.tunnel_buffered_bytes.add(delta); }
  void paced(BandwidthScope scope) override { metrics_.bandwidth_waits_total.inc(scope); }
  void ending(CloseReason reason) override {
    metrics_.closes_total.inc(reason);
    if (reason == CloseReason::stalled) metrics_.limit_hits_total.inc(LimitReason::stalled);
  }

 private:
  Metrics& metrics_;
  Admission& admission_;
};

LimitReason limit_reason(AdmissionRefusal refusal) {
  switch (refusal) {
    case AdmissionRefusal::connections_total: return LimitReason::connections_total;
    case AdmissionRefusal::connections_per_source: return LimitReason::connections_per_source;
    case AdmissionRefusal::pending_total: return LimitReason::pending_total;
    case AdmissionRefusal::sources_total: return LimitReason::pending_total;
    case AdmissionRefusal::pending_per_source: return LimitReason::pending_per_source;
    case AdmissionRefusal::rate_per_source: return LimitReason::rate_per_source;
  }
  return LimitReason::pending_total;
}

// Keepalive and a send timeout in the kernel too: a peer that vanished without a FIN or RST
// is found even inside a tunnel, where the relay reads no keepalive frames. Set on the
// listening socket: Linux copies these options (and TCP_NODELAY) into every socket accept()
// returns, so a join pays no system call for them (docs/performance.md, issue 17.3;
// strelay_server_test checks an accepted connection has them).
void tune_listener(tcp::acceptor& acceptor, Clock::duration dead_peer) {
  boost::system::error_code ignored;
  acceptor.set_option(tcp::no_delay(true), ignored);
  acceptor.set_option(asio::socket_base::keep_alive(true), ignored);
  const int fd = acceptor.native_handle();
  const int idle = static_cast<int>(std::max<std::int64_t>(
      1, std::chrono::duration_cast<std::chrono::seconds>(dead_peer).count() / 3));
  const int count = 3;
  const auto user_timeout = static_cast<unsigned>(
      std::chrono::duration_cast<std::chrono::milliseconds>(dead_peer).count());
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &idle, sizeof idle);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
  ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof user_timeout);
}

}  // namespace

Server::Server(const Identity& identity, ServerSettings settings, Metrics& metrics, Logger& log)
    : identity_(identity),
      settings_(std::make_shared<const ServerSettings>(settings)),
      listen_(settings.listen),
      observer_(std::make_unique<MetricsObserver>(metrics, admission_)),
      metrics_(metrics),
      log_(log),
      admission_(settings.admission) {
  if (!settings.admission_hook.url.empty()) {
    hook_ = std::make_unique<AdmissionHook>(settings.admission_hook, clock_, metrics_, log_);
  }
  const unsigned threads =
      settings.threads != 0 ? settings.threads : std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < threads; ++i) {
    workers_.push_back(std::make_unique<asio::io_context>(1));
    work_.push_back(std::make_unique<asio::executor_work_guard<asio::io_context::executor_type>>(
        workers_.back()->get_executor()));
    // A worker's reactor (an epoll, an eventfd, a timerfd) opens with its first I/O object:
    // open it now, so that run() counts its descriptors in the budget.
    asio::steady_timer open_reactor(*workers_.back());
  }
  accept_work_ = std::make_unique<asio::executor_work_guard<asio::io_context::executor_type>>(
      accept_context_->get_executor());
  asio::steady_timer open_reactor(*accept_context_);
  relay_ = std::make_unique<Relay>(relay_options(settings), clock_, metrics_, log_, *observer_,
                                   workers_[0]->get_executor());
  metrics_.heaviest_sources = [this] {
    std::vector<Metrics::SourceLoad> out;
    for (const auto& load : admission_.heaviest_sources(heaviest_sources_shown)) {
      out.push_back({load.prefix, load.connections, load.pending});
    }
    return out;
  };
  metrics_.busiest_tunnels = [this] { return relay_->busiest_tunnels(status_tunnels_shown); };
}

Server::~Server() {
  metrics_.heaviest_sources = nullptr;
  metrics_.busiest_tunnels = nullptr;
  // I/O objects go before their io_contexts; then each io_context destroys what is still
  // queued on it (suspended sessions, tunnels, the TTL loop), while the relay those touch
  // still exists. Stopped first, the relay posts nothing more to the dying workers.
  acceptors_.clear();
  accept_work_.reset();
  accept_context_.reset();  // its accept loops hold executors of the workers
  relay_->stop();
  work_.clear();
  workers_.clear();
  relay_.reset();
}

void Server::bind() {
  auto all = listen_;
  const auto& websocket_listen = settings()->websocket_listen;
  all.insert(all.end(), websocket_listen.begin(), websocket_listen.end());
  tcp_acceptors_ = listen_.size();
  for (const auto& endpoint : all) {
    tcp::acceptor acceptor(*accept_context_);
    boost::system::error_code ec;
    acceptor.open(endpoint.protocol(), ec);
    if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    // Each --laddr is its own socket, so "0.0.0.0:P" and "[::]:P" can both be given.
    if (!ec && endpoint.protocol() == tcp::v6()) acceptor.set_option(asio::ip::v6_only(true), ec);
    if (!ec) acceptor.bind(endpoint, ec);
    if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      throw std::system_error(ec, "cannot listen on " + endpoint.address().to_string() + " port " +
                                      std::to_string(endpoint.port()));
    }
    tune_listener(acceptor, settings()->dead_peer);
    acceptors_.push_back(std::move(acceptor));
  }
  metrics_.listen_sockets.set(static_cast<std::int64_t>(acceptors_.size()));
}

void Server::adopt(const std::vector<ActivatedSocket>& sockets) {
  // Relay ports first, then the WebSocket-only ones, as bind() orders them (accept_loop's flag).
  std::vector<ActivatedSocket> ordered;
  for (const auto& socket : sockets) {
    if (!socket.websocket_only) ordered.push_back(socket);
  }
  tcp_acceptors_ = ordered.size();
  for (const auto& socket : sockets) {
    if (socket.websocket_only) ordered.push_back(socket);
  }
  for (const auto& socket : ordered) {
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    ::getsockname(socket.fd, reinterpret_cast<sockaddr*>(&address), &length);
    const auto protocol = address.ss_family == AF_INET6 ? tcp::v6() : tcp::v4();
    tcp::acceptor acceptor(*accept_context_);
    boost::system::error_code ec;
    acceptor.assign(protocol, socket.fd, ec);
    if (ec) {
      throw std::system_error(
          ec, "socket activation: cannot use descriptor " + std::to_string(socket.fd));
    }
    log_.info("socket_activated", {},
              {{"fd", socket.fd},
               {"name", socket.name},
               {"address", endpoint_to_string(acceptor.local_endpoint(ec))},
               {"websocket_only", socket.websocket_only}});
    tune_listener(acceptor, settings()->dead_peer);
    acceptors_.push_back(std::move(acceptor));
  }
  metrics_.listen_sockets.set(static_cast<std::int64_t>(acceptors_.size()));
}

std::vector<tcp::endpoint> Server::local_endpoints() const {
  std::vector<tcp::endpoint> out;
  for (const auto& acceptor : acceptors_) {
    boost::system::error_code ec;
    out.push_back(acceptor.local_endpoint(ec));
  }
  return out;
}

asio::any_io_executor Server::control_executor() {
  return workers_[0]->get_executor();
}

void Server::run() {
  // Queued before the accept loops: the budget is in force before the first accept, and after
  // the handlers main queued (the signal set's pipe, the HTTP listener) have opened theirs.
  // The accept loops start once the budget is applied: it is in force before the first accept.
  asio::post(*workers_[0], [this] {
    apply_descriptor_budget();
    for (std::size_t i = 0; i < acceptors_.size(); ++i) {
      asio::co_spawn(*accept_context_, accept_loop(acceptors_[i], i >= tcp_acceptors_),
                     asio::detached);
    }
  });
  relay_->start();
  std::vector<std::thread> threads;
  threads.emplace_back([this] { accept_context_->run(); });
  for (std::size_t i = 1; i < workers_.size(); ++i) {
    threads.emplace_back([this, i] { workers_[i]->run(); });
  }
  workers_[0]->run();
  for (auto& thread : threads) thread.join();
}

AdmissionLimits Server::budgeted(const ServerSettings& settings, DescriptorBudget* budget) const {
  AdmissionLimits limits = settings.admission;
  const auto& d = settings.descriptors;
  if (d.nofile == 0) return limits;
  const auto plan =
      plan_descriptors(d.nofile, fds_at_start_.load(), d.http_connections, d.connections_flag);
  limits.connections_total = plan.connections;
  limits.pipe_fds_total = plan.pipe_fds;
  if (budget != nullptr) *budget = plan;
  return limits;
}

void Server::apply_descriptor_budget() {
  const auto current = settings();
  if (current->descriptors.nofile == 0) return;
  // Unreadable /proc: assume every descriptor below the lowest free one is open, plus a margin.
  fds_at_start_.store(count_open_descriptors().value_or(64));
  DescriptorBudget plan;
  admission_.set_limits(budgeted(*current, &plan));
  {
    std::lock_guard lock(budget_mutex_);
    budget_ = plan;
  }
  log_.info("descriptor_budget", {},
            {{"nofile", current->descriptors.nofile},
             {"open_at_start", fds_at_start_.load()},
             {"http_connections", current->descriptors.http_connections},
             {"max_connections", plan.connections},
             {"pipe_fds", plan.pipe_fds}});
  for (auto& hook : budget_hooks_) hook(plan);
}

DescriptorBudget Server::descriptor_budget() const {
  std::lock_guard lock(budget_mutex_);
  return budget_;
}

asio::awaitable<void> Server::accept_loop(tcp::acceptor& acceptor, bool websocket_only) {
  Clock::duration backoff{};
  asio::steady_timer pause(acceptor.get_executor());
  while (!draining()) {
    auto& worker =
        *workers_[next_worker_.fetch_add(1, std::memory_order_relaxed) % workers_.size()];
    tcp::endpoint peer;  // from accept() itself: no getpeername() per connection
    auto [ec, socket] = co_await acceptor.async_accept(asio::any_io_executor(worker.get_executor()),
                                                       peer, await_tuple);
    if (ec == asio::error::operation_aborted || draining()) break;
    if (ec) {
      const bool out_of_fds = ec == asio::error::no_descriptors || ec.value() == ENFILE;
      metrics_.accept_errors_total.inc(ec == asio::error::no_descriptors ? AcceptError::emfile
                                       : ec.value() == ENFILE            ? AcceptError::enfile
                                                                         : AcceptError::other);
      log_.warn("accept_failed", {}, {{"error", std::error_code(ec)}});
      if (out_of_fds) {
        backoff = std::clamp<Clock::duration>(backoff * 2, accept_backoff_min, accept_backoff_max);
        pause.expires_after(backoff);
        co_await pause.async_wait(await_tuple);
      }
      continue;
    }
    backoff = {};
    metrics_.accepts_total.inc();
    hand_off(std::move(socket), peer, websocket_only);
  }
}

void Server::hand_off(tcp::socket socket, const tcp::endpoint& remote, bool websocket_only) {
  auto current = settings();
  // A trusted proxy's connection is admitted once the client it names is known; everyone
  // else's now. The carrier is told apart in the front door (strelay/front), which hands the
  // connection (or its WebSocket bridge's socket) to start_session().
  std::optional<Admission::Admitted> admitted;
  if (!current->carrier.trusted_proxies.contains(remote.address())) {
    admitted = admit(remote.address());
    if (!admitted) return;
  }
  // The handshake deadline runs from here, shorter under pressure (Admission::handshake_deadline).
  const auto timeout = admitted ? admitted->handshake_deadline(current->handshake_timeout)
                                : current->handshake_timeout;
  // Admission is decided here, at accept, so refused sockets close at once and descriptors do
  // not run out; the rest (the front door, the session) is allocated on the worker, so that
  // this thread's arena keeps little besides Asio's reactor state (see server.hpp).
  FrontEntry entry{std::move(socket),      remote,
                   std::move(admitted),    GaugeHold(metrics_.connections),
                   clock_.now() + timeout, websocket_only};
  auto executor = entry.socket.get_executor();
  asio::post(executor,
             [this, entry = std::move(entry)]() mutable { start_front(*this, std::move(entry)); });
  const auto open = metrics_.connections.get();
  auto peak = connection_peak_.load(std::memory_order_relaxed);
  while (open > peak &&
         !connection_peak_.compare_exchange_weak(peak, open, std::memory_order_relaxed)) {
  }
}

std::optional<Admission::Admitted> Server::admit(const asio::ip::address& client) {
  const auto source = Source::from_address(client, admission_.limits().prefixes);
  const auto pending_before = admission_.pending_evictions();
  const auto established_before = admission_.connection_evictions();
  auto admitted = admission_.try_admit(source, clock_.now());
  if (auto* refusal = std::get_if<AdmissionRefusal>(&admitted)) {
    // Before a handshake nothing can be said with authority: count, log (rate-limited), close.
    metrics_.limit_hits_total.inc(limit_reason(*refusal));
    metrics_.handshakes_total.inc(HandshakeOutcome::refused);
    log_.info("admission_refused", {},
              {{"reason", to_string(*refusal)}, {"source", source.site().to_string()}});
    return std::nullopt;
  }
  // Fair share made room (limits.hpp): counted here; the evicted connections' sessions close them.
  const auto pending = admission_.pending_evictions() - pending_before;
  const auto established = admission_.connection_evictions() - established_before;
  if (pending != 0) metrics_.limit_hits_total.inc(LimitReason::pending_evicted, pending);
  if (established != 0) metrics_.limit_hits_total.inc(LimitReason::connection_evicted, established);
  if (pending + established != 0) {
    log_.info("fair_share_eviction", {},
              {{"newcomer", source.site().to_string()},
               {"pending", pending},
               {"established", established}});
  }
  return std::get<Admission::Admitted>(std::move(admitted));
}

ConnId Server::start_session(tcp::socket socket, const tcp::endpoint& client, ConnectionHold hold) {
  const ConnId id = relay_->next_conn_id();
  Session::start(std::make_shared<Session>(
      SessionContext{settings(), identity_, clock_, metrics_, log_, hook_.get()}, *relay_, id,
      std::move(socket), client, std::move(hold)));
  return id;
}

void Server::set_allowlist(std::optional<Allowlist> allowlist) {
  relay_->set_allowlist(std::move(allowlist));
}

void Server::reload(const ServerSettings& settings, std::optional<Allowlist> allowlist) {
  auto next = std::make_shared<ServerSettings>(settings);
  const auto current = settings_.load();
  next->listen = current->listen;
  next->websocket_listen = current->websocket_listen;
  next->threads = current->threads;
  settings_.store(std::move(next));
  DescriptorBudget plan;
  admission_.set_limits(budgeted(*settings_.load(), &plan));
  if (settings.descriptors.nofile != 0) {
    std::lock_guard lock(budget_mutex_);
    budget_ = plan;
  }
  relay_->set_options(relay_options(settings));
  set_allowlist(std::move(allowlist));
  // New connections inherit the reloaded --dead-peer-timeout from their listening socket.
  asio::post(*accept_context_, [this, dead_peer = settings.dead_peer] {
    for (auto& acceptor : acceptors_) tune_listener(acceptor, dead_peer);
  });
}

Relay::Options Server::relay_options(const ServerSettings& settings) {
  bandwidth_.set_limits(settings.bandwidth, clock_.now());
  Relay::Options options{settings.pairing, settings.tunnel};
  options.tunnel.bandwidth = &bandwidth_;
  return options;
}

void Server::shutdown() {
  if (draining_.exchange(true, std::memory_order_acq_rel)) {
    // A second SIGTERM: the operator will not wait for the tunnels (issue 20.1).
    if (!drain_cut_.exchange(true, std::memory_order_acq_rel)) {
      log_.info("drain_cut", {}, {{"tunnels", metrics_.tunnels.get()}});
    }
    return;
  }
  relay_->begin_drain();
  asio::co_spawn(*workers_[0], drain(), asio::detached);
}

asio::awaitable<void> Server::wait_connections_gone(TimePoint deadline, bool cuttable) {
  asio::steady_timer poll(*workers_[0]);
  // Connections still in their handshake are owed nothing (they are closed at exit without a
  // word, as any failed handshake is), so they do not hold the drain.
  while (metrics_.connections.get() - metrics_.pending_handshakes.get() > 0 &&
         clock_.now() < deadline && !(cuttable && drain_cut_.load(std::memory_order_acquire))) {
    poll.expires_after(drain_poll);
    co_await poll.async_wait(await_tuple);
  }
}

// The one shutdown path (docs/operations.md, "Draining"): stop accepting; tell every session
// Close{shutdown} at once, so listeners move to their other relays; let the running tunnels
// finish until the drain deadline or a second SIGTERM; then stop the rest and the workers.
asio::awaitable<void> Server::drain() {
  log_.info("draining", {},
            {{"connections", metrics_.connections.get()}, {"tunnels", metrics_.tunnels.get()}});
  for (auto& hook : drain_hooks_) hook();
  // On the accepting thread, which owns them (its accept loops then end).
  asio::post(*accept_context_, [this] {
    for (auto& acceptor : acceptors_) {
      boost::system::error_code ignored;
      acceptor.close(ignored);
    }
  });
  relay_->close_sessions(CloseReason::shutdown);
  co_await wait_connections_gone(clock_.now() + settings()->drain, true);
  const auto tunnels_left = metrics_.tunnels.get();
  if (tunnels_left > 0) {
    relay_->stop_tunnels(CloseReason::shutdown);  // counted in closes_total{reason="shutdown"}
    co_await wait_connections_gone(clock_.now() + drain_stop_grace, false);
  }
  log_.info("drained", {},
            {{"connections_left", metrics_.connections.get()}, {"tunnels_cut", tunnels_left}});
  relay_->stop();
  accept_work_->reset();
  for (auto& guard : work_) guard->reset();
  for (auto& worker : workers_) worker->stop();
}

}  // namespace strelay
