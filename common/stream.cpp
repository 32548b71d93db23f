#include "common/stream.hpp"

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <utility>
#include <vector>

#include "common/coro.hpp"
#include "common/errors.hpp"
#include "common/wakeup.hpp"

namespace strelay {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

StreamConfig config_of(const StreamOptions& options) {
  return {options.keepalive_interval, options.dead_peer_timeout, options.receive_buffer_bytes};
}

}  // namespace

// Ownership: everything runs on the socket's executor. `state` decides; the reader coroutine
// owns the channel's receive side, the writer coroutine its send side, and the application's
// calls only change `state` and wait. Every change wakes every waiter (changed()); each waiter
// re-checks its own condition, so no rule depends on who wakes whom.
struct Stream::Impl : std::enable_shared_from_this<Stream::Impl> {
  Impl(Channel c, StreamOptions o, StreamHooks h)
      : channel(std::move(c)),
        options(std::move(o)),
        hooks(std::move(h)),
        state(now(), config_of(options)),
        peer(channel.peer()),
        reader_wake(channel.socket().get_executor()),
        writer_wake(channel.socket().get_executor()),
        app_read_wake(channel.socket().get_executor()),
        app_write_wake(channel.socket().get_executor()),
        app_close_wake(channel.socket().get_executor()) {}

  asio::awaitable<void> reader();
  asio::awaitable<void> writer();
  asio::awaitable<void> finish();
  asio::awaitable<void> linger(Deadline until);
  void terminate();
  Clock::time_point now() const { return now_on(options.clock); }
  void changed() {
    reader_wake.notify();
    writer_wake.notify();
    app_read_wake.notify();
    app_write_wake.notify();
    app_close_wake.notify();
  }

  Channel channel;
  StreamOptions options;
  StreamHooks hooks;
  StreamState state;
  PublicKey peer;
  bool reader_running = false;  // the writer's linger waits for the reader's end
  // One waiter each: the reader (room in the buffer), the writer (something to send, or its
  // linger), read_some(), write() or shutdown_send(), close().
  Wakeup reader_wake, writer_wake, app_read_wake, app_write_wake, app_close_wake;
};

// ---------------------------------------------------------------- reader

asio::awaitable<void> Stream::Impl::reader() {
  auto self = shared_from_this();
  Message message;
  while (!state.terminated()) {
    if (!state.wants_frame()) {
      if (!state.terminated()) co_await reader_wake.wait();
      continue;
    }
    const auto ec = co_await channel.receive(message, Deadline::max());
    if (state.terminated()) break;
    if (ec) {
      state.on_receive_end(ec, message.close_reason);
      break;
    }
    const auto result = state.on_frame(message.kind, message.body, now());
    if (result.rtt && hooks.on_rtt) hooks.on_rtt(*result.rtt);
    changed();
    if (!result.keep_reading) break;
  }
  reader_running = false;
  changed();
}

// ---------------------------------------------------------------- writer

asio::awaitable<void> Stream::Impl::writer() {
  auto self = shared_from_this();
  using Kind = StreamState::WriterStep::Kind;
  while (!state.terminated()) {
    const auto step = state.writer_step(now());
    if (step.kind == Kind::finish) break;
    if (step.kind == Kind::wait) {
      co_await writer_wake.wait(timer_deadline(options.clock, step.until));
      continue;
    }
    const auto ec =
        co_await channel.send(step.frame, step.body, Clock::now() + options.write_stall);
    state.on_sent(ec);
    changed();
  }
  co_await finish();
}

// The one way out: say why (when the channel can still say anything), let the peer finish,
// close the socket, report the end.
asio::awaitable<void> Stream::Impl::finish() {
  if (state.terminated()) co_return;
  const auto plan = state.finish();
  changed();  // a reader held back by a full buffer now reads and drops
  const auto until = Clock::now() + options.close_linger;
  if (plan.send_close && !channel.transport().close_sent()) {
    co_await channel.send_close(plan.reason, plan.detail, until);
  }
  boost::system::error_code ignored;
  channel.socket().shutdown(tcp::socket::shutdown_send, ignored);
  if (plan.linger) co_await linger(until);
  terminate();
}

// Waits for the peer to finish (its close or EOF) so our close does not turn into a reset that
// destroys its last frames in flight: through the reader while it runs, else by draining.
asio::awaitable<void> Stream::Impl::linger(Deadline until) {
  while (reader_running && !state.terminated() && Clock::now() < until) {
    co_await writer_wake.wait(until);
  }
  if (reader_running || state.terminated()) co_return;
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

void Stream::Impl::terminate() {
  if (state.terminated()) return;
  const std::error_code outcome = state.on_terminated();
  channel.close();
  changed();
  if (hooks.on_end) {
    auto on_end = std::move(hooks.on_end);
    on_end(outcome);
  }
}

// ---------------------------------------------------------------- Stream

Stream::Stream(Channel channel, StreamOptions options, StreamHooks hooks)
    : impl_(std::make_shared<Impl>(std::move(channel), std::move(options), std::move(hooks))) {
  auto executor = impl_->channel.socket().get_executor();
  impl_->reader_running = true;
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
    if (auto result = impl->state.try_read(out)) {
      if (result->bytes > 0) impl->changed();  // room for the reader
      co_return *result;
    }
    co_await impl->app_read_wake.wait();
  }
}

asio::awaitable<std::error_code> Stream::write(std::span<const std::uint8_t> bytes) {
  auto impl = impl_;
  if (auto done = impl->state.begin_write(bytes)) co_return *done;
  // If this coroutine is destroyed mid-write, the writer must not touch `bytes` any more.
  struct Release {
    Impl* impl;
    ~Release() { impl->state.cancel_write(); }
  } release{impl.get()};
  impl->changed();
  for (;;) {
    if (auto result = impl->state.write_result()) co_return *result;
    co_await impl->app_write_wake.wait();
  }
}

asio::awaitable<std::error_code> Stream::shutdown_send() {
  auto impl = impl_;
  auto result = impl->state.begin_end_of_data();
  impl->changed();
  while (!result) {
    co_await impl->app_write_wake.wait();
    result = impl->state.end_of_data_result();
  }
  co_return *result;
}

asio::awaitable<std::error_code> Stream::close(CloseReason reason, std::string_view detail) {
  auto impl = impl_;
  impl->state.request_close(reason, detail);
  impl->changed();
  while (!impl->state.terminated()) co_await impl->app_close_wake.wait();
  co_return impl->state.outcome();
}

void Stream::abort() {
  if (!impl_ || impl_->state.terminated()) return;
  impl_->state.abort();
  impl_->terminate();
}

void Stream::ping() {
  impl_->state.request_ping();
  impl_->changed();
}

void Stream::clock_changed() {
  impl_->changed();
}

StreamStats Stream::stats() const {
  return impl_->state.stats();
}

bool Stream::finished() const {
  return impl_->state.terminated();
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
  co_return co_await admit_initiator(channel, payload, announced, is_friend, deadline, out);
}

asio::awaitable<std::error_code> admit_initiator(
    std::optional<Channel>& channel, std::span<const std::uint8_t> payload,
    const PublicKey& announced, const std::function<bool(const PublicKey&)>& is_friend,
    Deadline deadline, std::optional<Channel>& out) {
  std::error_code refusal;
  CloseReason reason = CloseReason::normal;
  if (!payload.empty()) {
    refusal = errc::protocol_error;
    reason = CloseReason::protocol_error;
  } else if (channel->peer() != announced) {
    refusal = errc::peer_identity_mismatch;  // the relay announced someone else
    reason = CloseReason::not_allowed;
  } else if (!is_friend || !is_friend(channel->peer())) {
    refusal = errc::not_a_friend;  // the connector reads the same code from our close
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
