// The secure channel over TCP: a thin Asio (C++20 coroutine) driver that runs the sans-io
// preamble, handshake and transport (common/preamble, handshake, transport) on a socket.
//
// Time: every wait takes an ABSOLUTE deadline (steady_clock), which the caller derives from
// protocol.hpp; a peer dripping one byte at a time does not push it back. While a frame is half
// read, its rest must also arrive within frame_time_limit() of its first byte (slowloris on
// frame bodies); that cut is terminal. Expected outcomes come back as std::error_code, never as
// exceptions: errc::timeout (handshake_timeout during a handshake), errc::aborted (EOF or reset
// without an authenticated close), errc::channel_closed (an authenticated close, with reason).
//
// Reads never go past the end of the frame being read (header, then exactly the announced body,
// through FrameDecoder::prepare()), so after any receive() the socket can be handed to the
// relay's splice pipe by release_socket() with no byte of the next protocol left behind.
//
// Memory per idle channel: the socket, the keys (two CipherStates), a 2-byte header buffer and
// at most idle_buffer_bytes per direction. A frame buffer grows with the bytes that arrive
// (FrameDecoder); a receive() that finds nothing waiting frees buffers larger than
// idle_buffer_bytes, so a burst of large frames does not stay resident on an idle connection.
//
// Concurrency: one receive() and one send()/send_close() may be in flight at a time (a reader
// and a writer coroutine), on one executor (the channel is not thread-safe). The reader owns
// decoder_ and recv_error_; the writer owns send_buffer_ and send_error_; transport_ is shared,
// which is safe because each direction touches only its own CipherState. A Channel must not be
// moved while an operation is in flight.
#pragma once

#include <array>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "common/frame.hpp"
#include "common/handshake.hpp"
#include "common/keys.hpp"
#include "common/protocol.hpp"
#include "common/transport.hpp"

namespace strelay {

using tcp = boost::asio::ip::tcp;
using Deadline = std::chrono::steady_clock::time_point;

// One received frame. body views the channel's receive buffer: valid until the next receive()
// or release_socket() on that channel.
struct Message {
  FrameKind kind = FrameKind::data;
  std::span<const std::uint8_t> body;
  // For a close: the peer's reason and detail. `aborted` after an EOF without a close.
  CloseReason close_reason = CloseReason::normal;
  std::string close_detail;
};

class Channel {
 public:
  // Takes the socket and the keys of a finished handshake (connect_handshake set TCP_NODELAY;
  // accept_handshake's callers have it from their listening socket or their own connect).
  Channel(tcp::socket socket, HandshakeResult keys);
  Channel(Channel&&) noexcept = default;
  Channel& operator=(Channel&&) noexcept = default;
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  const PublicKey& peer() const { return peer_; }
  const std::array<std::uint8_t, hash_bytes>& session_id() const { return session_id_; }
  tcp::socket& socket() { return socket_; }
  const Transport& transport() const { return transport_; }

  // Seals one frame and writes it. Errors: those of Transport::seal (nothing written), then
  // errc::timeout or errc::aborted (peer gone); after a write error the send side is over.
  boost::asio::awaitable<std::error_code> send(FrameKind kind, std::span<const std::uint8_t> body,
                                               Deadline deadline);
  // An authenticated close (see Transport::seal_close); the last thing sent.
  boost::asio::awaitable<std::error_code> send_close(CloseReason reason, std::string_view detail,
                                                     Deadline deadline);

  // The next frame, of any kind. ok for control/data/ping/pong; errc::channel_closed for a
  // close (out.close_reason, out.close_detail); errc::aborted for EOF or reset without a close
  // (also in the middle of a frame: a truncation is never a completion); the transport's
  // terminal errors (decrypt_failed, protocol_error, ...). errc::timeout when the deadline
  // passed: resumable (nothing is lost) unless it was the per-frame limit, which is terminal.
  boost::asio::awaitable<std::error_code> receive(Message& out, Deadline deadline);

  // Gives the socket away (the relay's tunnel after Connected). Only between frames, with no
  // operation in flight: then every byte after the last frame received is still in the socket.
  // Throws std::logic_error in the middle of a frame (a driver bug).
  tcp::socket release_socket();
  // Shuts down and closes the socket, ignoring errors (the peer then sees EOF or a reset).
  void close();

  void set_frame_time_limit(std::chrono::steady_clock::duration limit) { frame_limit_ = limit; }
  std::chrono::steady_clock::duration frame_time_limit() const { return frame_limit_; }
  // Bytes currently held in frame buffers (for memory accounting and tests).
  std::size_t buffer_capacity() const { return decoder_.capacity() + send_buffer_.capacity(); }

  // True once part of a frame has been read: then receive() comes next, not a readability wait.
  bool mid_frame() const { return decoder_.mid_frame(); }
  // Frees a frame buffer larger than idle_buffer_bytes unless bytes are already waiting.
  // receive() does this itself; a driver that waits for readability between frames (so that
  // an idle connection holds no receive coroutine) calls it before the wait.
  void release_idle_memory();

 private:
  boost::asio::awaitable<std::error_code> write_sealed(Deadline deadline);

  tcp::socket socket_;
  Transport transport_;
  PublicKey peer_;
  std::array<std::uint8_t, hash_bytes> session_id_{};
  std::chrono::steady_clock::duration frame_limit_ = frame_deadline;
  // Reader side.
  FrameDecoder decoder_;
  Deadline frame_started_{};  // when the first byte of the frame being read arrived
  std::error_code recv_error_;
  // Writer side.
  std::vector<std::uint8_t> send_buffer_;
  std::error_code send_error_;
  bool sending_ = false;
};

// The node's side: sends the preamble and msg1, checks msg2 against `expected_responder` (the
// relay key from the ticket on a hop, or the listener's key end to end; `layer` says which, and
// the two never authenticate each other) and stops there on a mismatch
// (errc::relay_identity_mismatch: msg3, and so our identity, is never sent), then sends msg3
// carrying `first_payload` (the first request). A relay of another version answers with its
// preamble: errc::unsupported_version. Other errors: handshake_failed, handshake_timeout,
// aborted, frame_too_large (first_payload too long). On success `out` holds the channel and owns
// the socket; on failure the socket stays with the caller, who closes it.
boost::asio::awaitable<std::error_code> connect_handshake(
    tcp::socket& socket, const Identity& self, const PublicKey& expected_responder,
    HandshakeLayer layer, std::span<const std::uint8_t> first_payload, Deadline deadline,
    std::optional<Channel>& out);

// The responder's side (a relay on a hop, the listener end to end, as `layer` says): reads the
// preamble (another version: answers with ours, shuts down the send side, discards what the
// client still sends until it closes or preamble_reply_linger passes, and returns
// errc::unsupported_version; not strelay: errc::bad_magic, having said nothing),
// msg1, sends msg2, reads msg3, whose payload goes to first_payload. The peer's identity is
// out->peer(). Every read checks the announced length against the message's size before taking
// its body. On failure the caller closes the socket without a word (no detail before
// authentication). `reached`, when given, is set to the step under way when it returned (for
// logs: a msg1 that fails its checks is a scanner or a bug, a msg3 that does is usually a node
// with the wrong relay key).
enum class AcceptStep : std::uint8_t { preamble, msg1, msg2, msg3, done };
const char* to_string(AcceptStep step);
boost::asio::awaitable<std::error_code> accept_handshake(tcp::socket& socket, const Identity& self,
                                                         HandshakeLayer layer, Deadline deadline,
                                                         std::optional<Channel>& out,
                                                         std::vector<std::uint8_t>& first_payload,
                                                         AcceptStep* reached = nullptr);

}  // namespace strelay
