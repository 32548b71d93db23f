// Static files under --web-root, served on the relay port at every path other than the
// WebSocket path, so that "open your relay's address on your phone" loads the web app.
//
// Only GET and HEAD; no directory listings (a directory serves its index.html or nothing);
// no escape from the root: the request path is decoded once, and refused when a segment is
// empty after decoding, is "." or "..", starts with a dot (.git, .env), or holds a NUL, a
// backslash or an encoded "/"; the file found is then resolved (symlinks followed) and must
// still lie under the resolved root. Only regular files of at most web_root_max_file_bytes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace strelay {

enum class WebLookup : std::uint8_t {
  found,
  not_found,  // no such file, a directory without index.html, or not a regular file
  bad_path,   // a path that tries to leave the root or hide in it
  too_large,  // over web_root_max_file_bytes
};

struct WebFile {
  WebLookup status = WebLookup::not_found;
  std::filesystem::path path;  // when found: the resolved file
  std::uint64_t size = 0;
  std::string_view content_type;
};

// `target` is the request target ("/app/index.html?v=2"; the query is ignored).
WebFile find_web_file(const std::filesystem::path& root, std::string_view target,
                      std::uint64_t max_bytes);

// "text/javascript" for .js and .mjs, "application/wasm", "application/manifest+json", ...;
// application/octet-stream for anything unknown.
std::string_view content_type_for(const std::filesystem::path& path);

// The decoded path of `target` relative to the root ("app/index.html"), or nullopt when it
// breaks a rule above. Exposed for tests and the fuzz target.
std::optional<std::string> safe_relative_path(std::string_view target);

}  // namespace strelay
