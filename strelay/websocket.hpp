// The WebSocket carrier's bridge: a Beast WebSocket stream on one side, one end of a
// socketpair(AF_UNIX, SOCK_STREAM) on the other. The other end of the pair is handed to the
// unchanged Session (and later Tunnel) as its socket, so everything above the carrier (the
// handshake, limits, pairing, splicing) is the same code for TCP and WebSocket.
//
// Bytes, not messages: each binary message's bytes are written to the pair as they arrive
// (fragments included); each read from the pair becomes one binary message. Message
// boundaries mean nothing (docs/protocol.md, "Carriers").
//
// Bounds: each direction copies through one buffer of `buffer_bytes`, and the pair's send
// buffers are set to the same size; a direction whose writer blocks stops reading, so the
// WebSocket peer (through TCP flow control) or the Session/Tunnel (through the pair) is pushed
// back, and nothing is dropped. A write that makes no progress for `write_stall` ends the
// bridge (stalled).
//
// The end of the stream (a WebSocket has no half-close):
//   - the node's Close frame (or its TCP FIN) becomes a half-close of the pair: the Session or
//     Tunnel reads EOF, and a tunnel carries it on as a FIN to the other node. Whatever still
//     arrives for this node is discarded: nothing can reach a closed WebSocket.
//   - EOF from the pair closes the WebSocket (1000, normal) after every byte before it was
//     sent, but not at once when it is only a FIN (the tunnel carried the other node's
//     half-close; the pair is still open for writing): a WebSocket cannot half-close, and the
//     node may still owe bytes, such as its answer to the other node's end-to-end close. The
//     node's bytes are carried on until the node closes (then both sides are done), the pair is
//     closed (the tunnel or Session ended: 1000 at once), or `close_linger` passes (1000).
//     When the pair is closed already at EOF (the Session ended), or with `fin_closes`, the
//     WebSocket closes at once.
//   - a text message (1003), a protocol violation (1002, Beast) or a message over
//     `max_message_bytes` (1009, Beast) ends both sides at once, counted.
//
// Ownership: the bridge owns the WebSocket stream and its end of the pair; its two pump
// coroutines and its watchdog run on the stream's executor, and keep it alive through
// shared_from_this. stop() may be called from any thread.
#pragma once

#include <array>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <utility>

#include "common/protocol.hpp"
#include "strelay/clock.hpp"
#include "strelay/metrics.hpp"

namespace strelay {

class WebSocketBridge : public std::enable_shared_from_this<WebSocketBridge> {
 public:
  using tcp = boost::asio::ip::tcp;
  using Stream = boost::beast::websocket::stream<tcp::socket>;

  struct Options {
    std::size_t buffer_bytes = websocket_bridge_buffer_bytes;
    std::size_t max_message_bytes = websocket_max_message_bytes;
    Clock::duration write_stall = write_stall_timeout;
    // For a Close handshake, and for the node to close after the other side's FIN.
    Clock::duration close_linger = websocket_close_linger;
    // A FIN from the pair closes the WebSocket at once, as a full close would. The relay keeps
    // it open instead (the node may owe bytes); a node's own bridge, whose FIN is its end
    // (tests/support/ws_client), sets this.
    bool fin_closes = false;
  };

  // Why the bridge ended.
  enum class End : std::uint8_t {
    normal,          // both sides ended cleanly (a Close, or EOF, on each side)
    text_message,    // the node sent a text message: close 1003
    protocol_error,  // the node broke RFC 6455: Beast closed with 1002
    too_big,         // a message over max_message_bytes: Beast closed with 1009
    stalled,         // a write made no progress for write_stall
    aborted,         // a reset, or stop()
  };

  // Takes an open WebSocket (accepted or, in tests, connected). Returns the bridge and the
  // other end of its socketpair, a socket on the same executor carrying the stream's bytes.
  // Throws std::system_error when the socketpair cannot be made (out of descriptors).
  // `metrics` (may be null) counts the bridge's buffered bytes and open WebSockets.
  // Its write-stall watchdog runs on `clock`, which must outlive the bridge.
  static std::pair<std::shared_ptr<WebSocketBridge>, tcp::socket> make(Stream ws, Clock& clock,
                                                                       Options options,
                                                                       Metrics* metrics = nullptr);
  ~WebSocketBridge();
  WebSocketBridge(const WebSocketBridge&) = delete;
  WebSocketBridge& operator=(const WebSocketBridge&) = delete;

  // Starts both directions; `on_end` runs once, on the bridge's executor, when both are done.
  void start(std::function<void(End)> on_end = {});
  // Ends both sides at once (aborted); thread-safe.
  void stop();

 private:
  WebSocketBridge(Stream ws, tcp::socket pair, Clock& clock, Options options, Metrics* metrics);
  boost::asio::awaitable<void> from_websocket();    // node -> pair
  boost::asio::awaitable<void> to_websocket();      // pair -> node
  boost::asio::awaitable<void> await_node_close();  // after a FIN from the pair
  void websocket_read_ended(boost::system::error_code ec);
  void abort(End why);
  void direction_done();
  void begin_write(std::size_t direction, Clock::duration allowance);
  void end_write(std::size_t direction) { write_deadline_[direction] = Clock::time_point::max(); }
  void arm_watchdog();
  void on_watchdog();
  void hold(std::int64_t delta);

  Stream ws_;
  tcp::socket pair_;
  Options options_;
  Metrics* metrics_;
  GaugeHold open_;  // metrics_->websocket_connections while the WebSocket is open
  Clock& clock_;
  RelayTimer watchdog_;
  std::array<Clock::time_point, 2> write_deadline_{Clock::time_point::max(),
                                                   Clock::time_point::max()};
  Clock::time_point watchdog_at_ = Clock::time_point::max();
  std::int64_t held_ = 0;          // bytes read and not yet written, both directions
  bool websocket_closed_ = false;  // no more bytes can reach the node
  bool pair_ended_ = false;        // EOF from the pair: nothing more comes for the node
  RelayTimer linger_;              // after that EOF: the node's time to close (close_linger)
  bool aborted_ = false;
  End end_ = End::normal;
  int running_ = 0;
  std::function<void(End)> on_end_;
};

// "normal", "text_message", ... for logs.
const char* to_string(WebSocketBridge::End end);

}  // namespace strelay
