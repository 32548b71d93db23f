// libFuzzer target for the identity-file parser (common/identity_file). The input is a would-be
// identity file's text. Seeds: fuzz/corpus/identity_file (the identities and invalid identities
// of tests/vectors/offset-files.json, with the 85-byte PKCS#8 file of old Offset versions).
//
// Checks:
//  - parsing never throws, crashes or reads out of bounds (the sanitizers watch);
//  - a refusal is one line that starts with the source's name and does not depend on the
//    "privateKey" value the file holds (the secret must not reach logs or terminals): the same
//    file with the value's base64url characters blanked is refused with the same words;
//  - whatever parses round-trips: the formatted file parses to the same seed and public key,
//    and formatting is a fixed point (Offset's exact bytes).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "common/identity_file.hpp"
#include "common/keys.hpp"

using namespace strelay;

namespace {

constexpr std::string_view source = "fuzz.ident";

void check(bool condition) {
  if (!condition) std::abort();
}

// The "privateKey" string of `text` when it is a JSON object that has one, else "".
std::string private_key_value(std::string_view text) {
  const auto json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!json.is_object()) return {};
  const auto field = json.find("privateKey");
  if (field == json.end() || !field->is_string()) return {};
  return field->get<std::string>();
}

bool is_base64url(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

// `text` with the "privateKey" value `secret` blanked: each base64url character becomes 'A',
// except the last character, whose low bits decide whether the encoding is canonical. Every
// other byte (a character outside the alphabet, the length) stays, so the file is refused for
// the same reason. Empty when the value is not written out once, unescaped, after its key.
std::string with_secret_blanked(std::string_view text, const std::string& secret) {
  const std::string token = '"' + secret + '"';
  const std::size_t at = text.find(token);
  if (at == std::string_view::npos || text.find(token, at + 1) != std::string_view::npos) return {};
  // What comes before the value, without the JSON white space that ends it.
  const auto trimmed = [](std::string_view head) {
    while (!head.empty() && std::string_view(" \t\r\n").find(head.back()) != std::string_view::npos)
      head.remove_suffix(1);
    return head;
  };
  std::string_view head = trimmed(text.substr(0, at));
  if (!head.ends_with(':')) return {};
  head.remove_suffix(1);
  if (!trimmed(head).ends_with("\"privateKey\"")) return {};
  std::string blanked(text);
  for (std::size_t i = 0; i + 1 < secret.size(); ++i)
    if (is_base64url(secret[i])) blanked[at + 1 + i] = 'A';
  return blanked;
}

// A refusal names the file and its cause in one line. Where the file writes its "privateKey"
// plainly (as every real file does), the refusal must read the same with the value blanked: it
// may name an offending character or the value's length, never the value. (Looking for the value
// in the message instead is not enough: a value can be a piece of the message's own words, as
// the fuzzer found with "ase64url alphabet".)
void check_refusal(std::string_view text, const std::string& error) {
  check(error.starts_with(std::string(source) + ": "));
  check(error.find('\n') == std::string::npos);
  const std::string secret = private_key_value(text);
  if (secret.empty()) return;
  const std::string blanked = with_secret_blanked(text, secret);
  if (blanked.empty()) return;
  std::string blanked_error;
  check(!try_parse_identity_file(blanked, source, blanked_error).has_value());
  check(blanked_error == error);
}

bool same_seed(const Identity& a, const Identity& b) {
  return std::equal(a.seed().begin(), a.seed().end(), b.seed().begin(), b.seed().end());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const bool initialised = (init_crypto(), true);
  (void)initialised;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::string error;
  const auto identity = try_parse_identity_file(text, source, error);
  if (!identity) {
    check_refusal(text, error);
    return 0;
  }
  check(identity->public_key().is_valid_point());
  const SecretText formatted = format_identity_file(*identity);
  const std::string_view formatted_text(formatted.data(), formatted.size());
  std::string again_error;
  const auto again = try_parse_identity_file(formatted_text, source, again_error);
  check(again.has_value());
  check(same_seed(*again, *identity) && again->public_key() == identity->public_key());
  const SecretText reformatted = format_identity_file(*again);
  check(std::string_view(reformatted.data(), reformatted.size()) == formatted_text);
  return 0;
}
