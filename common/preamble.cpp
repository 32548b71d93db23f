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

}  // namespace strelay
