// Test support: a node's WebSocket carrier. A Beast WebSocket client is bridged to a
// socketpair by the relay's own WebSocketBridge, so the unchanged node code (the handshake,
// Channel, the raw pipe after Connected) runs over WebSocket exactly as it runs over TCP.
// Shutting down the returned socket's sending side closes the WebSocket (1000) after its
// bytes (WebSocketBridge::Options::fin_closes); the relay's close arrives as EOF on the
// returned socket.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/system/error_code.hpp>
#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "support/relay_client.hpp"
#include "support/relay_probe.hpp"

namespace strelay::test {

struct WsOptions {
  std::string path = "/strelay";
  std::string origin;                                        // empty: no Origin header
  std::vector<std::pair<std::string, std::string>> headers;  // extra upgrade headers
  std::string source;  // bind to this address first; empty: any
};

struct WsSocket {
  boost::system::error_code error;  // of the connect or the upgrade
  int status = 0;                   // the HTTP status of a refused upgrade (0: none read)
  tcp::socket socket;               // carries the stream's bytes when !error
};

// Connects to `relay` and upgrades at options.path (by reference: co_await the call at once).
boost::asio::awaitable<WsSocket> open_websocket(const tcp::endpoint& relay,
                                                const WsOptions& options);

// open_connection() over WebSocket: the handshake pinned to relay.key, `request` in msg3.
boost::asio::awaitable<RelayConnection> open_ws_connection(
    const RelayAddress& relay, const Identity& self, const NodeMessage& request,
    const WsOptions& options, std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));
// The same with the default options. (No default argument: GCC 12 destroys a default argument's
// temporary twice in a co_await expression.)
const WsOptions& default_ws_options();
inline boost::asio::awaitable<RelayConnection> open_ws_connection(const RelayAddress& relay,
                                                                  const Identity& self,
                                                                  const NodeMessage& request) {
  return open_ws_connection(relay, self, request, default_ws_options());
}

// make_pipe() with each of its three connections on the chosen carrier (true: WebSocket).
struct Carriers {
  bool listener = false;
  bool connector = false;
  bool acceptor = false;
};
boost::asio::awaitable<PairedPipe> make_pipe_over(const RelayAddress& relay,
                                                  const Identity& listener,
                                                  const Identity& connector, Carriers carriers);

}  // namespace strelay::test
