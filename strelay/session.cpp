#include "common/coro.hpp"
#include "strelay/session.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "strelay/rendezvous.hpp"
#include "strelay/server.hpp"

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

}  // namespace

Session::Session(Server& server, tcp::socket socket, ConnectionHold hold)
    : server_(server),
      id_(server.next_conn_id()),
      socket_(std::move(socket)),
      hold_(std::move(hold)),
      wake_(socket_.get_executor()),
      reader_done_(socket_.get_executor()) {}

void Session::start(std::shared_ptr<Session> session) {
  auto executor = session->socket_.get_executor();
  asio::co_spawn(executor, session->run(), [session](std::exception_ptr error) {
    if (!error) return;
    // A bug, not a client's doing: log it once for this session and let the rest go on.
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      session->server_.log().error("session_failed", session->tags(), {{"what", e.what()}});
    }
    session->server_.metrics().closes_total.inc(CloseReason::internal);
  });
}

// Items enter the inbox in the order callers make them (the server calls this under its
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

void Session::take_inbox() {
  std::lock_guard lock(inbox_mutex_);
  for (auto& item : inbox_) queue_.push_back(std::move(item));
  inbox_.clear();
}

Deadline Session::write_deadline() const {
  return Clock::now() + server_.settings()->write_stall;
}

LogTags Session::tags() const { return LogTags{id_, peer_}; }

asio::awaitable<void> Session::run() {
  auto self = shared_from_this();
  const bool authenticated = co_await handshake();
  hold_->admitted.handshake_done();
  if (!authenticated) co_return;

  auto request = try_decode_node_message(first_request_);
  first_request_ = {};
  if (!request) {
    server_.log().info("bad_first_request", tags(), {{"error", request.error()}});
    co_await send_close(CloseReason::protocol_error);
    co_return;
  }
  if (std::holds_alternative<Listen>(*request)) {
    role_ = Role::listener;
    const auto settings = server_.settings();
    keepalive_.emplace(Clock::now(), settings->keepalive, settings->dead_peer);
  } else if (std::holds_alternative<Connect>(*request)) {
    role_ = Role::connector;
  } else if (std::holds_alternative<Accept>(*request)) {
    role_ = Role::acceptor;
  } else {
    co_await send_close(CloseReason::protocol_error);  // a RejectConnection needs a listener
    co_return;
  }

  auto registration = server_.enroll(id_, self);
  if (server_.draining()) {
    co_await send_close(CloseReason::shutdown);
    co_return;
  }
  server_.submit(id_, *peer_, *request);
  // An acceptor's node sends nothing until its outcome, and the outcome is immediate.
  if (role_ != Role::acceptor) {
    reader_running_ = true;
    asio::co_spawn(wake_.get_executor(), reader(), asio::detached);
  }
  co_await writer();
  co_await stop_reader();
  if (channel_) channel_->close();
  server_.disconnect(id_);
}

asio::awaitable<bool> Session::handshake() {
  using namespace asio::experimental::awaitable_operators;
  const auto deadline = hold_->deadline.value_or(Clock::now() + server_.settings()->handshake_timeout);
  GaugeHold pending(server_.metrics().pending_handshakes);
  std::optional<Channel> channel;
  // The absolute deadline is kept twice: by the handshake's own waits (real steady time) and
  // by this watchdog on the relay's clock, which tests move (strelay/clock.hpp). In production
  // both fire at the same instant.
  RelayTimer watchdog(socket_.get_executor(), deadline);
  AcceptStep step{};
  auto raced = co_await (accept_handshake(socket_, server_.identity(), deadline, channel, first_request_, &step) ||
                         watchdog.async_wait(await_tuple));
  const std::error_code ec =
      raced.index() == 0 ? std::get<0>(raced) : std::error_code(make_error_code(errc::handshake_timeout));
  if (ec) {
    // Before authentication a failure closes without a word (docs/protocol.md, section 2).
    server_.metrics().handshakes_total.inc(outcome_of(ec));
    server_.log().debug("handshake_failed", tags(),
                        {{"stage", handshake_stage(ec, step)}, {"step", to_string(step)}, {"error", ec}});
    boost::system::error_code ignored;
    socket_.close(ignored);
    co_return false;
  }
  server_.metrics().handshakes_total.inc(HandshakeOutcome::ok);
  channel_ = std::move(channel);
  peer_ = channel_->peer();
  co_return true;
}

// The only sender. It drains the queue of decisions, answers pings, keeps a listener alive,
// and ends the session when a close was sent, the reader gave up, or the socket went to a
// tunnel.
asio::awaitable<void> Session::writer() {
  for (;;) {
    take_inbox();
    while (!queue_.empty() && !closing_) {
      auto item = std::move(queue_.front());
      queue_.erase(queue_.begin());
      if (auto* message = std::get_if<RelayMessage>(&item)) {
        if (!co_await send_message(*message)) closing_ = true;
      } else if (auto* reason = std::get_if<CloseReason>(&item)) {
        co_await send_close(*reason);
      } else {
        co_await join_tunnel(std::get<std::shared_ptr<Rendezvous>>(std::move(item)));
        closing_ = true;
      }
    }
    if (closing_) co_return;
    if (reader_failed_) {
      // The peer closed, vanished or misbehaved; tell it why only in the last case.
      if (reader_reason_ == CloseReason::protocol_error || reader_reason_ == CloseReason::timeout) {
        co_await send_close(reader_reason_);
      } else {
        server_.metrics().closes_total.inc(reader_reason_);
      }
      co_return;
    }
    for (const auto& token : std::exchange(pongs_due_, {})) {
      if (co_await channel_->send(FrameKind::pong, token, write_deadline())) co_return;
    }
    if (keepalive_) {
      const auto now = Clock::now();
      const auto action = keepalive_->poll(now);
      if (action == Keepalive::Action::peer_dead) {
        co_await send_close(CloseReason::dead_peer);
        co_return;
      }
      if (action == Keepalive::Action::send_ping) {
        const auto token = keepalive_->ping_sent(now);
        if (co_await channel_->send(FrameKind::ping, token, write_deadline())) co_return;
      }
    }
    wake_.expires_at(keepalive_ ? keepalive_->next_wakeup() : Clock::time_point::max());
    {
      // Something may have arrived while this loop ran; then do not sleep.
      std::lock_guard lock(inbox_mutex_);
      if (!inbox_.empty()) continue;
    }
    co_await wake_.async_wait(await_tuple);
  }
}

// The only receiver. Between frames it waits for readability without reading, for two
// reasons. A pending connector's node must stay silent: pairing cancels that wait and no
// tunnel byte is ever taken. And an idle listener then holds this one coroutine frame, not
// the chain under Channel::receive (docs/performance.md, "Idle memory").
asio::awaitable<void> Session::reader() {
  auto self = shared_from_this();
  Message message;
  while (!stopping_reader_) {
    Deadline deadline = Clock::time_point::max();
    if (!channel_->mid_frame()) {
      channel_->release_idle_memory();
      auto [ec] = co_await channel_->socket().async_wait(tcp::socket::wait_read, await_tuple);
      if (stopping_reader_) break;
      if (ec) {
        reader_failed_ = true;
        reader_reason_ = CloseReason::aborted;
        break;
      }
      if (role_ == Role::connector) deadline = Clock::now() + frame_deadline;
    }
    const auto ec = co_await channel_->receive(message, deadline);
    if (stopping_reader_ && role_ == Role::connector) {
      reader_failed_ = true;  // a frame from a pending connector: it gave up, or broke the rules
      reader_reason_ = CloseReason::protocol_error;
      break;
    }
    if (stopping_reader_) break;
    if (ec) {
      reader_failed_ = true;
      reader_reason_ = ec == errc::channel_closed ? message.close_reason
                       : ec == errc::aborted      ? CloseReason::aborted
                       : ec == errc::timeout      ? CloseReason::timeout
                                                  : CloseReason::protocol_error;
      server_.log().debug("peer_ended", tags(), {{"reason", metric_label(reader_reason_)}});
      break;
    }
    if (!co_await handle_frame(message)) {
      reader_failed_ = true;
      reader_reason_ = CloseReason::protocol_error;
      break;
    }
  }
  reader_running_ = false;
  reader_done_.cancel();
  wake();
}

asio::awaitable<bool> Session::handle_frame(const Message& message) {
  if (keepalive_) keepalive_->on_frame_received(Clock::now());
  switch (message.kind) {
    case FrameKind::ping: {
      PingToken token{};
      std::copy(message.body.begin(), message.body.end(), token.begin());
      // A peer that pings without reading the pongs would grow this queue until the write-stall
      // timeout; past a bound far above the keepalive policy's one ping in flight, it is refused.
      // Its writer is blocked on the pongs, so no close frame could reach it: count the close and
      // drop the socket at once (closing_ keeps the writer from counting it again).
      if (pongs_due_.size() >= max_pongs_due) {
        server_.metrics().closes_total.inc(CloseReason::protocol_error);
        closing_ = true;
        channel_->close();
        co_return false;
      }
      pongs_due_.push_back(token);
      wake();
      co_return true;
    }
    case FrameKind::pong: {
      PingToken token{};
      std::copy(message.body.begin(), message.body.end(), token.begin());
      if (keepalive_) keepalive_->pong_received(token, Clock::now());
      co_return true;
    }
    case FrameKind::control: {
      // Only a listener may speak after its first request (RejectConnection); the pairing
      // table answers anything else with Close{protocol_error}.
      if (role_ != Role::listener) co_return false;
      auto request = try_decode_node_message(message.body);
      if (!request) co_return false;
      server_.submit(id_, *peer_, *request);
      co_return true;
    }
    default:
      co_return false;  // data before pairing is never forwarded
  }
}

asio::awaitable<bool> Session::send_message(const RelayMessage& message) {
  const auto bytes = encode(message);
  const auto ec = co_await channel_->send(FrameKind::control, bytes, write_deadline());
  if (ec) {
    server_.log().debug("send_failed", tags(), {{"error", ec}});
    server_.metrics().closes_total.inc(CloseReason::aborted);
  }
  co_return !ec;
}

asio::awaitable<void> Session::send_close(CloseReason reason) {
  closing_ = true;
  if (!channel_) co_return;
  server_.metrics().closes_total.inc(reason);
  co_await channel_->send_close(reason, {}, write_deadline());
  channel_->close();
}

asio::awaitable<void> Session::join_tunnel(std::shared_ptr<Rendezvous> rendezvous) {
  co_await stop_reader();
  if (reader_failed_) {
    rendezvous->abandon(id_);
    server_.metrics().closes_total.inc(reader_reason_);
    co_return;
  }
  if (!co_await send_message(Connected{rendezvous->peer_of(id_)})) {
    rendezvous->abandon(id_);
    co_return;
  }
  // From here the socket carries the nodes' own bytes: hand it over whole.
  auto socket = channel_->release_socket();
  channel_.reset();
  const int fd = socket.release();
  auto hold = std::move(*hold_);
  hold_.reset();
  rendezvous->arrive(id_, fd, std::move(hold), wake_.get_executor());
}

asio::awaitable<void> Session::stop_reader() {
  if (!reader_running_) co_return;
  stopping_reader_ = true;
  boost::system::error_code ignored;
  if (channel_) channel_->socket().cancel(ignored);
  while (reader_running_) {
    reader_done_.expires_at(Clock::time_point::max());
    co_await reader_done_.async_wait(await_tuple);
  }
}

}  // namespace strelay
