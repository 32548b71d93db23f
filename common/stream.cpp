#include "common/coro.hpp"
#include "common/stream.hpp"

#include <algorithm>
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstring>
#include <stdexcept>
#include <utility>
#include <vector>

#include "common/errors.hpp"
#include "common/wakeup.hpp"

namespace strelay {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

// A fixed-capacity byte ring: the receive buffer between the reader and read_some().
class ByteRing {
 public:
  explicit ByteRing(std::size_t capacity) : bytes_(capacity) {}
  std::size_t size() const { return size_; }
  std::size_t free() const { return bytes_.size() - size_; }
  bool empty() const { return size_ == 0; }

  void push(std::span<const std::uint8_t> in) {  // in.size() <= free()
    const std::size_t tail = (head_ + size_) % bytes_.size();
    const std::size_t first = std::min(in.size(), bytes_.size() - tail);
    std::memcpy(bytes_.data() + tail, in.data(), first);
    std::memcpy(bytes_.data(), in.data() + first, in.size() - first);
    size_ += in.size();
  }
  std::size_t take(std::span<std::uint8_t> out) {
    const std::size_t n = std::min(out.size(), size_);
    const std::size_t first = std::min(n, bytes_.size() - head_);
    std::memcpy(out.data(), bytes_.data() + head_, first);
    std::memcpy(out.data() + first, bytes_.data(), n - first);
    head_ = (head_ + n) % bytes_.size();
    size_ -= n;
    return n;
  }

 private:
  std::vector<std::uint8_t> bytes_;
  std::size_t head_ = 0;
  std::size_t size_ = 0;
};

// What a peer's close means to this side's reads and writes.
std::error_code error_for_close(CloseReason reason) {
  switch (reason) {
    case CloseReason::protocol_error: return errc::protocol_error;
    case CloseReason::not_allowed: return errc::not_allowed;
    case CloseReason::timeout: return errc::timeout;
    case CloseReason::dead_peer:
    case CloseReason::peer_gone: return errc::peer_gone;
    case CloseReason::aborted: return errc::aborted;
    default: return errc::channel_closed;
  }
}

// What this side tells the peer when `failure` ends the stream.
CloseReason close_reason_for(std::error_code failure) {
  if (failure == errc::peer_gone) return CloseReason::dead_peer;
  if (failure == errc::timeout) return CloseReason::timeout;
  return CloseReason::protocol_error;
}

}  // namespace

// Ownership: everything runs on the socket's executor. The reader coroutine owns the channel's
// receive side and pushes into rx; read_some() takes from rx. The writer coroutine owns the
// channel's send side; write()/shutdown_send()/close() only post requests (tx, eof_requested,
// close_request) and wait. The flags below the "shared" line are read by everyone and written
// where noted.
struct Stream::Impl : std::enable_shared_from_this<Stream::Impl> {
  Impl(Channel c, StreamOptions o, StreamHooks h)
      : channel(std::move(c)),
        options(o),
        hooks(std::move(h)),
        keepalive(Clock::now(), options.keepalive_interval, options.dead_peer_timeout),
        peer(channel.peer()),
        rx(std::max(options.receive_buffer_bytes, max_frame_body_bytes)),
        reader_wake(channel.socket().get_executor()),
        writer_wake(channel.socket().get_executor()),
        app_read_wake(channel.socket().get_executor()),
        app_write_wake(channel.socket().get_executor()),
        app_close_wake(channel.socket().get_executor()),
        reader_done_wake(channel.socket().get_executor()) {}

  asio::awaitable<void> reader();
  asio::awaitable<void> writer();
  asio::awaitable<bool> writer_step();
  asio::awaitable<void> finish();
  asio::awaitable<void> linger(Deadline until);
  bool handle_frame(const Message& message);
  void receive_failed(std::error_code ec, const Message& message);
  void fail(std::error_code error);
  void terminate();
  std::error_code send_state_error() const;
  std::error_code outcome() const;
  void notify_app() {
    app_read_wake.notify();
    app_write_wake.notify();
    app_close_wake.notify();
  }

  Channel channel;
  StreamOptions options;
  StreamHooks hooks;
  Keepalive keepalive;
  PublicKey peer;

  // Receive side (reader writes, read_some() takes).
  ByteRing rx;
  bool rx_eof = false;       // the peer's end of data arrived
  std::error_code rx_error;  // the peer closed before its end of data
  bool reader_running = false;
  bool reader_paused = false;  // waiting for room in rx
  bool discarding = false;     // closing: received data is dropped, never waited on

  // Send side (the app sets requests, the writer carries them out).
  std::span<const std::uint8_t> tx;  // the rest of the write in progress
  bool tx_busy = false;
  std::uint64_t tx_generation = 0;  // which write() tx belongs to
  bool eof_requested = false;
  bool eof_sent = false;
  bool ping_requested = true;  // one ping at the start gives an early RTT
  std::optional<PingToken> pong_due;
  std::optional<std::pair<CloseReason, std::string>> close_request;
  bool writer_running = false;

  // Shared.
  bool peer_closed = false;
  CloseReason peer_reason = CloseReason::normal;
  std::error_code failure;  // the first error that ended the stream
  bool send_dead = false;   // a send failed, or the socket broke: nothing more can be written
  bool terminated = false;  // the socket is closed
  StreamStats stats;

  // One waiter each: the reader (room in rx), the writer (requests), read_some(), write() or
  // shutdown_send(), close(), and the writer's linger (the reader's end).
  Wakeup reader_wake, writer_wake, app_read_wake, app_write_wake, app_close_wake;
  Wakeup reader_done_wake;
};

// ---------------------------------------------------------------- reader

asio::awaitable<void> Stream::Impl::reader() {
  auto self = shared_from_this();
  Message message;
  while (!terminated) {
    if (rx.free() < max_frame_body_bytes && !discarding) {
      reader_paused = true;
      writer_wake.notify();  // the writer counts a paused reader as a live peer
      co_await reader_wake.wait();
      reader_paused = false;
      continue;
    }
    const auto ec = co_await channel.receive(message, Deadline::max());
    if (terminated) break;
    if (ec) {
      receive_failed(ec, message);
      break;
    }
    keepalive.on_frame_received(Clock::now());
    if (!handle_frame(message)) break;
  }
  reader_running = false;
  writer_wake.notify();
  reader_done_wake.notify();
  notify_app();
}

bool Stream::Impl::handle_frame(const Message& message) {
  switch (message.kind) {
    case FrameKind::data:
      if (rx_eof) {  // data after the end of data
        fail(errc::protocol_error);
        return false;
      }
      if (message.body.empty()) {
        rx_eof = true;
      } else if (!discarding) {
        rx.push(message.body);
      }
      app_read_wake.notify();
      return true;
    case FrameKind::ping:
      pong_due.emplace();
      std::copy(message.body.begin(), message.body.end(), pong_due->begin());
      writer_wake.notify();
      return true;
    case FrameKind::pong: {
      PingToken token{};
      std::copy(message.body.begin(), message.body.end(), token.begin());
      if (const auto rtt = keepalive.pong_received(token, Clock::now())) {
        stats.rtt = *rtt;
        if (hooks.on_rtt) hooks.on_rtt(*rtt);
      }
      return true;
    }
    default:  // control frames belong to the relay hop, never to a stream
      fail(errc::protocol_error);
      return false;
  }
}

void Stream::Impl::receive_failed(std::error_code ec, const Message& message) {
  if (ec == errc::channel_closed) {
    peer_closed = true;
    peer_reason = message.close_reason;
    if (!rx_eof || peer_reason != CloseReason::normal) rx_error = error_for_close(peer_reason);
  } else if (ec == errc::aborted) {
    // After our own close, an EOF is the peer finishing too; before it, the tunnel broke.
    send_dead = true;
    if (!close_request) fail(errc::aborted);
  } else if (ec != std::errc::operation_canceled) {  // not our own close of the socket
    fail(ec);  // decrypt_failed, protocol_error, frame_too_large, the per-frame deadline
  }
  writer_wake.notify();
}

// ---------------------------------------------------------------- writer

asio::awaitable<void> Stream::Impl::writer() {
  auto self = shared_from_this();
  while (!terminated && co_await writer_step()) {
  }
  co_await finish();
  writer_running = false;
}

// One step of the writer: false when the stream must end (finish() says how).
asio::awaitable<bool> Stream::Impl::writer_step() {
  if (failure || peer_closed || close_request) co_return false;
  auto send = [this](FrameKind kind, std::span<const std::uint8_t> body) {
    return channel.send(kind, body, Clock::now() + options.write_stall);
  };
  std::error_code ec;
  const auto now = Clock::now();
  if (reader_paused) keepalive.on_frame_received(now);  // bytes are waiting: the peer lives
  const auto action = keepalive.poll(now);              // send_ping comes once: remember it
  if (action == Keepalive::Action::peer_dead) {
    fail(errc::peer_gone);
    co_return false;
  }
  if (action == Keepalive::Action::send_ping) ping_requested = true;
  if (pong_due) {
    const PingToken token = *std::exchange(pong_due, std::nullopt);
    ec = co_await send(FrameKind::pong, token);
  } else if (ping_requested) {
    ping_requested = false;
    const PingToken token = keepalive.ping_sent(now);
    ec = co_await send(FrameKind::ping, token);
  } else if (tx_busy) {
    const auto chunk = tx.first(std::min(tx.size(), max_frame_body_bytes));
    const auto generation = tx_generation;
    ec = co_await send(FrameKind::data, chunk);
    if (!ec && tx_busy && generation == tx_generation) {  // the app may have given up meanwhile
      stats.bytes_sent += chunk.size();
      tx = tx.subspan(chunk.size());
      if (tx.empty()) {
        tx_busy = false;
        app_write_wake.notify();
      }
    }
  } else if (eof_requested && !eof_sent) {
    ec = co_await send(FrameKind::data, {});
    if (!ec) {
      eof_sent = true;
      app_write_wake.notify();
    }
  } else {
    co_await writer_wake.wait(keepalive.next_wakeup());
  }
  if (ec) {
    send_dead = true;
    fail(ec);
    co_return false;
  }
  co_return true;
}

// The one way out: say why (when the channel can still say anything), let the peer finish,
// close the socket, report the end.
asio::awaitable<void> Stream::Impl::finish() {
  if (terminated) co_return;
  discarding = true;
  reader_wake.notify();
  CloseReason reason = CloseReason::normal;
  std::string detail;
  if (close_request) {
    reason = close_request->first;
    detail = close_request->second;
  } else if (failure) {
    reason = close_reason_for(failure);
    if (failure == errc::decrypt_failed) detail = "a frame failed to authenticate";
  }
  const auto until = Clock::now() + options.close_linger;
  if (!send_dead && !channel.transport().close_sent()) {
    co_await channel.send_close(reason, detail, until);
  }
  boost::system::error_code ignored;
  channel.socket().shutdown(tcp::socket::shutdown_send, ignored);
  co_await linger(until);
  terminate();
}

// Waits for the peer to finish (its close or EOF) so our close does not turn into a reset that
// destroys its last frames in flight: through the reader while it runs, else by draining.
asio::awaitable<void> Stream::Impl::linger(Deadline until) {
  if (send_dead) co_return;
  while (reader_running && !terminated && Clock::now() < until) {
    co_await reader_done_wake.wait(until);
  }
  if (reader_running || terminated) co_return;
  std::array<std::uint8_t, 4096> sink{};
  auto& socket = channel.socket();
  while (Clock::now() < until) {
    asio::steady_timer timer(socket.get_executor(), until);
    using namespace asio::experimental::awaitable_operators;
    auto result = co_await (socket.async_read_some(asio::buffer(sink), await_tuple) ||
                            timer.async_wait(await_tuple));
    if (result.index() != 0 || std::get<0>(std::get<0>(result))) co_return;
  }
}

void Stream::Impl::fail(std::error_code error) {
  if (!failure) failure = error;
  writer_wake.notify();
  reader_wake.notify();
  notify_app();
}

void Stream::Impl::terminate() {
  if (terminated) return;
  terminated = true;
  channel.close();
  reader_wake.notify();
  writer_wake.notify();
  notify_app();
  const std::error_code outcome = this->outcome();
  if (hooks.on_end) {
    auto on_end = std::move(hooks.on_end);
    on_end(outcome);
  }
}

// How the stream ended. A clean end needs the peer's own close{normal}: only then do we know it
// got our last frames and saw nothing wrong with them (its close{protocol_error} can arrive
// after both ends of data, when it was our data that failed to authenticate).
std::error_code Stream::Impl::outcome() const {
  if (failure) return failure;
  if (!peer_closed) return errc::aborted;  // no close came back before the socket ended
  if (peer_reason != CloseReason::normal) return error_for_close(peer_reason);
  if (!rx_eof && !close_request) return errc::channel_closed;  // it stopped sending early
  return {};
}

std::error_code Stream::Impl::send_state_error() const {
  if (failure) return failure;
  if (peer_closed && peer_reason != CloseReason::normal) return error_for_close(peer_reason);
  if (peer_closed || eof_requested || close_request || terminated) return errc::channel_closed;
  return {};
}

// ---------------------------------------------------------------- Stream

Stream::Stream(Channel channel, StreamOptions options, StreamHooks hooks)
    : impl_(std::make_shared<Impl>(std::move(channel), options, std::move(hooks))) {
  auto executor = impl_->channel.socket().get_executor();
  impl_->reader_running = true;
  impl_->writer_running = true;
  // The function objects keep the state alive for as long as each coroutine runs.
  asio::co_spawn(
      executor, [impl = impl_] { return impl->reader(); }, rethrow);
  asio::co_spawn(
      executor, [impl = impl_] { return impl->writer(); }, rethrow);
}

Stream::Stream(Stream&&) noexcept = default;

Stream& Stream::operator=(Stream&& other) noexcept {
  if (this != &other) {
    abort();
    impl_ = std::move(other.impl_);
  }
  return *this;
}

Stream::~Stream() {
  abort();
}

const PublicKey& Stream::peer() const {
  return impl_->peer;
}

asio::awaitable<ReadResult> Stream::read_some(std::span<std::uint8_t> out) {
  auto impl = impl_;
  for (;;) {
    if (!impl->rx.empty()) {
      const std::size_t n = impl->rx.take(out);
      impl->stats.bytes_received += n;
      if (impl->reader_paused) impl->reader_wake.notify();
      co_return ReadResult{{}, n};
    }
    if (out.empty() || impl->rx_eof) co_return ReadResult{};
    if (impl->rx_error) co_return ReadResult{impl->rx_error, 0};
    if (impl->failure) co_return ReadResult{impl->failure, 0};
    if (impl->terminated || impl->close_request) co_return ReadResult{errc::channel_closed, 0};
    co_await impl->app_read_wake.wait();
  }
}

asio::awaitable<std::error_code> Stream::write(std::span<const std::uint8_t> bytes) {
  auto impl = impl_;
  if (auto error = impl->send_state_error()) co_return error;
  if (bytes.empty()) co_return std::error_code{};  // an empty frame would mean end of data
  if (impl->tx_busy) throw std::logic_error("Stream::write: a second writer");
  impl->tx = bytes;
  impl->tx_busy = true;
  ++impl->tx_generation;
  // If this coroutine is destroyed mid-write, the writer must not touch `bytes` any more.
  struct Release {
    Impl* impl;
    ~Release() {
      impl->tx_busy = false;
      impl->tx = {};
    }
  } release{impl.get()};
  impl->writer_wake.notify();
  while (impl->tx_busy && !impl->send_state_error()) co_await impl->app_write_wake.wait();
  if (!impl->tx_busy) co_return std::error_code{};
  co_return impl->send_state_error();
}

asio::awaitable<std::error_code> Stream::shutdown_send() {
  auto impl = impl_;
  if (impl->tx_busy) throw std::logic_error("Stream::shutdown_send: during a write");
  if (!impl->eof_requested) {
    if (auto error = impl->send_state_error()) co_return error;
    impl->eof_requested = true;
    impl->writer_wake.notify();
  }
  while (!impl->eof_sent && !impl->failure && !impl->terminated && !impl->peer_closed &&
         !impl->close_request) {
    co_await impl->app_write_wake.wait();
  }
  if (impl->eof_sent) co_return std::error_code{};
  if (impl->failure) co_return impl->failure;
  co_return errc::channel_closed;
}

asio::awaitable<std::error_code> Stream::close(CloseReason reason, std::string_view detail) {
  auto impl = impl_;
  if (!impl->terminated && !impl->close_request && !impl->failure && !impl->peer_closed) {
    impl->close_request.emplace(reason, std::string(detail));
  }
  impl->writer_wake.notify();
  impl->reader_wake.notify();
  while (!impl->terminated) co_await impl->app_close_wake.wait();
  co_return impl->outcome();
}

void Stream::abort() {
  if (!impl_ || impl_->terminated) return;
  if (!impl_->failure) impl_->failure = errc::aborted;
  impl_->terminate();
}

void Stream::ping() {
  impl_->ping_requested = true;
  impl_->writer_wake.notify();
}

StreamStats Stream::stats() const {
  return impl_->stats;
}

bool Stream::finished() const {
  return impl_->terminated;
}

// ---------------------------------------------------------------- handshakes

asio::awaitable<std::error_code> connect_stream_handshake(tcp::socket& socket, const Identity& self,
                                                          const PublicKey& listener,
                                                          Deadline deadline,
                                                          std::optional<Channel>& out) {
  // The end-to-end first payload is empty: the pairing was already done by the relay.
  auto ec = co_await connect_handshake(socket, self, listener, HandshakeLayer::end_to_end, {},
                                       deadline, out);
  // Here the responder is the peer, not a relay: a wrong key is the peer's mismatch.
  if (ec == errc::relay_identity_mismatch) ec = errc::peer_identity_mismatch;
  co_return ec;
}

asio::awaitable<std::error_code> accept_stream_handshake(
    tcp::socket& socket, const Identity& self, const PublicKey& announced,
    const std::function<bool(const PublicKey&)>& is_friend, Deadline deadline,
    std::optional<Channel>& out) {
  std::optional<Channel> channel;
  std::vector<std::uint8_t> payload;
  if (auto ec = co_await accept_handshake(socket, self, HandshakeLayer::end_to_end, deadline,
                                          channel, payload)) {
    co_return ec;
  }
  std::error_code refusal;
  CloseReason reason = CloseReason::normal;
  if (!payload.empty()) {
    refusal = errc::protocol_error;
    reason = CloseReason::protocol_error;
  } else if (channel->peer() != announced) {
    refusal = errc::peer_identity_mismatch;  // the relay announced someone else
    reason = CloseReason::not_allowed;
  } else if (!is_friend || !is_friend(channel->peer())) {
    refusal = errc::not_allowed;
    reason = CloseReason::not_allowed;
  }
  if (refusal) {
    co_await channel->send_close(reason, "", deadline);
    channel->close();
    co_return refusal;
  }
  out = std::move(channel);
  co_return std::error_code{};
}

}  // namespace strelay
