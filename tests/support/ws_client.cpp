#include "support/ws_client.hpp"

#include <doctest/doctest.h>

#include <boost/asio/connect.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include "common/coro.hpp"
#include "common/handshake.hpp"
#include "strelay/websocket.hpp"

namespace strelay::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;

const WsOptions& default_ws_options() {
  static const WsOptions options;
  return options;
}

asio::awaitable<WsSocket> open_websocket(const tcp::endpoint& relay, const WsOptions& options) {
  auto executor = co_await asio::this_coro::executor;
  WsSocket out{{}, 0, tcp::socket(executor)};
  tcp::socket socket(executor);
  boost::system::error_code ec;
  socket.open(relay.protocol(), ec);
  if (!ec && !options.source.empty())
    socket.bind(tcp::endpoint(asio::ip::make_address(options.source), 0), ec);
  if (!ec) std::tie(ec) = co_await socket.async_connect(relay, await_tuple);
  if (ec) {
    out.error = ec;
    co_return out;
  }
  WebSocketBridge::Stream ws(std::move(socket));
  ws.set_option(websocket::stream_base::decorator([options](websocket::request_type& req) {
    if (!options.origin.empty()) req.set(beast::http::field::origin, options.origin);
    for (const auto& [name, value] : options.headers) req.set(name, value);
  }));
  websocket::response_type response;
  const std::string host = relay.address().to_string() + ":" + std::to_string(relay.port());
  std::tie(ec) = co_await ws.async_handshake(response, host, options.path, await_tuple);
  if (ec) {
    out.error = ec;
    out.status = static_cast<int>(response.result_int());
    co_return out;
  }
  static Clock client_clock;  // real time: the test node's bridge outlives any test's clock
  // The node's FIN is its end: its WebSocket closes after the bytes before it.
  auto [bridge, end] = WebSocketBridge::make(std::move(ws), client_clock,
                                             WebSocketBridge::Options{.fin_closes = true});
  bridge->start();
  out.socket = std::move(end);
  co_return out;
}

asio::awaitable<RelayConnection> open_ws_connection(const RelayAddress& relay, const Identity& self,
                                                    const NodeMessage& request,
                                                    const WsOptions& options,
                                                    std::chrono::milliseconds timeout) {
  RelayConnection out;
  auto ws = co_await open_websocket(relay.endpoint, options);
  if (ws.error) {
    out.error = ws.error;
    co_return out;
  }
  const auto payload = encode(request);
  out.error = co_await connect_handshake(ws.socket, self, relay.key, HandshakeLayer::hop, payload,
                                         std::chrono::steady_clock::now() + timeout, out.channel);
  co_return out;
}

asio::awaitable<PairedPipe> make_pipe_over(const RelayAddress& relay, const Identity& l_id,
                                           const Identity& c_id, Carriers carriers) {
  auto open = [&](bool ws, const Identity& id,
                  const NodeMessage& request) -> asio::awaitable<RelayConnection> {
    if (ws) co_return co_await open_ws_connection(relay, id, request);
    co_return co_await open_connection(relay, id, request);
  };
  auto is_a = [](const Received& r, auto tag) {
    return r.message && std::holds_alternative<decltype(tag)>(*r.message);
  };
  auto l = co_await open(carriers.listener, l_id, Listen{});
  REQUIRE_FALSE(l.error);
  REQUIRE(is_a(co_await next_message(*l.channel), ListenOk{}));
  auto c = co_await open(carriers.connector, c_id, Connect{l_id.public_key()});
  REQUIRE_FALSE(c.error);
  auto incoming = co_await next_message(*l.channel);
  REQUIRE(is_a(incoming, IncomingConnection{}));
  auto a = co_await open(carriers.acceptor, l_id, Accept{c_id.public_key()});
  REQUIRE_FALSE(a.error);
  auto a_outcome = co_await next_message(*a.channel);
  auto c_outcome = co_await next_message(*c.channel);
  REQUIRE(is_a(a_outcome, Connected{}));
  REQUIRE(is_a(c_outcome, Connected{}));
  co_return PairedPipe{std::move(l), c.channel->release_socket(), a.channel->release_socket()};
}

}  // namespace strelay::test
