#include "strelay/web_root.hpp"

#include <algorithm>
#include <array>
#include <system_error>
#include <utility>

namespace strelay {
namespace {

namespace fs = std::filesystem;

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// One path segment, percent-decoded; nullopt for a bad escape or a forbidden byte.
std::optional<std::string> decode_segment(std::string_view raw) {
  std::string out;
  for (std::size_t i = 0; i < raw.size(); ++i) {
    char c = raw[i];
    if (c == '%') {
      if (i + 2 >= raw.size()) return std::nullopt;  // "%" or "%4" at the end
      const int hi = hex_value(raw[i + 1]);
      const int lo = hex_value(raw[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    }
    if (c == '\0' || c == '/' || c == '\\') return std::nullopt;
    out.push_back(c);
  }
  return out;
}

bool under(const fs::path& root, const fs::path& path) {
  auto r = root.begin();
  auto p = path.begin();
  for (; r != root.end(); ++r, ++p) {
    if (p == path.end() || *r != *p) return false;
  }
  return true;
}

}  // namespace

std::optional<std::string> safe_relative_path(std::string_view target) {
  target = target.substr(0, target.find_first_of("?#"));
  if (target.empty() || target.front() != '/') return std::nullopt;
  target.remove_prefix(1);
  std::string out;
  while (!target.empty()) {
    const auto slash = target.find('/');
    const auto raw = target.substr(0, slash);
    const auto segment = decode_segment(raw);
    if (!segment || segment->empty() || segment->front() == '.') return std::nullopt;
    if (!out.empty()) out += '/';
    out += *segment;
    if (slash == std::string_view::npos) break;
    target.remove_prefix(slash + 1);
    if (target.empty()) out += '/';  // "dir/": a directory's index
  }
  return out;
}

std::string_view content_type_for(const fs::path& path) {
  static constexpr std::array<std::pair<std::string_view, std::string_view>, 19> types{{
      {".html", "text/html; charset=utf-8"},
      {".htm", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".mjs", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".json", "application/json"},
      {".webmanifest", "application/manifest+json"},
      {".wasm", "application/wasm"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".jpg", "image/jpeg"},
      {".jpeg", "image/jpeg"},
      {".gif", "image/gif"},
      {".webp", "image/webp"},
      {".ico", "image/x-icon"},
      {".txt", "text/plain; charset=utf-8"},
      {".woff2", "font/woff2"},
      {".map", "application/json"},
      {".xml", "application/xml"},
  }};
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (const auto& [e, type] : types) {
    if (e == ext) return type;
  }
  return "application/octet-stream";
}

WebFile find_web_file(const fs::path& root, std::string_view target, std::uint64_t max_bytes) {
  WebFile out;
  auto relative = safe_relative_path(target);
  if (!relative) {
    out.status = WebLookup::bad_path;
    return out;
  }
  std::error_code ec;
  const fs::path real_root = fs::canonical(root, ec);
  if (ec) return out;
  fs::path candidate = real_root / *relative;
  if (relative->empty() || relative->back() == '/' || fs::is_directory(candidate, ec))
    candidate /= "index.html";
  const fs::path real = fs::canonical(candidate, ec);
  if (ec) return out;  // not there
  if (!under(real_root, real)) {
    out.status = WebLookup::bad_path;  // a symlink that leads out of the root
    return out;
  }
  const auto status = fs::status(real, ec);
  if (ec || !fs::is_regular_file(status)) return out;
  const auto size = fs::file_size(real, ec);
  if (ec) return out;
  if (size > max_bytes) {
    out.status = WebLookup::too_large;
    return out;
  }
  out.status = WebLookup::found;
  out.path = real;
  out.size = size;
  out.content_type = content_type_for(real);
  return out;
}

}  // namespace strelay
