#include "common/relay_link.hpp"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <string>

#include "common/coro.hpp"
#include "common/errors.hpp"

namespace strelay {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
using namespace asio::experimental::awaitable_operators;

namespace {

// Before msg2 nothing is known about the relay but that it could not be reached in time: a
// TCP error, a silent or closing relay (admission control closes without a word) or a deadline.
std::error_code attempt_error(std::error_code ec) {
  if (ec == errc::relay_identity_mismatch || ec == errc::unsupported_version ||
      ec == errc::handshake_failed || ec == errc::bad_magic || ec == errc::frame_too_large ||
      is_not_a_relay(ec)) {
    return ec;
  }
  return errc::relay_unreachable;
}

}  // namespace

asio::awaitable<std::error_code> open_relay_channel(const RelayTicket& relay, const Identity& self,
                                                    const NodeMessage& request, Deadline deadline,
                                                    std::optional<Channel>& out) {
  auto executor = co_await asio::this_coro::executor;
  asio::steady_timer timer(executor, deadline);
  tcp::resolver resolver(executor);
  auto resolved =
      co_await (resolver.async_resolve(relay.address.host, std::to_string(relay.address.port),
                                       tcp::resolver::numeric_service, await_tuple) ||
                timer.async_wait(await_tuple));
  if (resolved.index() != 0) co_return errc::relay_unreachable;
  auto [resolve_error, endpoints] = std::get<0>(resolved);
  if (resolve_error || endpoints.empty()) co_return errc::relay_unreachable;

  tcp::socket socket(executor);
  timer.expires_at(deadline);
  auto connected = co_await (asio::async_connect(socket, endpoints, await_tuple) ||
                             timer.async_wait(await_tuple));
  if (connected.index() != 0 || std::get<0>(std::get<0>(connected))) {
    co_return errc::relay_unreachable;
  }
  const auto payload = encode(request);
  const auto ec = co_await connect_handshake(socket, self, relay.public_key, HandshakeLayer::hop,
                                             payload, deadline, out);
  if (ec) {
    boost::system::error_code ignored;
    socket.close(ignored);
    co_return attempt_error(ec);
  }
  co_return std::error_code{};
}

asio::awaitable<std::error_code> await_pairing(Channel& channel, Deadline deadline, PublicKey& peer,
                                               bool* early_e2e) {
  for (;;) {
    Message message;
    const auto ec = co_await channel.receive(message, deadline);
    if (ec == errc::channel_closed) {
      co_return to_error_code(message.close_reason, CloseOrigin::relay);
    }
    if (ec) co_return ec;
    // A relay does not ping a pending connector; if it did, we could not answer anyway.
    if (message.kind == FrameKind::ping || message.kind == FrameKind::pong) continue;
    if (message.kind != FrameKind::control) co_return errc::protocol_error;
    const auto decoded = try_decode_relay_message(message.body);
    if (!decoded) co_return errc::protocol_error;
    if (const auto* connected = std::get_if<Connected>(&*decoded)) {
      peer = connected->peer;
      if (early_e2e != nullptr) *early_e2e = connected->early_e2e;
      co_return std::error_code{};
    }
    if (const auto* refused = std::get_if<Refused>(&*decoded)) {
      co_return to_error_code(refused->reason);
    }
    co_return errc::protocol_error;  // ListenOk or IncomingConnection on a pairing connection
  }
}

// ---------------------------------------------------------------- RelayLink

RelayLink::RelayLink(asio::any_io_executor executor, RelayTicket ticket,
                     std::shared_ptr<const Identity> self, LinkOptions options,
                     LinkCallbacks callbacks, Logger& log, Backoff::Random random)
    : executor_(executor),
      ticket_(std::move(ticket)),
      self_(std::move(self)),
      options_(options),
      callbacks_(std::move(callbacks)),
      log_(log),
      backoff_(options.backoff, std::move(random)),
      sleep_(executor) {}

void RelayLink::start() {
  asio::co_spawn(
      executor_, [self = shared_from_this()] { return self->run(); }, rethrow);
}

void RelayLink::stop() {
  stopped_ = true;
  callbacks_ = {};
  if (channel_) channel_->close();
  sleep_.notify();
}

void RelayLink::reconnect_now() {
  if (stopped_) return;
  reconnect_ = true;
  backoff_.reset();
  if (channel_) channel_->close();
  sleep_.notify();
}

asio::awaitable<void> RelayLink::run() {
  auto self = shared_from_this();
  while (!stopped_) {
    reconnect_ = false;
    auto ec = co_await listen_once();
    if (up_) {
      up_ = false;
      backoff_.connection_ended(now() - up_since_);
    }
    if (stopped_) break;
    if (reconnect_) continue;  // reconnect_now(): at once, with a fresh backoff
    auto delay = backoff_.next_delay();
    // Retrying at the backoff's pace would hammer a relay that answers the same each time.
    if (is_permanent_refusal(ec)) delay = std::max(delay, options_.permanent_refusal_retry);
    log_.info("relay_down", tags(),
              {{"relay", ticket_.address.to_string()}, {"error", ec}, {"retry_ms", delay}});
    if (callbacks_.on_down) callbacks_.on_down(ec, delay);
    const auto until = now() + delay;
    while (!stopped_ && !reconnect_ && now() < until) {
      co_await sleep_.wait(timer_deadline(options_.clock, until));
    }
  }
}

// One listener connection, from the TCP connect to its end; returns why it ended.
asio::awaitable<std::error_code> RelayLink::listen_once() {
  const Deadline deadline = Clock::now() + options_.attempt_timeout;
  std::optional<Channel> channel;
  auto ec =
      co_await open_relay_channel(ticket_, *self_, Listen{options_.early_e2e}, deadline, channel);
  if (ec) co_return ec;
  if (stopped_ || reconnect_) {
    channel->close();
    co_return std::make_error_code(std::errc::operation_canceled);
  }
  channel_ = std::move(channel);
  keepalive_.emplace(now(), options_.keepalive_interval, options_.dead_peer_timeout);
  rejects_due_.clear();
  topic_ops_.clear();
  joins_unanswered_ = 0;
  ec = co_await await_listen_ok(deadline);
  if (!ec && !stopped_) {
    up_ = true;
    up_since_ = now();
    log_.info("relay_up", tags(), {{"relay", ticket_.address.to_string()}});
    if (callbacks_.on_up) callbacks_.on_up();
    if (!topics_unsupported_) {
      for (const auto& topic : topics_) topic_ops_.emplace_back(true, topic);
    }
    open_standby();
    ec = co_await serve();
  }
  ++generation_;  // a standby still opening belongs to this listen: it closes itself
  if (standby_) standby_->close();
  standby_.reset();
  channel_->close();
  channel_.reset();
  keepalive_.reset();
  co_return ec;
}

asio::awaitable<std::error_code> RelayLink::await_listen_ok(Deadline deadline) {
  for (;;) {
    Message message;
    const auto ec = co_await channel_->receive(message, deadline);
    if (ec == errc::channel_closed) {
      co_return to_error_code(message.close_reason, CloseOrigin::relay);
    }
    if (ec) co_return attempt_error(ec);
    if (message.kind != FrameKind::control) {
      if (auto error = handle(message)) co_return error;  // a ping's pong goes out once up
      continue;
    }
    const auto decoded = try_decode_relay_message(message.body);
    if (!decoded) co_return errc::protocol_error;
    if (std::holds_alternative<ListenOk>(*decoded)) co_return std::error_code{};
    if (const auto* refused = std::get_if<Refused>(&*decoded)) {
      co_return to_error_code(refused->reason);
    }
    co_return errc::protocol_error;
  }
}

std::optional<Channel> RelayLink::take_standby() {
  auto taken = std::move(standby_);
  standby_.reset();
  return taken;
}

void RelayLink::open_standby() {
  if (!options_.standby || standby_opening_ || standby_ || !up_ || stopped_) return;
  standby_opening_ = true;
  asio::co_spawn(
      executor_, [self = shared_from_this(), g = generation_] { return self->standby_once(g); },
      rethrow);
}

// A failed standby is not retried until the next take or listen: the node falls back to a new
// connection per accept, as without standby, and the listen connection says how the relay is.
asio::awaitable<void> RelayLink::standby_once(std::uint64_t generation) {
  std::optional<Channel> channel;
  const auto ec = co_await open_relay_channel(ticket_, *self_, Standby{},
                                              Clock::now() + options_.attempt_timeout, channel);
  standby_opening_ = false;
  if (ec) {
    log_.debug("standby_failed", tags(), {{"error", ec}});
    co_return;
  }
  if (stopped_ || generation != generation_ || !up_) {
    channel->close();
    open_standby();  // for the listen that replaced ours, if it is up
    co_return;
  }
  standby_ = std::move(channel);
}

void RelayLink::join_topic(const TopicId& topic) {
  if (topics_.insert(topic).second) queue_topic(true, topic);
}

void RelayLink::leave_topic(const TopicId& topic) {
  if (topics_.erase(topic) != 0) queue_topic(false, topic);
}

// While down, nothing is queued: the next ListenOk joins what topics_ holds then.
void RelayLink::queue_topic(bool join, const TopicId& topic) {
  if (!up_ || topics_unsupported_ || stopped_) return;
  topic_ops_.emplace_back(join, topic);
  sleep_.notify();
}

// The listener's life: one coroutine that sends what is due (rejections, topic joins and
// leaves, then what the keepalive says: pongs, a ping, or the relay is dead), then waits for a
// frame, the next keepalive decision or a wake-up (a topic to send), and handles the frame.
// Waiting for readability rather than in receive() lets a wake-up cut the wait with no frame
// half read; a frame once begun is read to its end (or its deadline: a timeout loses nothing).
asio::awaitable<std::error_code> RelayLink::serve() {
  Message message;
  for (;;) {
    if (stopped_ || reconnect_) co_return std::make_error_code(std::errc::operation_canceled);
    auto write_deadline = [this] { return Clock::now() + options_.write_stall; };
    for (const auto& from : std::exchange(rejects_due_, {})) {
      const auto bytes = encode(RejectConnection{from});
      if (auto ec = co_await channel_->send(FrameKind::control, bytes, write_deadline())) {
        co_return ec;
      }
    }
    for (const auto& [join, topic] : std::exchange(topic_ops_, {})) {
      const auto bytes =
          join ? encode(NodeMessage{JoinTopic{topic}}) : encode(NodeMessage{LeaveTopic{topic}});
      if (join) ++joins_unanswered_;
      if (auto ec = co_await channel_->send(FrameKind::control, bytes, write_deadline())) {
        co_return ec;
      }
    }
    for (auto next = keepalive_->take_due(now()); next.due != Keepalive::Due::nothing;
         next = keepalive_->take_due(now())) {
      if (next.due == Keepalive::Due::dead) {
        co_await channel_->send_close(CloseReason::dead_peer, "", write_deadline());
        co_return errc::peer_gone;
      }
      const auto kind = next.due == Keepalive::Due::pong ? FrameKind::pong : FrameKind::ping;
      if (auto ec = co_await channel_->send(kind, next.token, write_deadline())) co_return ec;
    }
    if (!topic_ops_.empty() || !rejects_due_.empty()) continue;  // queued during a send
    const Deadline until = timer_deadline(options_.clock, keepalive_->next_wakeup());
    if (!co_await wait_readable(until)) continue;
    auto ec = co_await channel_->receive(message, until);
    if (ec == errc::timeout && Clock::now() >= until) continue;  // time for a keepalive check
    if (ec == errc::channel_closed) {
      log_.info("relay_closed", tags(), {{"reason", to_string(message.close_reason)}});
      if (message.close_reason == CloseReason::protocol_error && joins_unanswered_ > 0) {
        topics_unsupported_ = true;  // a relay from before topics: listen again without them
        log_.warn("topics_unsupported", tags(), {{"relay", ticket_.address.to_string()}});
        if (callbacks_.on_topics_unsupported) callbacks_.on_topics_unsupported();
      }
      co_return to_error_code(message.close_reason, CloseOrigin::relay);
    }
    if (ec) co_return ec;
    if (auto error = handle(message)) {
      co_await channel_->send_close(CloseReason::protocol_error, "", write_deadline());
      co_return error;
    }
  }
}

asio::awaitable<bool> RelayLink::wait_readable(Deadline until) {
  if (channel_->mid_frame()) co_return true;
  channel_->release_idle_memory();
  auto woken = co_await (channel_->socket().async_wait(tcp::socket::wait_read, await_tuple) ||
                         sleep_.wait(until));
  co_return woken.index() == 0;  // readable, or an error that receive() will report
}

// One frame from the relay: keepalive frames go to the keepalive, control messages to
// handle_control. Errors are protocol errors (the caller says so and ends the connection).
std::error_code RelayLink::handle(const Message& message) {
  const auto at = now();
  keepalive_->on_frame_received(at);
  switch (message.kind) {
    case FrameKind::ping:
      if (!keepalive_->on_ping(message.body, at)) return errc::protocol_error;
      return {};
    case FrameKind::pong:
      if (const auto rtt = keepalive_->on_pong(message.body, at)) {
        rtt_ = *rtt;
        if (callbacks_.on_rtt) callbacks_.on_rtt(*rtt);
      }
      return {};
    case FrameKind::control: return handle_control(message.body);
    default: return errc::protocol_error;
  }
}

// IncomingConnection goes to the node's decision; topic answers and introductions to on_topic.
std::error_code RelayLink::handle_control(std::span<const std::uint8_t> body) {
  const auto decoded = try_decode_relay_message(body);
  if (!decoded) return errc::protocol_error;
  if (const auto* incoming = std::get_if<IncomingConnection>(&*decoded)) {
    log_.debug("incoming", tags(), {{"from", incoming->from}});
    const auto decision = callbacks_.on_incoming
                              ? callbacks_.on_incoming(incoming->from, incoming->e2e_msg1)
                              : IncomingDecision::reject;
    if (decision == IncomingDecision::reject) rejects_due_.push_back(incoming->from);
    return {};
  }
  const bool answer = std::holds_alternative<TopicJoined>(*decoded) ||
                      std::holds_alternative<TopicRefused>(*decoded);
  if (!answer && !std::holds_alternative<Introduction>(*decoded) &&
      !std::holds_alternative<TopicLeft>(*decoded)) {
    return errc::protocol_error;  // ListenOk again, Connected or Refused on a listener
  }
  if (answer && joins_unanswered_ > 0) --joins_unanswered_;
  if (callbacks_.on_topic) callbacks_.on_topic(*decoded);
  return {};
}

}  // namespace strelay
