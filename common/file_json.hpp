// Strict JSON for identity files and tickets: one object, no trailing bytes, no duplicate
// keys, shallow nesting, and exactly the expected fields. Strings live in wiped memory
// (SecretText), because an identity file's privateKey passes through here.
//
// Error messages never quote the input's values (they may be secret); they quote field names.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/address.hpp"  // quote_for_message
#include "common/secure_file.hpp"

namespace strelay {

using FileJson = nlohmann::basic_json<std::map, std::vector, SecretText, bool, std::int64_t,
                                      std::uint64_t, double, WipingAllocator>;

// Objects and arrays may nest this deep (a friend ticket: object > relays > object).
inline constexpr int max_file_json_depth = 3;

// Parses `text` as a JSON object. On failure returns nullopt and sets `error`, e.g.
// "not valid JSON (syntax error at line 1, column 1)" or `duplicate field "address"`.
std::optional<FileJson> try_parse_file_json(std::string_view text, std::string& error);

// Checks that `object` has exactly the fields `names`: reports the first missing field,
// then any unknown one, e.g. `unknown field "port" (a relay ticket has exactly "publicKey"
// and "address")`. `what` names the kind of file, for the message.
bool check_fields(const FileJson& object, std::initializer_list<std::string_view> names,
                  std::string_view what, std::string& error);

// The field's string, or nullptr and `error` = `"address" must be a string, not a number`.
const SecretText* string_field(const FileJson& object, std::string_view name, std::string& error);

}  // namespace strelay
