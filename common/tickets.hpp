// Relay tickets and friend tickets, as Offset writes and reads them.
//
// Relay ticket (*.relay), exactly these two fields, as Offset's mobile app reads them:
//   {
//     "publicKey": "<base64url of the relay's 32-byte Ed25519 public key>",
//     "address": "host:port"
//   }
// Friend ticket (*.friend): a node's key and the relays where it listens (1..16 of them):
//   {
//     "publicKey": "<base64url>",
//     "relays": [ <relay ticket objects> ]
//   }
// Written pretty-printed with a 2-space indent and no trailing newline (byte-identical to
// Offset's files). Parsing is strict; unknown fields are refused. docs/file-formats.md has
// every rule.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/address.hpp"
#include "common/keys.hpp"
#include "common/secure_file.hpp"

namespace strelay {

struct RelayTicket {
  PublicKey public_key;
  Address address;
  friend bool operator==(const RelayTicket&, const RelayTicket&) = default;
};

struct FriendTicket {
  PublicKey public_key;
  std::vector<RelayTicket> relays;
  friend bool operator==(const FriendTicket&, const FriendTicket&) = default;
};

// A base64url Ed25519 public key: 43 characters, 32 bytes, a valid point of prime order.
// The error says which rule failed ("is 31 bytes, expected 32", "is a small-order point").
std::optional<PublicKey> try_parse_public_key(std::string_view text, std::string& error);

// The exact file bytes.
std::string format_relay_ticket(const RelayTicket& ticket);
std::string format_friend_ticket(const FriendTicket& ticket);

// `source` names the text in messages: "relay.relay: \"address\": port 0 is out of range".
std::optional<RelayTicket> try_parse_relay_ticket(std::string_view text, std::string_view source,
                                                  std::string& error);
RelayTicket parse_relay_ticket(std::string_view text, std::string_view source);  // FileError
std::optional<FriendTicket> try_parse_friend_ticket(std::string_view text, std::string_view source,
                                                    std::string& error);
FriendTicket parse_friend_ticket(std::string_view text, std::string_view source);  // FileError

std::optional<RelayTicket> try_load_relay_ticket(const std::filesystem::path& path,
                                                 std::string& error);
RelayTicket load_relay_ticket(const std::filesystem::path& path);  // throws FileError
std::optional<FriendTicket> try_load_friend_ticket(const std::filesystem::path& path,
                                                   std::string& error);
FriendTicket load_friend_ticket(const std::filesystem::path& path);  // throws FileError

// Tickets are public: written atomically with mode 0644.
void write_relay_ticket(const std::filesystem::path& path, const RelayTicket& ticket,
                        Overwrite overwrite);
void write_friend_ticket(const std::filesystem::path& path, const FriendTicket& ticket,
                         Overwrite overwrite);

// Which of the project's files a text is, from its fields ("privateKey": identity, "relays":
// friend ticket, otherwise a relay ticket). Only the JSON syntax is checked here; the kind's
// own parser then checks everything else.
enum class FileKind { identity, relay_ticket, friend_ticket };
std::optional<FileKind> try_detect_file_kind(std::string_view text, std::string_view source,
                                             std::string& error);

// "an identity file", "a relay ticket", "a friend ticket": for "X is a ..., not a ..." messages.
std::string file_kind_name(FileKind kind);

// The kind a text shows by a field only that kind has ("privateKey", "relays", "address"), or
// nullopt (not JSON, or a lone "publicKey"). Every reader uses it to say "FILE is a friend
// ticket, not a relay ticket" instead of a missing field. Never reads the values.
std::optional<FileKind> try_detect_distinctive_kind(std::string_view text);

}  // namespace strelay
