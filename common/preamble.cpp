#include "common/preamble.hpp"

#include <algorithm>

#include "common/errors.hpp"

namespace strelay {

static_assert(current_preamble.size() == preamble_bytes);
// A relay's preamble reply must be told apart from msg2's length prefix (see preamble.hpp).
static_assert(((preamble_magic[0] << 8) | preamble_magic[1]) != handshake_msg2_bytes);

std::error_code PreambleResult::error() const {
  switch (status) {
    case PreambleStatus::ok: return {};
    case PreambleStatus::bad_magic: return errc::bad_magic;
    case PreambleStatus::unsupported_version: return errc::unsupported_version;
  }
  return errc::bad_magic;
}

PreambleResult parse_preamble(std::span<const std::uint8_t, preamble_bytes> bytes) {
  if (!std::equal(preamble_magic.begin(), preamble_magic.end(), bytes.begin())) {
    return {PreambleStatus::bad_magic, 0};
  }
  const std::uint8_t version = bytes[preamble_magic.size()];
  if (version != protocol_version) return {PreambleStatus::unsupported_version, version};
  return {PreambleStatus::ok, version};
}

PreambleReply relay_reply_to(const PreambleResult& result) {
  switch (result.status) {
    case PreambleStatus::ok: return PreambleReply::proceed;
    case PreambleStatus::unsupported_version: return PreambleReply::send_preamble_and_close;
    case PreambleStatus::bad_magic: return PreambleReply::close_silently;
  }
  return PreambleReply::close_silently;
}

namespace {

// `first` agrees with `signature` on every byte both have, and has at least two.
bool looks_like(std::span<const std::uint8_t> first, std::span<const std::uint8_t> signature) {
  const auto n = std::min(first.size(), signature.size());
  return n >= 2 && std::equal(first.begin(), first.begin() + static_cast<std::ptrdiff_t>(n),
                              signature.begin());
}

}  // namespace

std::error_code classify_foreign_reply(std::span<const std::uint8_t> first) {
  static constexpr std::array<std::uint8_t, 5> http{'H', 'T', 'T', 'P', '/'};
  static constexpr std::array<std::uint8_t, 4> ssh{'S', 'S', 'H', '-'};
  static constexpr std::array<std::uint8_t, 2> tls_alert{0x15, 0x03};
  static constexpr std::array<std::uint8_t, 2> tls_handshake{0x16, 0x03};
  if (looks_like(first, http)) return errc::not_a_relay_http;
  if (looks_like(first, ssh)) return errc::not_a_relay_ssh;
  if (looks_like(first, tls_alert) || looks_like(first, tls_handshake)) {
    return errc::not_a_relay_tls;
  }
  return errc::not_a_relay;
}

}  // namespace strelay
