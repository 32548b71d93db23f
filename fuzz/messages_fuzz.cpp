// libFuzzer target for the control-message boundary (common/messages). The input is one
// would-be control message, decoded under both schemas (node -> relay and relay -> node).
// Most mutations break the segment table, which the decoder refuses first; so each input
// whose size is a multiple of 8 is also decoded with its table rewritten to "one segment of
// the rest", which sends the mutations on into the pointers. Seeds: fuzz/corpus/messages.
//
// Checks:
//  - decoding never throws, crashes or reads out of bounds (the sanitizers watch), and every
//    failure is errc::protocol_error;
//  - whatever decodes has only valid keys (the decoder checked them), and re-encodes to a
//    message of at most 4 KiB that decodes to the same value (the value types lose nothing
//    the protocol needs).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <type_traits>
#include <variant>
#include <vector>

#include "common/errors.hpp"
#include "common/keys.hpp"
#include "common/messages.hpp"

using namespace strelay;

namespace {

void check(bool condition) {
  if (!condition) std::abort();
}

template <class Message, class Decode>
void round_trip(std::span<const std::uint8_t> bytes, Decode decode) {
  const auto decoded = decode(bytes);
  if (!decoded) {
    check(decoded.error() == errc::protocol_error);
    return;
  }
  std::visit(
      [](const auto& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (requires { m.target; }) check(m.target.is_valid_point());
        // A rejectConnection's key is only compared, never used: 32 bytes (protocol.md 4.2).
        if constexpr (requires { m.from; } && !std::is_same_v<T, RejectConnection>)
          check(m.from.is_valid_point());
        if constexpr (requires { m.peer; }) check(m.peer.is_valid_point());
      },
      *decoded);
  const auto again = encode(Message(*decoded));
  check(again.size() <= max_control_message_bytes);
  const auto redecoded = decode(again);
  check(redecoded.has_value() && *redecoded == *decoded);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const bool initialised = (init_crypto(), true);
  (void)initialised;
  const std::span<const std::uint8_t> bytes(data, size);
  round_trip<NodeMessage>(bytes, try_decode_node_message);
  round_trip<RelayMessage>(bytes, try_decode_relay_message);
  if (size >= 8 && size % 8 == 0 && size <= max_control_message_bytes) {
    std::vector<std::uint8_t> fixed(bytes.begin(), bytes.end());
    const auto words = static_cast<std::uint32_t>(size / 8 - 1);
    for (int i = 0; i < 4; ++i) {
      fixed[static_cast<std::size_t>(i)] = 0;
      fixed[static_cast<std::size_t>(4 + i)] = static_cast<std::uint8_t>(words >> (8 * i));
    }
    round_trip<NodeMessage>(fixed, try_decode_node_message);
    round_trip<RelayMessage>(fixed, try_decode_relay_message);
  }
  return 0;
}
