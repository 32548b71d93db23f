// The encrypted transport (sans-io), after the handshake's Split():
//
//   frame      = length (2 bytes, big-endian) || ciphertext            (17 <= length <= 65535)
//   ciphertext = ChaChaPoly(k, n, ad = empty, plaintext) || tag (16 bytes)
//   plaintext  = kind (1 byte, FrameKind) || body                      (body <= 65518 bytes)
//
// n is an implicit 64-bit counter per direction (0, 1, 2, ... in strict order), so a swapped,
// duplicated, dropped or injected frame fails to authenticate. Bodies by kind:
//   control, data: any length;  close: CloseReason (1 byte) || UTF-8 detail (<= 200 bytes);
//   ping, pong: an 8-byte token.  Any other kind is a protocol error.
//
// Failure is terminal: once open() fails (bad tag, bad length, unknown kind, malformed body)
// every later open() returns the same error and seal() accepts only a close, so the caller can
// say why before it drops the connection. A failed decrypt never advances the receive counter
// (CipherState guarantees that); the channel ends anyway. After a close is sealed nothing more
// is sealed; after a close is opened nothing more is opened. At n = 2^64-1 (reserved by Noise)
// seal() returns errc::nonce_exhausted: the channel must be re-established.
//
// Neither seal() nor open() allocates: seal() writes into the caller's buffer (or its vector,
// resized), open() decrypts in place and returns a view into the caller's frame buffer.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <system_error>
#include <vector>

#include "common/keepalive.hpp"  // PingToken; Keepalive for the transport's users
#include "common/noise.hpp"
#include "common/protocol.hpp"

namespace strelay {

// One opened frame; body and detail view the buffer that was passed to open().
struct Opened {
  FrameKind kind = FrameKind::data;
  std::span<const std::uint8_t> body;
  CloseReason close_reason = CloseReason::normal;  // kind == close only
  std::string_view close_detail;                   // kind == close only; valid UTF-8
};

// True for a well-formed, shortest-form UTF-8 string without surrogates (RFC 3629).
bool is_valid_utf8(std::span<const std::uint8_t> bytes);

class Transport {
 public:
  // send encrypts what this side sends; recv decrypts what it receives (from Split()).
  Transport(CipherState send, CipherState recv);
  Transport(Transport&&) noexcept = default;
  Transport& operator=(Transport&&) noexcept = default;
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  // Bytes on the wire for a body of n bytes: prefix, kind, body, tag.
  static constexpr std::size_t sealed_bytes(std::size_t body) {
    return length_prefix_bytes + frame_kind_bytes + body + aead_tag_bytes;
  }
  // Where to put a body of n bytes inside a sealed_bytes(n) buffer to seal it without a copy
  // (seal() sees body.data() == slot.data() and encrypts in place).
  static std::span<std::uint8_t> body_slot(std::span<std::uint8_t> frame, std::size_t n) {
    return frame.subspan(length_prefix_bytes + frame_kind_bytes, n);
  }

  // Writes the whole frame (prefix included) to out[0, sealed_bytes(body.size())).
  // errc::frame_too_large if body > 65518 (nothing sealed, counter unchanged),
  // errc::nonce_exhausted at n = 2^64-1, errc::channel_closed after a close was sealed,
  // errc::protocol_error for a body its kind does not allow (see above), the sticky receive
  // error for anything but a close once open() has failed, std::errc::no_buffer_space if out
  // is smaller than sealed_bytes().
  // body must not overlap out, except exactly at body_slot().
  std::error_code seal(FrameKind kind, std::span<const std::uint8_t> body,
                       std::span<std::uint8_t> out);
  // The same into a vector, resized to the frame (no allocation once it has the capacity);
  // cleared on error.
  std::error_code seal(FrameKind kind, std::span<const std::uint8_t> body,
                       std::vector<std::uint8_t>& out);
  // A close: reason (never `aborted`, which is local only) and a detail that is cut at a
  // character boundary to 200 bytes, or dropped if it is not UTF-8, so a close always goes out.
  std::error_code seal_close(CloseReason reason, std::string_view detail,
                             std::vector<std::uint8_t>& out);

  // Opens one frame body (the ciphertext, without its prefix) in place. On success `out`
  // views `frame`. Errors, all terminal: errc::protocol_error (length < 17, unknown kind,
  // malformed close/ping/pong body, anything after a close), errc::frame_too_large (> 65535),
  // errc::decrypt_failed (bad tag: tampered, swapped, duplicated or dropped frames),
  // errc::nonce_exhausted (receive counter at 2^64-1).
  std::error_code open(std::span<std::uint8_t> frame, Opened& out);

  // The sticky receive error, or none.
  std::error_code failure() const { return failure_; }
  bool peer_closed() const { return peer_closed_; }
  bool close_sent() const { return close_sent_; }
  std::uint64_t send_nonce() const { return send_.nonce(); }
  std::uint64_t recv_nonce() const { return recv_.nonce(); }
  // Test hook: start the send counter near its end (nonce-exhaustion tests).
  void set_send_nonce_for_testing(std::uint64_t n) { send_.set_nonce_for_testing(n); }

 private:
  std::error_code fail(std::error_code error);
  std::error_code parse_body(std::span<const std::uint8_t> plaintext, Opened& out);

  CipherState send_;
  CipherState recv_;
  std::error_code failure_;
  bool peer_closed_ = false;
  bool close_sent_ = false;
};

}  // namespace strelay
