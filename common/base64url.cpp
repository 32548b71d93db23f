#include "common/base64url.hpp"

#include <sodium.h>

#include <algorithm>

namespace strelay {

namespace {

bool in_alphabet(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

}  // namespace

std::string to_base64url(std::span<const std::uint8_t> bytes) {
  const std::size_t encoded =
      sodium_base64_ENCODED_LEN(bytes.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  std::string out(encoded, '\0');  // includes the terminating NUL
  sodium_bin2base64(out.data(), out.size(), bytes.data(), bytes.size(),
                    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  out.resize(encoded - 1);
  return out;
}

bool try_from_base64url(std::string_view text, std::vector<std::uint8_t>& out, std::string& error) {
  // Our own checks first, so each rejection names its cause; libsodium then decodes.
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '=') {
      error = "padding '=' is not allowed (base64url without padding)";
      return false;
    }
    if (!in_alphabet(c)) {
      const bool printable = c >= 0x20 && c < 0x7f;
      error = printable ? "character '" + std::string(1, c) + "' at offset " + std::to_string(i) +
                              " is not in the base64url alphabet"
                        : "a non-printable byte at offset " + std::to_string(i) +
                              " is not in the base64url alphabet";
      return false;
    }
  }
  if (text.size() % 4 == 1) {
    error = "length " + std::to_string(text.size()) + " is not a valid unpadded base64url length";
    return false;
  }
  if (text.empty()) {  // nothing to decode, and libsodium's output pointer must not be null
    out.clear();
    return true;
  }
  out.assign(text.size() * 3 / 4, 0);
  std::size_t decoded = 0;
  if (sodium_base642bin(out.data(), out.size(), text.data(), text.size(), nullptr, &decoded,
                        nullptr, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0) {
    error = "non-canonical base64url (non-zero trailing bits)";
    return false;
  }
  out.resize(decoded);
  return true;
}

std::string key_length_problem(std::string_view text, std::size_t bytes) {
  const std::size_t expected = (bytes * 4 + 2) / 3;  // unpadded
  if (text.size() == expected || !std::all_of(text.begin(), text.end(), in_alphabet)) return {};
  std::string problem = "is " + std::to_string(text.size()) + " characters";
  if (!text.empty() && text.size() % 4 != 1)
    problem += " (" + std::to_string(text.size() * 3 / 4) + " bytes)";
  return problem + ", expected " + std::to_string(expected);
}

}  // namespace strelay
