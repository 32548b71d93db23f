// The end-to-end stream's rules (sans-io): what the frames mean, what is sent when, and how a
// stream ends. The driver (common/stream) feeds it the frames that authenticated, how receiving
// ended, the results of its sends, the application's requests and the time; it asks what to send
// next and what the application's calls return. No socket, no timer, no coroutine here.
//
// Frames, end to end (docs/node-library.md, "Stream framing"):
//   data, non-empty body   application bytes, in order, into the receive buffer
//   data, empty body       the peer's end of data (half-close); a data frame after it is a
//                          protocol error
//   ping / pong            keepalive and round-trip time (common/keepalive: every ping is
//                          answered, at most max_pongs_due wait, one more is a protocol error)
//   close{reason}          the peer is done in both directions (reported by the channel as
//                          how receiving ended, with the reason)
//   control                never valid end to end: a protocol error
//
// What the writer sends, in order of priority: nothing once the stream must end (then finish());
// a pong, a ping (keepalive); the application's data, one frame body at a time; its end of data.
//
// How it ends (outcome()): a clean end needs the peer's own close{normal} after its end of data
// (or after our close): only then do we know it got our last frames and saw nothing wrong with
// them. Otherwise: the first failure (decrypt_failed, protocol_error, peer_gone, a send error),
// the peer's close reason as a code (to_error_code(reason, CloseOrigin::peer)), channel_closed
// (it closed before its end of data), or aborted (the tunnel ended without a close).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "common/keepalive.hpp"
#include "common/protocol.hpp"

namespace strelay {

struct StreamStats {
  std::uint64_t bytes_sent = 0;      // application bytes handed to the transport
  std::uint64_t bytes_received = 0;  // application bytes handed to read_some()
  std::optional<std::chrono::steady_clock::duration> rtt;  // the last measured round trip
};

struct ReadResult {
  std::error_code error;
  std::size_t bytes = 0;
  // The peer's end of data: no error and nothing read.
  bool eof() const { return !error && bytes == 0; }
};

// A fixed-capacity byte ring: the receive buffer between the reader and the application.
class ByteRing {
 public:
  explicit ByteRing(std::size_t capacity) : bytes_(capacity) {}
  std::size_t size() const { return size_; }
  std::size_t free() const { return bytes_.size() - size_; }
  bool empty() const { return size_ == 0; }
  void push(std::span<const std::uint8_t> in);  // in.size() <= free()
  std::size_t take(std::span<std::uint8_t> out);

 private:
  std::vector<std::uint8_t> bytes_;
  std::size_t head_ = 0;
  std::size_t size_ = 0;
};

struct StreamConfig {
  std::chrono::steady_clock::duration keepalive_interval = strelay::keepalive_interval;
  std::chrono::steady_clock::duration dead_peer_timeout = strelay::dead_peer_timeout;
  // Received bytes held for the application; at least one frame body is always allowed.
  std::size_t receive_buffer_bytes = stream_receive_buffer_bytes;
};

class StreamState {
 public:
  using Clock = std::chrono::steady_clock;
  using TimePoint = Clock::time_point;

  // What the writer does next.
  struct WriterStep {
    enum class Kind { send, wait, finish };
    Kind kind = Kind::wait;
    FrameKind frame = FrameKind::data;   // send
    std::span<const std::uint8_t> body;  // send: valid until on_sent()
    TimePoint until{};                   // wait: the next keepalive check (or an event)
  };
  // How to end, once writer_step() said finish.
  struct Finish {
    bool send_close = false;  // the channel can still carry a close
    CloseReason reason = CloseReason::normal;
    std::string detail;
    bool linger = false;  // wait (the driver's close_linger) for the peer's own end
  };

  // A ping is requested at once, so a round-trip time is known early.
  StreamState(TimePoint now, const StreamConfig& config = {});

  // ---- the reader
  // True while the reader should receive: it has not stopped, and the buffer has room for a
  // whole frame body (or the stream is closing and drops what arrives). False on a full buffer
  // is backpressure: the peer is slowed by TCP and the relay, never dropped.
  bool wants_frame() const;
  struct FrameResult {
    bool keep_reading = true;
    std::optional<Clock::duration> rtt;  // a pong answered our last ping
  };
  // A frame that authenticated (any kind but close).
  FrameResult on_frame(FrameKind kind, std::span<const std::uint8_t> body, TimePoint now);
  // Receiving ended: errc::channel_closed with the peer's reason, errc::aborted (EOF without a
  // close), operation_canceled (our own close of the socket: nothing), or a terminal error.
  void on_receive_end(std::error_code ec, CloseReason reason);

  // ---- the writer
  WriterStep writer_step(TimePoint now);
  // The result of the send writer_step() asked for.
  void on_sent(std::error_code ec);
  // The writer is ending: what to tell the peer. From here on received data is dropped.
  Finish finish();
  // The socket is closed; returns outcome(). Idempotent.
  std::error_code on_terminated();

  // ---- the application (each returns nothing while the caller must wait for a change)
  std::optional<ReadResult> try_read(std::span<std::uint8_t> out);
  // A write of `bytes` (kept by reference until it completes or is cancelled): a value when it
  // is over at once (an error, or nothing to write). Throws std::logic_error for a second writer.
  std::optional<std::error_code> begin_write(std::span<const std::uint8_t> bytes);
  std::optional<std::error_code> write_result() const;
  // The writing coroutine is gone (or done): the writer must not touch its bytes any more.
  void cancel_write();
  // End of data (half-close). Throws std::logic_error during a write.
  std::optional<std::error_code> begin_end_of_data();
  std::optional<std::error_code> end_of_data_result() const;
  // close(): tells the writer to send close{reason} (unless the stream is already ending).
  void request_close(CloseReason reason, std::string_view detail);
  // abort(): the stream fails with errc::aborted unless it already failed.
  void abort();
  void request_ping() { keepalive_.request_ping(); }

  // ---- observers
  std::error_code outcome() const;
  bool terminated() const { return terminated_; }
  const StreamStats& stats() const { return stats_; }
  std::error_code failure() const { return failure_; }

 private:
  void fail(std::error_code error);
  std::error_code send_state_error() const;
  bool buffer_full() const;

  Keepalive keepalive_;
  // Receive side.
  ByteRing rx_;
  bool rx_eof_ = false;       // the peer's end of data arrived
  std::error_code rx_error_;  // the peer closed before its end of data
  bool reading_ = true;       // the reader has not stopped
  bool discarding_ = false;   // finishing: received data is dropped, never waited on
  // Send side.
  std::span<const std::uint8_t> tx_;  // the rest of the write in progress
  bool tx_busy_ = false;
  std::uint64_t tx_generation_ = 0;  // which write tx_ belongs to
  bool eof_requested_ = false;
  bool eof_sent_ = false;
  std::optional<std::pair<CloseReason, std::string>> close_request_;
  // The send in flight: what on_sent() completes.
  enum class Inflight { none, control, data, end_of_data };
  Inflight inflight_ = Inflight::none;
  std::size_t inflight_bytes_ = 0;
  std::uint64_t inflight_generation_ = 0;
  PingToken token_{};  // the body of a ping or pong in flight
  // Both.
  bool peer_closed_ = false;
  CloseReason peer_reason_ = CloseReason::normal;
  std::error_code failure_;  // the first error that ended the stream
  bool send_dead_ = false;   // a send failed or the tunnel broke: nothing more can be written
  bool terminated_ = false;
  StreamStats stats_;
};

}  // namespace strelay
