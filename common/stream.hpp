// The end-to-end stream: what an application reads and writes once two nodes are paired.
//
// After the relay's Connected, a tunnel connection is a raw pipe. The two nodes run the same
// preamble and XK1sig handshake through it (the connector is the initiator and pins the
// listener's key; the listener checks the initiator's key), then exchange transport frames
// (common/transport). What those frames mean end to end, what is sent when, and how a stream
// ends are decided by StreamState (common/stream_state, sans-io, with table and model tests);
// this file is its coroutine driver: it moves frames between the channel and the state, runs
// the waits, and answers the application's calls from the state.
//
// A relay (or anyone on the path) that flips, injects, drops or reorders a byte makes a frame
// fail to authenticate: the stream then ends with errc::decrypt_failed after handing over only
// the bytes of frames that authenticated before it. Corrupt data is never delivered.
//
// Concurrency: a Stream runs one reader and one writer coroutine on the executor of its socket.
// The application calls read_some(), write(), shutdown_send() and close() from that executor,
// at most one read_some() and one write()/shutdown_send() at a time (a reader and a writer, as
// with a socket). The reader owns the channel's receive side, the writer its send side; both
// and the application's calls change the state only through StreamState, and after each change
// wake every waiter, which re-checks its own condition. Pings are answered by the writer, never
// by the reader, so a reader never waits on a blocked writer (two nodes writing at once cannot
// deadlock).
//
// Backpressure: received bytes wait in a buffer of receive_buffer_bytes; when it is full the
// reader stops reading the socket, so the peer is slowed by TCP and the relay, never dropped.
// An application that stops reading for longer than the relay's write-stall limit (30 s) loses
// the stream (the relay ends the tunnel as stalled).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <system_error>

#include "common/channel.hpp"
#include "common/clock.hpp"
#include "common/keys.hpp"
#include "common/protocol.hpp"
#include "common/stream_state.hpp"

namespace strelay {

struct StreamOptions {
  // A ping after this much silence from the peer; the peer is gone after dead_peer_timeout.
  std::chrono::milliseconds keepalive_interval = strelay::keepalive_interval;
  std::chrono::milliseconds dead_peer_timeout = strelay::dead_peer_timeout;
  // A frame that the peer (or the relay) does not take within this ends the stream.
  std::chrono::milliseconds write_stall = write_stall_timeout;
  // How long close() waits for the peer's own close before dropping the socket.
  std::chrono::milliseconds close_linger = stream_close_linger;
  // Received bytes held for the application (at least one frame body is always allowed).
  std::size_t receive_buffer_bytes = stream_receive_buffer_bytes;
  // The time the keepalive runs on (empty: steady_clock); socket deadlines stay on steady_clock.
  SteadyNow clock{};
};

// Called on the stream's executor. on_end is called once, when the stream is over, with the
// outcome that close() returns (no error for a clean end).
struct StreamHooks {
  std::function<void(std::chrono::steady_clock::duration rtt)> on_rtt;
  std::function<void(std::error_code)> on_end;
};

class Stream {
 public:
  // The largest write that goes out as one frame; larger writes are split.
  static constexpr std::size_t max_frame_data = max_frame_body_bytes;

  // Takes an established end-to-end channel and starts its reader and writer. The stream
  // sends one ping at once, so a round-trip time is known early.
  explicit Stream(Channel channel, StreamOptions options = {}, StreamHooks hooks = {});
  Stream(Stream&&) noexcept;
  Stream& operator=(Stream&&) noexcept;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  // Aborts (no close message) if the stream is still open: call close() to end it politely.
  ~Stream();

  const PublicKey& peer() const;

  // Up to out.size() bytes. bytes > 0; or eof() once the peer has sent its end of data; or an
  // error: decrypt_failed or protocol_error (integrity; nothing after the failure is ever
  // delivered), channel_closed (the peer closed before its end of data, or we closed),
  // aborted (the tunnel ended without a close), peer_gone (no keepalive answer in time), or
  // the peer's close reason as a code (not_a_friend, timeout, ...; to_error_code with
  // CloseOrigin::peer).
  boost::asio::awaitable<ReadResult> read_some(std::span<std::uint8_t> out);
  // Writes all of `bytes` (in frames of at most max_frame_data); returns when the last frame is
  // on its way. channel_closed once this side sent its end of data or closed, or the peer
  // closed; otherwise the error that ended the stream.
  boost::asio::awaitable<std::error_code> write(std::span<const std::uint8_t> bytes);
  // Sends the end of data (half-close); reading goes on until the peer's end of data.
  boost::asio::awaitable<std::error_code> shutdown_send();
  // Sends close{reason}, waits (close_linger at most) for the peer's close, closes the socket.
  // Returns the stream's outcome: no error when the peer answered with its own close{normal}
  // (after its end of data, or after our close); else why not: the error that ended the
  // stream, the peer's close reason as a code (protocol_error when it found our data
  // tampered with), channel_closed (it closed before its end of data), or aborted (no close
  // came back within close_linger).
  boost::asio::awaitable<std::error_code> close(CloseReason reason = CloseReason::normal,
                                                std::string_view detail = {});
  // Ends at once: the socket is closed, the peer sees an abort.
  void abort();
  // Sends a ping now (the RTT arrives through StreamHooks::on_rtt and stats()).
  void ping();
  // The injected clock (StreamOptions::clock) moved: re-read it now rather than at the next
  // wake-up (tests that move a clock call this, as the relay's tests call recheck_timers()).
  void clock_changed();

  StreamStats stats() const;
  // True once the stream is over (closed, aborted or failed) and its socket is closed.
  bool finished() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// The end-to-end handshakes, on a tunnel's raw socket (after Connected and release_socket()).
//
// Connector: the initiator, pinned to `listener`. A responder that does not hold that key ends
// the handshake at msg2 with errc::peer_identity_mismatch, before our identity is sent.
boost::asio::awaitable<std::error_code> connect_stream_handshake(tcp::socket& socket,
                                                                 const Identity& self,
                                                                 const PublicKey& listener,
                                                                 Deadline deadline,
                                                                 std::optional<Channel>& out);

// Listener: the responder. The initiator must be `announced` (the key of IncomingConnection
// and Connected: errc::peer_identity_mismatch otherwise, a relay lying about who connects)
// and a friend (errc::not_a_friend); msg3 must carry no payload (errc::protocol_error). On these
// failures the initiator gets an authenticated close saying why.
boost::asio::awaitable<std::error_code> accept_stream_handshake(
    tcp::socket& socket, const Identity& self, const PublicKey& announced,
    const std::function<bool(const PublicKey&)>& is_friend, Deadline deadline,
    std::optional<Channel>& out);

// The listener's checks of a finished end-to-end handshake (accept_stream_handshake's, also
// after an early one, common/early_e2e): on success `out` takes the channel; on a refusal the
// initiator gets the authenticated close saying why and the channel is closed.
boost::asio::awaitable<std::error_code> admit_initiator(
    std::optional<Channel>& channel, std::span<const std::uint8_t> payload,
    const PublicKey& announced, const std::function<bool(const PublicKey&)>& is_friend,
    Deadline deadline, std::optional<Channel>& out);

}  // namespace strelay
