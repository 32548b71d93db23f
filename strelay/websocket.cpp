#include "strelay/websocket.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/websocket.hpp>
#include <system_error>
#include <vector>

#include "common/coro.hpp"

namespace strelay {

namespace asio = boost::asio;
namespace websocket = boost::beast::websocket;
using tcp = asio::ip::tcp;

namespace {

// Socketpair buffers: the kernel's default (~208 KiB) would more than double what a direction
// holds; the bridge's own buffer plus one of these is the bound.
void bound_socket_buffers(int fd, std::size_t bytes) {
  const int size = static_cast<int>(bytes);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
}

bool is_protocol_violation(boost::system::error_code ec) {
  return ec == websocket::condition::protocol_violation;
}

// Both directions of a Unix stream socket are shut (its peer closed it): poll() says POLLHUP,
// which a half-close (the peer's shutdown of its sending side alone) does not cause.
bool hung_up(int fd) {
  pollfd p{fd, 0, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR)) != 0;
}

}  // namespace

const char* to_string(WebSocketBridge::End end) {
  switch (end) {
    case WebSocketBridge::End::normal: return "normal";
    case WebSocketBridge::End::text_message: return "text_message";
    case WebSocketBridge::End::protocol_error: return "protocol_error";
    case WebSocketBridge::End::too_big: return "too_big";
    case WebSocketBridge::End::stalled: return "stalled";
    case WebSocketBridge::End::aborted: return "aborted";
  }
  return "unknown";
}

std::pair<std::shared_ptr<WebSocketBridge>, tcp::socket> WebSocketBridge::make(Stream ws,
                                                                               Clock& clock,
                                                                               Options options,
                                                                               Metrics* metrics) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
    throw std::system_error(errno, std::generic_category(), "socketpair");
  }
  for (int fd : fds) bound_socket_buffers(fd, options.buffer_bytes);
  auto executor = ws.get_executor();
  // tcp::socket only tags the descriptor: every operation used on it (read, write, shutdown,
  // wait, splice by descriptor) works the same on a Unix stream socket.
  tcp::socket mine(executor);
  tcp::socket theirs(executor);
  mine.assign(tcp::v6(), fds[0]);
  theirs.assign(tcp::v6(), fds[1]);
  std::shared_ptr<WebSocketBridge> bridge(
      new WebSocketBridge(std::move(ws), std::move(mine), clock, options, metrics));
  return {std::move(bridge), std::move(theirs)};
}

WebSocketBridge::WebSocketBridge(Stream ws, tcp::socket pair, Clock& clock, Options options,
                                 Metrics* metrics)
    : ws_(std::move(ws)),
      pair_(std::move(pair)),
      options_(options),
      metrics_(metrics),
      open_(metrics != nullptr ? GaugeHold(metrics->websocket_connections) : GaugeHold()),
      clock_(clock),
      watchdog_(pair_.get_executor(), clock),
      linger_(pair_.get_executor(), clock) {
  ws_.binary(true);
  // One frame per write (Beast's default cuts messages into 4 KiB frames, which made the
  // receiving node, not the relay, the limit of a WebSocket tunnel: docs/performance.md).
  ws_.auto_fragment(false);
  ws_.read_message_max(options_.max_message_bytes);
}

WebSocketBridge::~WebSocketBridge() {
  hold(-held_);
}

void WebSocketBridge::start(std::function<void(End)> on_end) {
  on_end_ = std::move(on_end);
  running_ = 2;
  // Each lambda owns the bridge until its coroutine ends (they start later, on the executor).
  auto self = shared_from_this();
  asio::co_spawn(
      pair_.get_executor(), [self]() -> asio::awaitable<void> { co_await self->from_websocket(); },
      asio::detached);
  asio::co_spawn(
      pair_.get_executor(), [self]() -> asio::awaitable<void> { co_await self->to_websocket(); },
      asio::detached);
}

void WebSocketBridge::stop() {
  asio::post(pair_.get_executor(), [self = shared_from_this()] { self->abort(End::aborted); });
}

void WebSocketBridge::hold(std::int64_t delta) {
  held_ += delta;
  if (metrics_ != nullptr && delta != 0) metrics_->websocket_buffered_bytes.add(delta);
}

// Node -> pair. Each read returns part of one message; its bytes go to the pair in order.
asio::awaitable<void> WebSocketBridge::from_websocket() {
  auto self = shared_from_this();
  std::vector<std::uint8_t> buffer(options_.buffer_bytes);
  while (!aborted_) {
    auto [ec, n] = co_await ws_.async_read_some(asio::buffer(buffer), await_tuple);
    if (ec) {
      websocket_read_ended(ec);
      break;
    }
    if (ws_.got_text()) {
      // The protocol is bytes; a text message is a client of something else, or a bug.
      end_ = End::text_message;
      begin_write(1, options_.close_linger);
      co_await ws_.async_close(
          websocket::close_reason(websocket::close_code::unknown_data, "binary messages only"),
          await_tuple);
      end_write(1);
      abort(End::text_message);
      break;
    }
    hold(static_cast<std::int64_t>(n));
    begin_write(0, options_.write_stall);
    auto [wec, written] =
        co_await asio::async_write(pair_, asio::buffer(buffer.data(), n), await_tuple);
    end_write(0);
    hold(-static_cast<std::int64_t>(n));
    if (wec && pair_ended_ && !aborted_) {
      // The other side ended after its FIN while the node still sent: no one is left to read.
      // Not a reset: the WebSocket is closed normally (to_websocket, woken here).
      linger_.cancel();
      break;
    }
    if (wec) {
      abort(End::aborted);
      break;
    }
  }
  direction_done();
}

void WebSocketBridge::websocket_read_ended(boost::system::error_code ec) {
  if (aborted_) return;
  if (ec == websocket::error::closed || ec == asio::error::eof) {
    // The node closed: a FIN toward the session or tunnel. Nothing more can reach the node.
    websocket_closed_ = true;
    open_.release();
    boost::system::error_code ignored;
    pair_.shutdown(tcp::socket::shutdown_send, ignored);
    linger_.cancel();  // both sides are done
    return;
  }
  if (ec == websocket::error::message_too_big || ec == websocket::error::buffer_overflow) {
    abort(End::too_big);
  } else if (is_protocol_violation(ec)) {
    abort(End::protocol_error);
  } else {
    abort(End::aborted);
  }
}

// Pair -> node. Each read becomes one binary message; EOF closes the WebSocket.
asio::awaitable<void> WebSocketBridge::to_websocket() {
  auto self = shared_from_this();
  std::vector<std::uint8_t> buffer(options_.buffer_bytes);
  while (!aborted_) {
    auto [ec, n] = co_await pair_.async_read_some(asio::buffer(buffer), await_tuple);
    if (ec == asio::error::eof) {
      pair_ended_ = true;
      break;
    }
    if (ec) {
      abort(End::aborted);
      break;
    }
    if (websocket_closed_) continue;  // the node closed: discard, as a closed socket would
    hold(static_cast<std::int64_t>(n));
    begin_write(1, options_.write_stall);
    auto [wec, written] = co_await ws_.async_write(asio::buffer(buffer.data(), n), await_tuple);
    end_write(1);
    hold(-static_cast<std::int64_t>(n));
    // The node's Close crossed our message: Beast ends the write with `closed`, or, when the
    // Close arrived while the write was under way, with operation_aborted (our own aborts
    // set aborted_ first). Either way the rest is discarded, as for a closed socket.
    if (wec == websocket::error::closed || (wec == asio::error::operation_aborted && !aborted_)) {
      websocket_closed_ = true;
      continue;
    }
    if (wec) {
      abort(End::aborted);
      break;
    }
  }
  if (!aborted_ && !websocket_closed_ && !options_.fin_closes && !hung_up(pair_.native_handle())) {
    co_await await_node_close();
  }
  if (!aborted_ && !websocket_closed_) {
    // The other side ended (EOF after its last byte): close the WebSocket, 1000.
    begin_write(1, options_.close_linger);
    co_await ws_.async_close(websocket::close_code::normal, await_tuple);
    end_write(1);
    websocket_closed_ = true;
    open_.release();
  }
  direction_done();
}

// A FIN, not a close: the Session or tunnel still reads what the node sends (from_websocket
// carries it on), and the node, which cannot be told of a half-close, may still owe its last
// bytes (its answer to an end-to-end close). Waits until the node closes, the pair is closed
// too (POLLHUP: the tunnel or Session ended), or close_linger passes.
asio::awaitable<void> WebSocketBridge::await_node_close() {
  using namespace asio::experimental::awaitable_operators;
  linger_.expires_at(clock_.now() + options_.close_linger);
  co_await (linger_.async_wait(await_tuple) ||
            pair_.async_wait(tcp::socket::wait_error, await_tuple));
}

void WebSocketBridge::direction_done() {
  if (--running_ > 0) return;
  watchdog_.cancel();
  boost::system::error_code ignored;
  pair_.close(ignored);
  ws_.next_layer().close(ignored);
  open_.release();
  if (auto on_end = std::exchange(on_end_, {})) on_end(end_);
}

// Ends both sides now: every pending operation completes with an error.
void WebSocketBridge::abort(End why) {
  if (aborted_) return;
  aborted_ = true;
  if (end_ == End::normal) end_ = why;
  boost::system::error_code ignored;
  pair_.close(ignored);
  ws_.next_layer().close(ignored);
  watchdog_.cancel();
  linger_.cancel();
  open_.release();
}

void WebSocketBridge::begin_write(std::size_t direction, Clock::duration allowance) {
  write_deadline_[direction] = clock_.now() + allowance;
  if (write_deadline_[direction] < watchdog_at_) arm_watchdog();
}

void WebSocketBridge::arm_watchdog() {
  watchdog_at_ = std::min(write_deadline_[0], write_deadline_[1]);
  if (watchdog_at_ == Clock::time_point::max() || aborted_) return;
  watchdog_.expires_at(watchdog_at_);
  watchdog_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (!ec) self->on_watchdog();
  });
}

void WebSocketBridge::on_watchdog() {
  if (aborted_) return;
  const auto now = clock_.now();
  if (write_deadline_[0] <= now || write_deadline_[1] <= now) {
    abort(End::stalled);
    return;
  }
  arm_watchdog();
}

}  // namespace strelay
