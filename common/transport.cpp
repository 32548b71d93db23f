#include "common/transport.hpp"

#include <algorithm>
#include <cstring>

#include "common/errors.hpp"
#include "common/frame.hpp"

namespace strelay {

namespace {

bool is_known_kind(std::uint8_t kind) {
  return kind >= static_cast<std::uint8_t>(FrameKind::control) &&
         kind <= static_cast<std::uint8_t>(FrameKind::pong);
}

// Reasons a peer may send; `aborted` is what a reader reports locally, never a wire value.
bool is_sendable_reason(std::uint8_t reason) {
  return reason <= static_cast<std::uint8_t>(CloseReason::internal);
}

std::string_view as_chars(std::span<const std::uint8_t> bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

// The body rules of each kind, shared by seal() and open() so we never send what we refuse.
std::error_code check_body(FrameKind kind, std::span<const std::uint8_t> body) {
  switch (kind) {
    case FrameKind::control:
    case FrameKind::data: return {};
    case FrameKind::close:
      if (body.empty() || body.size() > 1 + max_close_detail_bytes) return errc::protocol_error;
      if (!is_sendable_reason(body[0])) return errc::protocol_error;
      if (!is_valid_utf8(body.subspan(1))) return errc::protocol_error;
      return {};
    case FrameKind::ping:
    case FrameKind::pong:
      return body.size() == ping_token_bytes ? std::error_code{} : errc::protocol_error;
  }
  return errc::protocol_error;
}

// Length of the longest prefix of `text` that is at most `limit` bytes and ends on a
// character boundary (text is valid UTF-8).
std::size_t utf8_prefix(std::string_view text, std::size_t limit) {
  if (text.size() <= limit) return text.size();
  std::size_t end = limit;
  while (end > 0 && (static_cast<std::uint8_t>(text[end]) & 0xc0) == 0x80) --end;
  return end;
}

}  // namespace

bool is_valid_utf8(std::span<const std::uint8_t> bytes) {
  std::size_t i = 0;
  while (i < bytes.size()) {
    const std::uint8_t lead = bytes[i];
    std::size_t extra = 0;
    std::uint32_t min = 0;
    std::uint32_t cp = 0;
    if (lead < 0x80) {
      ++i;
      continue;
    } else if ((lead & 0xe0) == 0xc0) {
      extra = 1, min = 0x80, cp = lead & 0x1fu;
    } else if ((lead & 0xf0) == 0xe0) {
      extra = 2, min = 0x800, cp = lead & 0x0fu;
    } else if ((lead & 0xf8) == 0xf0) {
      extra = 3, min = 0x10000, cp = lead & 0x07u;
    } else {
      return false;  // a continuation byte or 0xf8..0xff as a lead
    }
    if (bytes.size() - i <= extra) return false;
    for (std::size_t k = 1; k <= extra; ++k) {
      if ((bytes[i + k] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (bytes[i + k] & 0x3fu);
    }
    // Overlong forms, UTF-16 surrogates and values past U+10FFFF are not UTF-8.
    if (cp < min || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) return false;
    i += extra + 1;
  }
  return true;
}

Transport::Transport(CipherState send, CipherState recv)
    : send_(std::move(send)), recv_(std::move(recv)) {}

std::error_code Transport::seal(FrameKind kind, std::span<const std::uint8_t> body,
                                std::span<std::uint8_t> out) {
  if (close_sent_) return errc::channel_closed;
  if (failure_ && kind != FrameKind::close) return failure_;
  if (body.size() > max_frame_body_bytes) return errc::frame_too_large;
  if (auto error = check_body(kind, body)) return error;
  if (send_.nonce_exhausted()) return errc::nonce_exhausted;
  const std::size_t total = sealed_bytes(body.size());
  if (out.size() < total) return std::make_error_code(std::errc::no_buffer_space);

  // plaintext = kind || body, encrypted in place right after the length prefix.
  auto sealed = out.subspan(length_prefix_bytes, total - length_prefix_bytes);
  auto plaintext = sealed.first(frame_kind_bytes + body.size());
  plaintext[0] = static_cast<std::uint8_t>(kind);
  auto slot = plaintext.subspan(frame_kind_bytes);
  if (!body.empty() && body.data() != slot.data()) {
    std::memmove(slot.data(), body.data(), body.size());
  }
  if (!send_.encrypt_with_ad({}, plaintext, sealed)) {
    return std::make_error_code(std::errc::invalid_argument);  // unreachable: checked above
  }
  const auto prefix = encode_length(static_cast<std::uint16_t>(sealed.size()));
  std::memcpy(out.data(), prefix.data(), prefix.size());
  if (kind == FrameKind::close) close_sent_ = true;
  return {};
}

std::error_code Transport::seal(FrameKind kind, std::span<const std::uint8_t> body,
                                std::vector<std::uint8_t>& out) {
  if (body.size() > max_frame_body_bytes) {
    out.clear();
    return errc::frame_too_large;
  }
  out.resize(sealed_bytes(body.size()));
  auto error = seal(kind, body, std::span<std::uint8_t>(out));
  if (error) out.clear();
  return error;
}

std::error_code Transport::seal_close(CloseReason reason, std::string_view detail,
                                      std::vector<std::uint8_t>& out) {
  if (!is_sendable_reason(static_cast<std::uint8_t>(reason))) return errc::protocol_error;
  std::array<std::uint8_t, 1 + max_close_detail_bytes> body{};
  body[0] = static_cast<std::uint8_t>(reason);
  const std::span<const std::uint8_t> detail_bytes(
      reinterpret_cast<const std::uint8_t*>(detail.data()), detail.size());
  std::size_t detail_size = 0;
  if (is_valid_utf8(detail_bytes)) {
    detail_size = utf8_prefix(detail, max_close_detail_bytes);
    // An empty detail may have a null data(): memcpy from null is undefined even for 0 bytes.
    if (detail_size > 0) std::memcpy(body.data() + 1, detail.data(), detail_size);
  }
  return seal(FrameKind::close, std::span(body).first(1 + detail_size), out);
}

std::error_code Transport::fail(std::error_code error) {
  failure_ = error;
  return error;
}

std::error_code Transport::parse_body(std::span<const std::uint8_t> plaintext, Opened& out) {
  // plaintext is at least the kind byte: open() refuses shorter ciphertexts.
  if (!is_known_kind(plaintext[0])) return errc::protocol_error;
  const auto kind = static_cast<FrameKind>(plaintext[0]);
  const auto body = plaintext.subspan(frame_kind_bytes);
  if (auto error = check_body(kind, body)) return error;
  out = Opened{kind, body, CloseReason::normal, {}};
  if (kind == FrameKind::close) {
    out.close_reason = static_cast<CloseReason>(body[0]);
    out.close_detail = as_chars(body.subspan(1));
  }
  return {};
}

std::error_code Transport::open(std::span<std::uint8_t> frame, Opened& out) {
  if (failure_) return failure_;
  // Nothing may follow a close: whatever comes is not part of this session.
  if (peer_closed_) return fail(errc::protocol_error);
  if (frame.size() > max_frame_bytes) return fail(errc::frame_too_large);
  // A 16-byte ciphertext would be an empty plaintext, without even a kind: refused from the
  // length alone, without spending a nonce on it.
  if (frame.size() < min_transport_frame_bytes) return fail(errc::protocol_error);
  if (recv_.nonce_exhausted()) return fail(errc::nonce_exhausted);
  auto plaintext = frame.first(frame.size() - aead_tag_bytes);
  // CipherState leaves n unchanged on failure; the channel ends regardless.
  if (!recv_.decrypt_with_ad({}, frame, plaintext)) return fail(errc::decrypt_failed);
  if (auto error = parse_body(plaintext, out)) return fail(error);
  if (out.kind == FrameKind::close) peer_closed_ = true;
  return {};
}

}  // namespace strelay
