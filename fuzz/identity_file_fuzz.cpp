// libFuzzer target for the identity-file parser (common/identity_file). The input is a would-be
// identity file's text. Seeds: fuzz/corpus/identity_file (the identities and invalid identities
// of tests/vectors/offset-files.json, with the 85-byte PKCS#8 file of old Offset versions).
//
// Checks:
//  - parsing never throws, crashes or reads out of bounds (the sanitizers watch);
//  - a refusal is one line that starts with the source's name and never contains the
//    "privateKey" value the file holds (the secret must not reach logs or terminals);
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

void check_refusal(std::string_view text, const std::string& error) {
  check(error.starts_with(std::string(source) + ": "));
  check(error.find('\n') == std::string::npos);
  // Short values could occur in the message by chance ("is 3 bytes"); a key-sized one cannot.
  const std::string secret = private_key_value(text);
  if (secret.size() >= 16) check(error.find(secret) == std::string::npos);
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
