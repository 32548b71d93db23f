// Framing: every handshake message and every transport frame is
//
//   length (2 bytes, big-endian) || body (length bytes)
//
// This layer only delimits bodies. It reports every length faithfully (0 included) and checks
// it against the caller's [min, max] before it keeps any byte of the body; what a body must
// contain is the business of the layer above (handshake sizes, the transport's 17-byte minimum).
//
// FrameDecoder is sans-io and never consumes a byte past the end of the frame it is decoding:
// feed() returns how many input bytes it took, and prepare() never offers more room than the
// current frame still needs. So a driver that reads exactly into prepare() can stop after any
// frame and hand the socket on (the relay's tunnels become raw pipes after Connected) without a
// single byte of the next protocol stranded in a buffer; no take_unconsumed() is needed.
//
// Memory: the body buffer grows as body bytes arrive (starting at frame_buffer_first_bytes and
// doubling, never past the announced length), so a header that announces 65535 bytes followed by
// silence costs at most frame_buffer_first_bytes, not 64 KiB. A small buffer is kept between
// frames; release_memory() frees it (the channel does so when it goes idle holding a large one).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <system_error>
#include <vector>

#include "common/protocol.hpp"

namespace strelay {

// The 2-byte big-endian prefix for a body of `length` bytes (length <= max_frame_bytes).
std::array<std::uint8_t, length_prefix_bytes> encode_length(std::uint16_t length);

// Appends prefix || body to `out`; errc::frame_too_large (and `out` untouched) if body is
// longer than max_frame_bytes.
std::error_code try_append_frame(std::vector<std::uint8_t>& out,
                                 std::span<const std::uint8_t> body);

class FrameDecoder {
 public:
  enum class State {
    header,    // waiting for (the rest of) the 2-byte length
    body,      // length known and accepted; waiting for body bytes
    complete,  // a whole frame is available in body(); call next() before feeding more
    failed,    // the length was out of bounds; error() says why; nothing more is accepted
  };

  // Bodies shorter than min_body get errc::protocol_error, longer than max_body
  // errc::frame_too_large, both decided from the 2-byte header, before any body byte is kept.
  explicit FrameDecoder(std::size_t max_body = max_frame_bytes, std::size_t min_body = 0);

  // Push interface (tests, fuzzing, in-memory streams): takes bytes from `in` up to the end of
  // the current frame and returns how many it took. Takes nothing when complete or failed.
  std::size_t feed(std::span<const std::uint8_t> in);

  // Pull interface (socket drivers): room for the next bytes, never beyond the current frame's
  // end; then commit(n) for the n bytes written there. Empty when complete or failed.
  // `waiting` is how many bytes the caller knows have already arrived (FIONREAD): the buffer may
  // grow to hold them at once, since they are real bytes and not a claim.
  std::span<std::uint8_t> prepare(std::size_t waiting = 0);
  void commit(std::size_t n);

  State state() const { return state_; }
  bool complete() const { return state_ == State::complete; }
  std::error_code error() const { return error_; }
  // True once any byte of the current frame (header included) has been taken.
  bool mid_frame() const { return header_got_ > 0 && state_ != State::complete; }
  // The announced body length; meaningful from state body on.
  std::size_t announced() const { return announced_; }

  // The completed frame's body, writable so the transport can decrypt it in place.
  std::span<std::uint8_t> body() { return {buffer_.get(), complete() ? announced_ : 0}; }

  // Discards the completed frame and starts on the next one (keeps the buffer).
  void next();
  // Changes the bounds for the next frame (only between frames).
  void set_limits(std::size_t max_body, std::size_t min_body = 0);
  // Frees the body buffer; only between frames (no-op otherwise).
  void release_memory();
  std::size_t capacity() const { return capacity_; }

 private:
  void take_header_byte(std::uint8_t byte);
  // Grows the buffer so that at least `want` more body bytes fit (want >= 1).
  void reserve_body(std::size_t want);

  std::size_t max_body_;
  std::size_t min_body_;
  State state_ = State::header;
  std::error_code error_;
  std::array<std::uint8_t, length_prefix_bytes> header_{};
  std::size_t header_got_ = 0;
  std::size_t announced_ = 0;
  std::size_t body_got_ = 0;
  // Default-initialised storage: a 64 KiB frame is not zero-filled before it is overwritten.
  std::unique_ptr<std::uint8_t[]> buffer_;
  std::size_t capacity_ = 0;
};

}  // namespace strelay
