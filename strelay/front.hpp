// The relay port's front door: what happens to a connection between accept() and its Session.
//
//   accept ─ (admission, unless the peer is a trusted proxy) ─ peek at the first bytes
//     ├─ nothing, EOF            a health check: counted, closed
//     ├─ "PROXY " / v2 signature  from a trusted proxy: parse and consume exactly the header;
//     │                          the client it names is the source from here on (admission,
//     │                          logs); then the first bytes again. From anyone else: refused.
//     ├─ "s..." (or other bytes)  a TCP session: the socket goes to Session untouched
//     └─ an HTTP request (read with a bounded parser):
//          at --websocket-path, an upgrade: Origin (--allow-origin), X-Forwarded-For or
//            Forwarded (honoured only from a trusted proxy, refused from anyone else), then
//            Beast's accept, then a WebSocketBridge whose socketpair end goes to Session
//          elsewhere: a static file under --web-root, or a short plain answer
// Everything before the Session runs under the connection's handshake deadline (absolute,
// from accept), which the Session then keeps: a slow upgrade eats into the same 10 s.
//
// Ownership: a Front owns the socket (then the WebSocket stream) until it hands it on; it runs
// on the socket's worker, and its watchdog closes the socket at the deadline.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <optional>

#include "strelay/clock.hpp"
#include "strelay/limits.hpp"
#include "strelay/metrics.hpp"

namespace strelay {

class Server;

struct FrontEntry {
  boost::asio::ip::tcp::socket socket;
  boost::asio::ip::tcp::endpoint remote;  // the TCP peer, as accept() gave it
  // nullopt when the peer is a trusted proxy: the client it names is admitted instead.
  std::optional<Admission::Admitted> admitted;
  GaugeHold connection;
  TimePoint deadline;
  bool websocket_only = false;  // accepted on a --websocket-laddr: no raw TCP sessions
};

// Spawns the front on the socket's executor.
void start_front(Server& server, FrontEntry entry);

}  // namespace strelay
