// Node-side plumbing of the benchmarks: hop connections to the relay under test, listeners,
// and tunnel pairs (Connect + IncomingConnection + Accept + Connected), as the node library
// does them, but with the source address chosen (idle scale spreads over 127.0.0.x) and
// without the library's reconnection machinery, which a benchmark does not want to time.
#pragma once
#include <fcntl.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <optional>
#include <system_error>
#include <utility>

#include "common/channel.hpp"
#include "common/coro.hpp"
#include "common/errors.hpp"
#include "common/messages.hpp"
#include "common/relay_link.hpp"

namespace bench {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using strelay::await_tuple;
using strelay::Channel;
using strelay::Identity;
using strelay::PublicKey;
inline strelay::Deadline deadline_in(std::chrono::milliseconds d) {
  return Clock::now() + d;
}

// 127.0.0.(2 + i % count): several sources, so per-source limits and port ranges never bind.
inline asio::ip::address source_address(std::size_t i, std::size_t count = 8) {
  return asio::ip::make_address_v4(
      static_cast<asio::ip::address_v4::uint_type>(0x7f000002u + static_cast<unsigned>(i % count)));
}

struct Hop {
  tcp::endpoint relay;
  PublicKey relay_key;
};

// TCP from `source`, then the relay handshake with `request` in msg3.
inline asio::awaitable<std::error_code> open_hop(const Hop& hop, const asio::ip::address& source,
                                                 const Identity& self,
                                                 const strelay::NodeMessage& request,
                                                 std::optional<Channel>& out) {
  tcp::socket socket(co_await asio::this_coro::executor);
  boost::system::error_code ec;
  socket.open(tcp::v4(), ec);
  if (!ec) socket.bind(tcp::endpoint(source, 0), ec);
  if (ec) co_return std::error_code(ec.value(), std::system_category());
  auto [cec] = co_await socket.async_connect(hop.relay, await_tuple);
  if (cec) co_return std::error_code(cec.value(), std::system_category());
  const auto payload = strelay::encode(request);
  co_return co_await strelay::connect_handshake(socket, self, hop.relay_key,
                                                strelay::HandshakeLayer::hop, payload,
                                                deadline_in(std::chrono::seconds(20)), out);
}

// The next relay message on a listener channel; pings are answered on the way.
inline asio::awaitable<std::optional<strelay::RelayMessage>> next_relay_message(Channel& channel) {
  for (int i = 0; i < 100; ++i) {
    strelay::Message message;
    if (co_await channel.receive(message, deadline_in(std::chrono::seconds(20))))
      co_return std::nullopt;
    if (message.kind == strelay::FrameKind::ping) {
      const std::vector<std::uint8_t> token(message.body.begin(), message.body.end());
      if (co_await channel.send(strelay::FrameKind::pong, token,
                                deadline_in(std::chrono::seconds(5)))) {
        co_return std::nullopt;
      }
      continue;
    }
    if (message.kind != strelay::FrameKind::control) continue;
    auto decoded = strelay::try_decode_relay_message(message.body);
    if (!decoded) co_return std::nullopt;
    co_return *decoded;
  }
  co_return std::nullopt;
}

// Listen with `self`, waiting for ListenOk.
inline asio::awaitable<std::error_code> open_listener(const Hop& hop,
                                                      const asio::ip::address& source,
                                                      const Identity& self,
                                                      std::optional<Channel>& out) {
  if (auto ec = co_await open_hop(hop, source, self, strelay::Listen{}, out)) co_return ec;
  const auto reply = co_await next_relay_message(*out);
  if (!reply || !std::holds_alternative<strelay::ListenOk>(*reply))
    co_return strelay::errc::protocol_error;
  co_return std::error_code{};
}

// Both ends of one tunnel, as raw sockets after Connected.
struct TunnelEnds {
  std::optional<tcp::socket> connector;
  std::optional<tcp::socket> acceptor;
  std::error_code error;
};

// The connector's side: Connect{listener}, the outcome, the socket.
inline asio::awaitable<std::error_code> connector_side(const Hop& hop,
                                                       const asio::ip::address& source,
                                                       const Identity& self,
                                                       const PublicKey& listener,
                                                       std::optional<tcp::socket>& out) {
  std::optional<Channel> channel;
  if (auto ec = co_await open_hop(hop, source, self, strelay::Connect{listener}, channel))
    co_return ec;
  PublicKey peer;
  if (auto ec =
          co_await strelay::await_pairing(*channel, deadline_in(std::chrono::seconds(20)), peer)) {
    co_return ec;
  }
  out.emplace(channel->release_socket());
  co_return std::error_code{};
}

// The next IncomingConnection on `listening`: its connector's key in `from`.
inline asio::awaitable<std::error_code> await_incoming(Channel& listening, PublicKey& from) {
  const auto incoming = co_await next_relay_message(listening);
  const auto* inc = incoming ? std::get_if<strelay::IncomingConnection>(&*incoming) : nullptr;
  if (inc == nullptr) co_return strelay::errc::protocol_error;
  from = inc->from;
  co_return std::error_code{};
}

// The listener's side: the IncomingConnection on `listening`, Accept{from}, the socket.
inline asio::awaitable<std::error_code> acceptor_side(const Hop& hop,
                                                      const asio::ip::address& source,
                                                      const Identity& self, Channel& listening,
                                                      std::optional<tcp::socket>& out,
                                                      PublicKey& from) {
  if (auto ec = co_await await_incoming(listening, from)) co_return ec;
  std::optional<Channel> channel;
  if (auto ec = co_await open_hop(hop, source, self, strelay::Accept{from}, channel)) co_return ec;
  PublicKey peer;
  if (auto ec =
          co_await strelay::await_pairing(*channel, deadline_in(std::chrono::seconds(20)), peer)) {
    co_return ec;
  }
  out.emplace(channel->release_socket());
  co_return std::error_code{};
}

// One tunnel from `connector` to the node listening on `listening` as `listener`.
inline asio::awaitable<TunnelEnds> open_tunnel(const Hop& hop, const asio::ip::address& source,
                                               const Identity& connector, const Identity& listener,
                                               Channel& listening) {
  using namespace asio::experimental::awaitable_operators;
  TunnelEnds ends;
  PublicKey from;
  std::error_code a, b;
  auto run_connector = [&]() -> asio::awaitable<void> {
    a = co_await connector_side(hop, source, connector, listener.public_key(), ends.connector);
  };
  auto run_acceptor = [&]() -> asio::awaitable<void> {
    b = co_await acceptor_side(hop, source, listener, listening, ends.acceptor, from);
  };
  co_await (run_connector() && run_acceptor());
  ends.error = a ? a : b;
  co_return ends;
}

// Runs `task` on `ioc` until it is done; gives up (exits) after `limit`.
template <typename T>
T run_until_done(asio::io_context& ioc, asio::awaitable<T> task,
                 std::chrono::seconds limit = std::chrono::seconds(120)) {
  std::optional<T> result;
  std::exception_ptr failure;
  ioc.restart();
  // Stop as soon as the task is done: streams and channels left behind may still hold timers.
  asio::co_spawn(ioc, std::move(task), [&](std::exception_ptr e, T value) {
    failure = e;
    if (!e) result.emplace(std::move(value));
    ioc.stop();
  });
  ioc.run_for(limit);
  if (failure) std::rethrow_exception(failure);
  if (!result) die("a benchmark step did not finish within its time limit");
  return std::move(*result);
}

// The raw, blocking file descriptor of an Asio socket (for the bulk threads).
inline int take_blocking_fd(tcp::socket& socket) {
  const int fd = socket.release();
  const int flags = ::fcntl(fd, F_GETFL);
  ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  return fd;
}

}  // namespace bench
