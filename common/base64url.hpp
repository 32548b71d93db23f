// base64url without padding (RFC 4648 section 5), the encoding of every key in
// Offset's files. Decoding is strict and says precisely what is wrong.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace strelay {

std::string to_base64url(std::span<const std::uint8_t> bytes);

// Decodes `text`; on failure returns false and sets `error` to a one-line cause
// ("character '/' at offset 3 is not in the base64url alphabet", "padding '=' is not allowed",
// "length 41 is not a valid unpadded base64url length", "non-zero trailing bits").
bool try_from_base64url(std::string_view text, std::vector<std::uint8_t>& out, std::string& error);

// For a key of `bytes` bytes in base64url: when `text` is all base64url characters but not the
// key's length, "is 42 characters (31 bytes), expected 43" (a truncated copy and paste says
// what was expected); empty otherwise (then decoding says what is wrong).
std::string key_length_problem(std::string_view text, std::size_t bytes);

}  // namespace strelay
