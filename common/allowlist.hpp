// The --allow file of a private relay: the node keys that may listen, connect or accept
// (Earthstar's "known shares", for a relay).
//
// Format, one entry per line:
//
//   # members of the family relay
//   A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg  alice-phone
//   iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w  # bob, no label
//
// - a base64url Ed25519 public key (43 characters, no padding), as in tickets and `stmgr show`;
// - optionally whitespace and a label (shown in logs next to the fingerprint);
// - `#` starts a comment anywhere on a line (base64url never contains it); blank lines are fine;
// - CRLF line endings and a UTF-8 byte order mark are accepted.
//
// Parsing is strict: a bad line makes the whole file fail, with one line naming file:line and
// the problem (and how many other lines are bad), so a typo never silently locks a member out
// or lets a stranger in. A key listed twice is accepted with a warning (the first label wins).
// A file with no keys is valid and means NOBODY may use the relay (a private relay with no
// members yet); to run a public relay, leave --allow unset.
//
// A file whose first non-blank byte is '{' is read as a friend ticket (a .friend file): it
// allows that one node's key. Any other JSON file (an identity, a relay ticket) is refused by
// its kind ("alice.ident: is an identity file, not a friend ticket or an allowlist").
//
// Reload (SIGHUP): the daemon calls try_load_allowlist() again; when it fails, the daemon keeps
// the old list, logs the error and counts reloads_total{outcome="failed"}. Allowlist is a
// plain value: the daemon swaps a std::shared_ptr<const Allowlist> under its own lock.
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/keys.hpp"

namespace strelay {

class Allowlist {
 public:
  bool contains(const PublicKey& key) const { return entries_.count(key) > 0; }
  std::size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  // The label written after the key; empty when there is none or the key is not listed.
  std::string_view label(const PublicKey& key) const;
  const std::map<PublicKey, std::string>& entries() const { return entries_; }
  std::set<PublicKey> keys() const;

  // Adds a key; false (and no change) when it is already listed.
  bool add(const PublicKey& key, std::string label = {}) {
    return entries_.emplace(key, std::move(label)).second;
  }

  friend bool operator==(const Allowlist&, const Allowlist&) = default;

 private:
  std::map<PublicKey, std::string> entries_;  // key -> label
};

// Parses the text of an allowlist; `name` (the file's path) prefixes every message.
// On failure returns nullopt and sets `error` to one line. Warnings (duplicates) are appended
// to `warnings` when it is given.
std::optional<Allowlist> try_parse_allowlist(std::string_view text, std::string_view name,
                                             std::string& error,
                                             std::vector<std::string>* warnings = nullptr);

// Reads and parses a file (a regular file of at most max_allowlist_file_bytes, checked before
// reading). On failure returns nullopt and sets `error` to one line naming the file.
std::optional<Allowlist> try_load_allowlist(const std::string& path, std::string& error,
                                            std::vector<std::string>* warnings = nullptr);

// Throws std::runtime_error with the same one-line message (for start-up).
Allowlist load_allowlist(const std::string& path, std::vector<std::string>* warnings = nullptr);

}  // namespace strelay
