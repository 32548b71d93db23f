#include "strelay/session.hpp"

#include <sys/socket.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <utility>

#include "common/coro.hpp"
#include "strelay/kernel_queues.hpp"
#include "strelay/rendezvous.hpp"

namespace strelay {

namespace asio = boost::asio;

namespace {

HandshakeOutcome outcome_of(std::error_code ec) {
  if (ec == errc::handshake_timeout || ec == errc::timeout) return HandshakeOutcome::timeout;
  if (ec == errc::bad_magic) return HandshakeOutcome::bad_magic;
  if (ec == errc::unsupported_version) return HandshakeOutcome::bad_version;
  return HandshakeOutcome::failed;
}

// Why a handshake failed, for the handshake_failed log line: "deadline", "preamble" (not
// strelay, or another version), "peer_closed" (EOF or reset), or else the message that failed
// its checks ("msg1": a malformed or small-order ephemeral; "msg3": a malformed or unauthentic
// last message, e.g. a node that expects another relay key). Its `step` field says which
// message was under way in every case.
const char* handshake_stage(std::error_code ec, AcceptStep step) {
  if (ec == errc::handshake_timeout || ec == errc::timeout) return "deadline";
  if (ec == errc::bad_magic || ec == errc::unsupported_version) return "preamble";
  if (ec == errc::aborted) return "peer_closed";
  return to_string(step);
}

// A listener's connection carries control frames only and never becomes a tunnel: its kernel
// send queue is bounded (listener_send_queue_bytes), as a tunnel's are. A Unix socket (a
// WebSocket bridge's end) is bounded by its bridge already.
void bound_listener_send_queue(tcp::socket& socket) {
  const int fd = socket.native_handle();
  int domain = 0;
  socklen_t length = sizeof domain;
  if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &length) != 0 || domain == AF_UNIX) return;
  bound_kernel_queue(fd, KernelQueue::send, listener_send_queue_bytes);
}

}  // namespace

Session::Session(SessionContext context, SessionHost& host, ConnId id, tcp::socket socket,
                 tcp::endpoint client, ConnectionHold hold)
    : context_(std::move(context)),
      host_(host),
      id_(id),
      client_(std::move(client)),
      opening_(std::make_unique<Opening>(std::move(socket), context_.clock)),
      hold_(std::move(hold)),
      wake_(opening_->socket.get_executor(), context_.clock),
      keepalive_(Keepalive::answering_only(context_.clock.now())) {}

void Session::start(std::shared_ptr<Session> session) {
  auto executor = session->wake_.get_executor();
  session->hold_->admitted.set_evictor([weak = std::weak_ptr<Session>(session), executor] {
    asio::post(executor, [weak] {
      if (auto self = weak.lock()) self->evict();
    });
  });
  // The handler holds the session until run() has returned (run() catches what it throws);
  // from then on, while it is parked, its pending waits hold it.
  asio::co_spawn(executor, session->run(true), [session](const std::exception_ptr&) {});
}

// Items enter the inbox in the order callers make them (the relay calls this under its
// table lock), and only a wake-up crosses threads: asio::post alone would not keep that
// order, because a post from the session's own worker is queued privately until the current
// handler returns, so a post from another worker could overtake it.
void Session::post(Outbound item) {
  {
    std::lock_guard lock(inbox_mutex_);
    inbox_.push_back(std::move(item));
  }
  asio::post(wake_.get_executor(), [self = shared_from_this()] { self->wake(); });
}

// Moves the inbox's block rather than copying out of it, so that an idle session keeps
// neither vector's block (drive() frees queue_'s when it parks).
void Session::take_inbox() {
  std::lock_guard lock(inbox_mutex_);
  if (queue_.empty()) {
    queue_ = std::exchange(inbox_, {});  // a swap would leave queue_'s old block in the inbox
    return;
  }
  for (auto& item : inbox_) queue_.push_back(std::move(item));
  inbox_ = {};
}

Deadline Session::write_deadline() const {
  return context_.clock.now() + context_.settings->write_stall;
}

LogTags Session::tags() const {
  return LogTags{id_, peer_};
}

void Session::evict() {
  if (evicted_ || !hold_) return;  // gone to a tunnel: never cut
  evicted_ = true;
  if (opening_) {
    opening_->watchdog.cancel();  // ends the handshake as its deadline would
  } else {
    post(CloseReason::overloaded);
  }
}

bool Session::take_control_token() {
  if (!control_bucket_)
    control_bucket_.emplace(context_.settings->control_rate, context_.settings->control_burst);
  if (control_bucket_->try_take(context_.clock.now())) return true;
  context_.metrics.limit_hits_total.inc(LimitReason::control_rate);
  return false;
}

// Exceptions are bugs, not a client's doing: caught here once for the session, logged, and
// counted as its outcome (internal) unless it had one. However serve() or drive() ends,
// unless parked, the relay then forgets this connection (the registration leaves: registry
// and pairing table at once).
asio::awaitable<void> Session::run(bool first) {
  std::string failure;
  try {
    if (first ? co_await serve() : co_await drive()) co_return;  // parked
  } catch (const std::exception& e) {
    failure = e.what();
  }
  if (!failure.empty()) {
    context_.log.error("session_failed", tags(), {{"what", failure}});
    end(CloseReason::internal, {});
    co_await stop_reader();
    if (channel_) channel_->close();
  }
  registration_.reset();
}

asio::awaitable<bool> Session::serve() {
  const bool authenticated = co_await handshake();
  const auto first_request = std::move(opening_->first_request);
  opening_.reset();
  hold_->admitted.handshake_done();
  if (!authenticated) co_return false;  // counted in handshakes_total; closes_total: sessions

  auto request = try_decode_node_message(first_request);
  if (!request) {
    context_.log.info("bad_first_request", tags(), {{"error", request.error()}});
    co_await close(CloseReason::protocol_error, true);
    co_return false;
  }
  if (std::holds_alternative<Listen>(*request)) {
    role_ = Role::listener;
    bound_listener_send_queue(channel_->socket());
    keepalive_.start_timers(context_.clock.now(), context_.settings->keepalive,
                            context_.settings->dead_peer);
  } else if (std::holds_alternative<Connect>(*request)) {
    role_ = Role::connector;
  } else if (std::holds_alternative<Accept>(*request)) {
    role_ = Role::acceptor;
  } else if (std::holds_alternative<Standby>(*request)) {
    role_ = Role::standby;  // parked until its one Accept (docs/protocol.md 4.1)
  } else {
    co_await close(CloseReason::protocol_error, true);  // a RejectConnection needs a listener
    co_return false;
  }

  // Accept needs no question: only the key a Connect named can accept it; nor a standby, which
  // belongs to a Listen the hook admitted.
  if (context_.hook != nullptr && role_ != Role::acceptor && role_ != Role::standby &&
      !co_await admitted_by_hook())
    co_return false;

  registration_ = host_.join(id_, *peer_, shared_from_this());
  if (!registration_.open()) {
    co_await close(CloseReason::shutdown, true);  // draining
    co_return false;
  }
  registration_.submit(*request);
  if (role_ == Role::standby) context_.log.debug("standby_request", tags());
  // An acceptor's node sends nothing until its outcome, and the outcome is immediate.
  if (role_ != Role::acceptor) {
    reader_running_ = true;
    asio::co_spawn(wake_.get_executor(), reader(false), asio::detached);
  }
  co_return co_await drive();
}

// The operator's hook (--admission-url) decides before the relay sees the request: a no is
// Refused{not_allowed}, as the allowlist says it; a hook that failed or is busy under
// --admission-fail closed is Refused{overloaded} (the node retries later, or elsewhere).
asio::awaitable<bool> Session::admitted_by_hook() {
  const auto action = role_ == Role::listener ? HookAction::listen : HookAction::connect;
  const auto decision = co_await context_.hook->ask(*peer_, action, client_.address());
  if (decision.allowed) co_return true;
  const bool denied =
      decision.outcome == HookOutcome::denied || decision.outcome == HookOutcome::cached_denied;
  if (const auto ec = co_await send_message(
          Refused{denied ? RefuseReason::not_allowed : RefuseReason::overloaded})) {
    co_await close(CloseReason::aborted, false, ec);
    co_return false;
  }
  co_await close(denied ? CloseReason::not_allowed : CloseReason::overloaded, true);
  co_return false;
}

asio::awaitable<bool> Session::handshake() {
  using namespace asio::experimental::awaitable_operators;
  // From the accept (kept through a carrier's front door) when known; shorter under pressure
  // (Admission::handshake_deadline), so silent sockets are recycled faster.
  const auto pressured = context_.clock.now() +
                         hold_->admitted.handshake_deadline(context_.settings->handshake_timeout);
  const auto deadline = hold_->deadline ? std::min(*hold_->deadline, pressured) : pressured;
  GaugeHold pending(context_.metrics.pending_handshakes);
  const auto began = std::chrono::steady_clock::now();  // for the histogram: real time
  std::optional<Channel> channel;
  // The absolute deadline is kept once, by this watchdog on the relay's clock (which tests
  // move); the handshake's own waits have none, and the watchdog cancels them, as evict() does.
  auto& opening = *opening_;
  opening.watchdog.expires_at(deadline);
  AcceptStep step{};
  auto raced = co_await (accept_handshake(opening.socket, context_.identity, HandshakeLayer::hop,
                                          Deadline::max(), channel, opening.first_request, &step) ||
                         opening.watchdog.async_wait(await_tuple));
  const std::error_code ec = raced.index() == 0
                                 ? std::get<0>(raced)
                                 : std::error_code(make_error_code(errc::handshake_timeout));
  if (ec) {
    // Before authentication a failure closes without a word (docs/protocol.md, section 2).
    context_.metrics.handshakes_total.inc(outcome_of(ec));
    context_.log.debug("handshake_failed", tags(),
                       {{"stage", evicted_ ? "evicted" : handshake_stage(ec, step)},
                        {"step", to_string(step)},
                        {"source", SourceKey::from_address(client_.address()).to_string()},
                        {"error", ec}});
    boost::system::error_code ignored;
    opening.socket.close(ignored);
    co_return false;
  }
  context_.metrics.handshakes_total.inc(HandshakeOutcome::ok);
  context_.metrics.handshake_duration_seconds.observe(std::chrono::steady_clock::now() - began);
  channel_ = std::move(channel);
  peer_ = channel_->peer();
  co_return true;
}

// The only sender. It drains the queue of decisions, answers pings, keeps a listener alive,
// and ends the session (close()) when a close is due, a send failed, or the reader gave up;
// or hands the socket to a tunnel. With nothing to do it parks (true) and returns: the
// callback of park() runs it again.
asio::awaitable<bool> Session::drive() {
  for (;;) {
    take_inbox();
    while (!queue_.empty() && !dropped_) {
      auto item = std::move(queue_.front());
      queue_.erase(queue_.begin());
      if (auto* message = std::get_if<RelayMessage>(&item)) {
        if (const auto ec = co_await send_message(*message)) {
          co_await close(send_failure(), false, ec);
          co_return co_await finish();
        }
      } else if (auto* reason = std::get_if<CloseReason>(&item)) {
        co_await close(*reason, true);
        co_return co_await finish();
      } else {
        co_await join_tunnel(std::get<std::shared_ptr<Rendezvous>>(std::move(item)));
        co_return co_await finish();
      }
    }
    if (reader_end_) {
      co_await close(reader_end_->reason, reader_end_->tell, reader_end_->error);
      co_return co_await finish();
    }
    if (!co_await send_keepalive()) co_return co_await finish();
    // The reader may have ended while a send was under way (its wake-up found no wait).
    if (reader_end_) continue;
    wake_.expires_at(keepalive_.next_wakeup());
    {
      // Something may have arrived while this loop ran; then do not sleep. A post() after
      // this check wakes the parked wait (its wake-up is queued behind this handler).
      std::lock_guard lock(inbox_mutex_);
      if (!inbox_.empty()) continue;
    }
    queue_ = {};  // an idle session keeps no queue's block
    park();
    co_return true;
  }
}

void Session::park() {
  // Woken (cancelled) or due (keepalive): either way the writer looks again.
  wake_.async_wait([self = shared_from_this()](boost::system::error_code) {
    auto executor = self->wake_.get_executor();
    asio::co_spawn(executor, self->run(false), [self](const std::exception_ptr&) {});
  });
}

asio::awaitable<bool> Session::finish() {
  co_await stop_reader();
  if (channel_) channel_->close();
  co_return false;
}

// Sends what the keepalive asks for: owed pongs, then a ping of the relay's own; or ends the
// session when the node has been silent too long.
asio::awaitable<bool> Session::send_keepalive() {
  for (;;) {
    if (dropped_ || reader_end_) co_return true;  // the writer ends the session
    const auto next = keepalive_.take_due(context_.clock.now());
    if (next.due == Keepalive::Due::nothing) co_return true;
    if (next.due == Keepalive::Due::dead) {
      co_await close(CloseReason::dead_peer, true);
      co_return false;
    }
    const auto kind = next.due == Keepalive::Due::pong ? FrameKind::pong : FrameKind::ping;
    if (const auto ec = co_await channel_->send(kind, next.token, write_deadline())) {
      co_await close(send_failure(), false, ec);
      co_return false;
    }
  }
}

// The only receiver. Between frames it waits for readability without reading, for two
// reasons. A pending connector's node must stay silent: pairing cancels that wait and no
// tunnel byte is ever taken as a frame. And an idle session then holds no coroutine at all:
// the reader returns, leaving only the wait of wait_readable() (see "Idle shape"). `woken`:
// that wait has just found the socket readable.
asio::awaitable<void> Session::reader(bool woken) {
  auto self = shared_from_this();
  Message message;
  while (!stopping_reader_) {
    Deadline deadline = Clock::time_point::max();
    if (!channel_->mid_frame()) {
      // Asio's epoll reactor is edge-triggered and a wait is never tried at once: a wait
      // started while the next frame is already in the kernel (sent with the one just read)
      // would sleep until more bytes arrive, which a node waiting for its answer never sends.
      // And once woken, the reader reads whatever the count says: an end of stream is
      // readable with nothing available, and its edge does not come again.
      boost::system::error_code unknown;
      if (!woken) channel_->release_idle_memory();
      if (!woken && channel_->socket().available(unknown) == 0) {
        wait_readable();
        co_return;
      }
      woken = false;
      if (role_ == Role::connector) deadline = context_.clock.now() + frame_deadline;
    }
    const auto ec = co_await channel_->receive(message, deadline);
    if (stopping_reader_ && role_ == Role::connector) {
      // A frame from a pending connector: it gave up, or broke the rules.
      reader_end_ = ReaderEnd{CloseReason::protocol_error, true, ec};
      break;
    }
    if (stopping_reader_) break;
    if (ec) {
      const auto reason = ec == errc::channel_closed ? message.close_reason
                          : ec == errc::aborted      ? CloseReason::aborted
                          : ec == errc::timeout      ? CloseReason::timeout
                                                     : CloseReason::protocol_error;
      // The peer closed or vanished; it is told why only when it broke the rules or stalled.
      reader_end_ = ReaderEnd{
          reason, reason == CloseReason::protocol_error || reason == CloseReason::timeout, ec};
      break;
    }
    if (!take_control_token()) {
      // A flood of pings or RejectConnections (issue 14.6): told why, then closed.
      reader_end_ = ReaderEnd{CloseReason::rate_limited, true, {}};
      break;
    }
    if (!co_await handle_frame(message)) {
      if (!reader_end_) reader_end_ = ReaderEnd{CloseReason::protocol_error, true, {}};
      break;
    }
  }
  reader_stopped();
}

void Session::wait_readable() {
  channel_->socket().async_wait(
      tcp::socket::wait_read, [self = shared_from_this()](boost::system::error_code ec) {
        if (self->stopping_reader_) return self->reader_stopped();
        if (ec) {
          self->reader_end_ = ReaderEnd{CloseReason::aborted, false, ec};
          return self->reader_stopped();
        }
        asio::co_spawn(self->wake_.get_executor(), self->reader(true), asio::detached);
      });
}

void Session::reader_stopped() {
  reader_running_ = false;
  wake();
}

asio::awaitable<bool> Session::handle_frame(const Message& message) {
  keepalive_.on_frame_received(context_.clock.now());
  switch (message.kind) {
    case FrameKind::ping: {
      if (!keepalive_.on_ping(message.body, context_.clock.now())) {
        // A node that pings without reading the pongs would grow the queue until the
        // write-stall timeout. Its writer is blocked on the pongs, so no close frame could
        // reach it: cancel that send, and the writer ends the session without a word.
        dropped_ = true;
        reader_end_ = ReaderEnd{CloseReason::protocol_error, false, {}};
        boost::system::error_code ignored;
        channel_->socket().cancel(ignored);
        co_return false;
      }
      wake();
      co_return true;
    }
    case FrameKind::pong: {
      keepalive_.on_pong(message.body, context_.clock.now());
      co_return true;
    }
    case FrameKind::control: {
      // Only a listener may speak after its first request (RejectConnection, JoinTopic,
      // LeaveTopic), and a standby once (Accept); the pairing table answers anything else with
      // Close{protocol_error}.
      if (role_ != Role::listener && role_ != Role::standby) co_return false;
      auto request = try_decode_node_message(message.body);
      if (!request) co_return false;
      if (role_ == Role::standby) {
        if (!std::holds_alternative<Accept>(*request)) co_return false;
        // Now an acceptor: its outcome is immediate, and what follows is the tunnel's, so the
        // reader stops here without reading another byte.
        role_ = Role::acceptor;
        stopping_reader_ = true;
        context_.log.debug("standby_accept", tags());
      }
      registration_.submit(*request);
      co_return true;
    }
    default: co_return false;  // data before pairing is never forwarded
  }
}

asio::awaitable<std::error_code> Session::send_message(const RelayMessage& message) {
  const auto bytes = encode(message);
  co_return co_await channel_->send(FrameKind::control, bytes, write_deadline());
}

void Session::end(CloseReason reason, std::error_code error) {
  if (outcome_) return;  // an exception after the end is not a second outcome
  outcome_ = reason;
  context_.metrics.closes_total.inc(reason);
  context_.log.debug("session_closed", tags(),
                     {{"reason", metric_label(reason)}, {"error", error}});
}

// Counted before the socket closes: a node that sees the close and then reads the metrics
// finds it counted.
asio::awaitable<void> Session::close(CloseReason reason, bool tell, std::error_code error) {
  end(reason, error);
  if (!channel_) co_return;
  if (tell) co_await channel_->send_close(reason, {}, write_deadline());
  channel_->close();
}

asio::awaitable<void> Session::join_tunnel(std::shared_ptr<Rendezvous> rendezvous) {
  co_await stop_reader();
  if (reader_end_) {
    co_await close(reader_end_->reason, false, reader_end_->error);
    rendezvous->abandon(id_);
    co_return;
  }
  // The connector learns whether the acceptor answered its end-to-end msg1 (then the pipe
  // starts with the acceptor's msg2); the acceptor knows, having said so in its Accept.
  const auto& pairing = rendezvous->pairing();
  const bool early = id_ == pairing.connector && pairing.early_e2e;
  if (const auto ec = co_await send_message(Connected{rendezvous->peer_of(id_), early})) {
    co_await close(CloseReason::aborted, false, ec);
    rendezvous->abandon(id_);
    co_return;
  }
  // From here the socket carries the nodes' own bytes: hand it over whole.
  auto socket = channel_->release_socket();
  channel_.reset();
  auto hold = std::move(*hold_);
  hold_.reset();
  hold.admitted.not_evictable();  // a tunnel carries real traffic: fair share never cuts it
  rendezvous->arrive(TunnelEnd{id_, SocketHandle(std::move(socket)), std::move(hold)},
                     wake_.get_executor());
}

asio::awaitable<void> Session::stop_reader() {
  if (!reader_running_) co_return;
  stopping_reader_ = true;
  boost::system::error_code ignored;
  if (channel_) channel_->socket().cancel(ignored);
  // On wake_, which the writer (running this) is not parked on: reader_stopped() wakes it.
  while (reader_running_) {
    wake_.expires_at(Clock::time_point::max());
    co_await wake_.async_wait(await_tuple);
  }
}

}  // namespace strelay
