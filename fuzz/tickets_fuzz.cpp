// libFuzzer target for the relay-ticket and friend-ticket parsers (common/tickets), and the
// file-kind detection stmgr runs before them. The input is a would-be ticket file's text.
// Seeds: fuzz/corpus/tickets (the vectors of tests/vectors/offset-files.json, among them the
// three relay tickets the Offset mobile app ships, and friend tickets built from them).
//
// Checks:
//  - parsing never throws, crashes or reads out of bounds (the sanitizers watch); a refusal
//    comes with a one-line message that starts with the source's name;
//  - whatever parses is a regular value that survives its own file format: formatting it and
//    parsing the result gives an equal ticket, and formatting is a fixed point (the bytes we
//    write are the bytes we would write again, as Offset's files are);
//  - file-kind detection agrees with the parsers: a parsed relay ticket is detected as one,
//    a parsed friend ticket as one.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "common/keys.hpp"
#include "common/tickets.hpp"

using namespace strelay;

namespace {

constexpr std::string_view source = "fuzz.ticket";

void check(bool condition) {
  if (!condition) std::abort();
}

void check_refusal(const std::string& error) {
  check(error.starts_with(std::string(source) + ": "));
  check(error.find('\n') == std::string::npos);
}

void check_kind(std::string_view text, FileKind expected) {
  std::string error;
  const auto kind = try_detect_file_kind(text, source, error);
  check(kind.has_value() && *kind == expected);
}

void fuzz_relay(std::string_view text) {
  std::string error;
  const auto ticket = try_parse_relay_ticket(text, source, error);
  if (!ticket) {
    check_refusal(error);
    return;
  }
  check(ticket->public_key.is_valid_point());
  const std::string formatted = format_relay_ticket(*ticket);
  std::string again_error;
  const auto again = try_parse_relay_ticket(formatted, source, again_error);
  check(again.has_value() && *again == *ticket);
  check(format_relay_ticket(*again) == formatted);
  check_kind(text, FileKind::relay_ticket);
}

void fuzz_friend(std::string_view text) {
  std::string error;
  const auto ticket = try_parse_friend_ticket(text, source, error);
  if (!ticket) {
    check_refusal(error);
    return;
  }
  check(!ticket->relays.empty());
  const std::string formatted = format_friend_ticket(*ticket);
  std::string again_error;
  const auto again = try_parse_friend_ticket(formatted, source, again_error);
  check(again.has_value() && *again == *ticket);
  check(format_friend_ticket(*again) == formatted);
  check_kind(text, FileKind::friend_ticket);
  // Each of its relays is a relay ticket on its own.
  for (const auto& relay : ticket->relays) {
    std::string relay_error;
    const auto alone = try_parse_relay_ticket(format_relay_ticket(relay), source, relay_error);
    check(alone.has_value() && *alone == relay);
  }
}

void fuzz_public_key(std::string_view text) {
  std::string error;
  const auto key = try_parse_public_key(text, error);
  if (!key) {
    check(!error.empty() && error.find('\n') == std::string::npos);
    return;
  }
  check(key->is_valid_point());
  check(key->to_base64url() == text);  // one spelling per key: no padding, no other alphabet
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const bool initialised = (init_crypto(), true);
  (void)initialised;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  fuzz_relay(text);
  fuzz_friend(text);
  if (size <= 64) fuzz_public_key(text);
  std::string error;
  if (!try_detect_file_kind(text, source, error)) check_refusal(error);
  return 0;
}
