#include "common/allowlist.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "common/base64url.hpp"
#include "common/protocol.hpp"
#include "common/tickets.hpp"

namespace strelay {
namespace {

bool is_blank(char c) {
  return c == ' ' || c == '\t';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
  return s;
}

// The problem with one non-empty entry, or empty when it is fine.
std::string parse_entry(std::string_view entry, PublicKey& key, std::string& label) {
  std::size_t end = 0;
  while (end < entry.size() && !is_blank(entry[end])) ++end;
  const auto key_text = entry.substr(0, end);
  const auto label_text = trim(entry.substr(end));
  std::vector<std::uint8_t> bytes;
  std::string error;
  if (const auto problem = key_length_problem(key_text, key_bytes); !problem.empty()) {
    return "the key " + problem + " (a base64url Ed25519 public key)";
  }
  if (!try_from_base64url(key_text, bytes, error)) return "the key is not base64url: " + error;
  const auto parsed = PublicKey::from_bytes(bytes);
  if (!parsed) return "the key is not a valid Ed25519 public key";
  for (char c : label_text) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return "the label has a control character";
  }
  key = *parsed;
  label = std::string(label_text);
  return {};
}

// A JSON file given as an allowlist: a friend ticket allows its node's key (so strelay --allow
// and stcat --allow take the .friend file a friend sends); any other kind is named.
std::optional<Allowlist> allowlist_from_json(std::string_view text, const std::string& path,
                                             std::string& error) {
  const auto kind = try_detect_distinctive_kind(text);
  if (kind && *kind != FileKind::friend_ticket) {
    error = path + ": is " + file_kind_name(*kind) + ", not a friend ticket or an allowlist";
    return std::nullopt;
  }
  const auto ticket = try_parse_friend_ticket(text, path, error);
  if (!ticket) return std::nullopt;
  Allowlist list;
  list.add(ticket->public_key);
  return list;
}

bool looks_like_json(std::string_view text) {
  const auto first = text.find_first_not_of(" \t\r\n");
  return first != std::string_view::npos && text[first] == '{';
}

}  // namespace

std::string_view Allowlist::label(const PublicKey& key) const {
  const auto it = entries_.find(key);
  return it == entries_.end() ? std::string_view() : std::string_view(it->second);
}

std::set<PublicKey> Allowlist::keys() const {
  std::set<PublicKey> out;
  for (const auto& [key, label] : entries_) out.insert(key);
  return out;
}

std::optional<Allowlist> try_parse_allowlist(std::string_view text, std::string_view name,
                                             std::string& error,
                                             std::vector<std::string>* warnings) {
  constexpr std::string_view bom = "\xEF\xBB\xBF";
  if (text.substr(0, bom.size()) == bom) text.remove_prefix(bom.size());

  Allowlist list;
  std::map<PublicKey, std::size_t> first_line;
  std::string first_error;
  std::size_t bad_lines = 0;
  std::size_t line_number = 0;
  while (!text.empty()) {
    ++line_number;
    const auto newline = text.find('\n');
    std::string_view line = text.substr(0, newline);
    text.remove_prefix(newline == std::string_view::npos ? text.size() : newline + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);

    const auto where = std::string(name) + ":" + std::to_string(line_number) + ": ";
    auto fail = [&](const std::string& problem) {
      if (bad_lines++ == 0) first_error = where + problem;
    };
    if (line.size() > max_allowlist_line_bytes) {
      fail("the line is longer than " + std::to_string(max_allowlist_line_bytes) + " bytes");
      continue;
    }
    const auto entry = trim(line.substr(0, line.find('#')));
    if (entry.empty()) continue;
    PublicKey key;
    std::string label;
    if (auto problem = parse_entry(entry, key, label); !problem.empty()) {
      fail(problem);
      continue;
    }
    if (const auto [it, fresh] = first_line.emplace(key, line_number); !fresh) {
      if (warnings != nullptr) {
        warnings->push_back(where + "the key " + key.fingerprint() + " is already on line " +
                            std::to_string(it->second) + "; this line is ignored");
      }
      continue;
    }
    list.add(key, std::move(label));
  }
  if (bad_lines > 0) {
    error = first_error;
    if (bad_lines > 1) error += " (and " + std::to_string(bad_lines - 1) + " more bad lines)";
    return std::nullopt;
  }
  return list;
}

std::optional<Allowlist> try_load_allowlist(const std::string& path, std::string& error,
                                            std::vector<std::string>* warnings) {
  // O_NONBLOCK: a FIFO given by mistake must not hang the daemon on open.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    error = path + ": cannot open the allowlist: " + std::strerror(errno);
    return std::nullopt;
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    error = path + ": cannot read the allowlist: " + std::strerror(errno);
    return std::nullopt;
  }
  if (!S_ISREG(st.st_mode)) {
    error = path + ": the allowlist is not a regular file";
    return std::nullopt;
  }
  // Checked before allocating: a huge file is refused, not read.
  if (static_cast<std::uint64_t>(st.st_size) > max_allowlist_file_bytes) {
    error = path + ": the allowlist is larger than " + std::to_string(max_allowlist_file_bytes) +
            " bytes";
    return std::nullopt;
  }
  std::string text(static_cast<std::size_t>(st.st_size), '\0');
  std::size_t have = 0;
  while (have < text.size()) {
    const auto n = ::read(fd, text.data() + have, text.size() - have);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      error = path + ": cannot read the allowlist: " + std::strerror(errno);
      return std::nullopt;
    }
    if (n == 0) break;  // the file shrank while we read it: parse what is there
    have += static_cast<std::size_t>(n);
  }
  text.resize(have);
  if (looks_like_json(text)) return allowlist_from_json(text, path, error);
  return try_parse_allowlist(text, path, error, warnings);
}

Allowlist load_allowlist(const std::string& path, std::vector<std::string>* warnings) {
  std::string error;
  auto list = try_load_allowlist(path, error, warnings);
  if (!list) throw std::runtime_error(error);
  return std::move(*list);
}

}  // namespace strelay
