#include "common/tickets.hpp"

#include <sodium.h>

#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>
#include <type_traits>

#include "common/base64url.hpp"
#include "common/file_json.hpp"
#include "common/protocol.hpp"

namespace strelay {

namespace {

using Point = std::array<std::uint8_t, key_bytes>;

// Why libsodium's crypto_core_ed25519_is_valid_point refused a key, for the message.
std::string point_problem(const Point& p) {
  // y (the low 255 bits, little-endian) must be below 2^255 - 19.
  const bool high_all_ones =
      (p[31] & 0x7f) == 0x7f &&
      std::all_of(p.begin() + 1, p.end() - 1, [](auto b) { return b == 0xff; });
  if (high_all_ones && p[0] >= 0xed) return "a non-canonical encoding";
  Point twice{}, four{}, eight{};
  if (crypto_core_ed25519_add(twice.data(), p.data(), p.data()) != 0) {
    return "not a point on the curve";
  }
  // A small-order point P has 8P == the neutral element (encoded as 1, 0, ..., 0).
  Point neutral{};
  neutral[0] = 1;
  if (crypto_core_ed25519_add(four.data(), twice.data(), twice.data()) == 0 &&
      crypto_core_ed25519_add(eight.data(), four.data(), four.data()) == 0 && eight == neutral) {
    return "a small-order point";
  }
  return "not in the prime-order subgroup";
}

std::optional<PublicKey> public_key_from_text(std::string_view text, std::string_view name,
                                              std::string& error) {
  std::vector<std::uint8_t> bytes;
  std::string problem = key_length_problem(text, key_bytes);
  if (!problem.empty()) {
    error = std::string(name) + " " + problem + " (a base64url Ed25519 public key)";
    return std::nullopt;
  }
  if (!try_from_base64url(text, bytes, problem)) {
    error = std::string(name) + ": " + problem;
    return std::nullopt;
  }
  if (bytes.size() != key_bytes) {
    error = std::string(name) + " is " + std::to_string(bytes.size()) + " bytes, expected " +
            std::to_string(key_bytes) + " (an Ed25519 public key)";
    return std::nullopt;
  }
  auto key = PublicKey::from_bytes(bytes);
  if (!key) {
    Point raw{};
    std::copy(bytes.begin(), bytes.end(), raw.begin());
    error = std::string(name) + " is not a valid Ed25519 public key: " + point_problem(raw);
  }
  return key;
}

std::string_view view(const SecretText& s) {
  return {s.data(), s.size()};
}

// The kind a parsed file shows by a field only that kind has; nullopt when it shows none
// (a lone "publicKey" could be either ticket: then the kind's own parser explains).
std::optional<FileKind> distinctive_kind(const FileJson& json) {
  const auto has = [&](const char* field) { return json.contains(SecretText(field)); };
  if (has("privateKey")) return FileKind::identity;
  if (has("relays")) return FileKind::friend_ticket;
  if (has("address")) return FileKind::relay_ticket;
  return std::nullopt;
}

// "relay.relay: is a relay ticket, not a friend ticket" when the file is another kind.
bool check_kind(const FileJson& json, FileKind expected, std::string& cause) {
  const auto kind = distinctive_kind(json);
  if (!kind || *kind == expected) return true;
  cause = "is " + file_kind_name(*kind) + ", not " + file_kind_name(expected);
  return false;
}

// A relay ticket's fields, in a ticket file or in a friend ticket's "relays".
std::optional<RelayTicket> relay_from_json(const FileJson& object, std::string& cause) {
  if (!check_fields(object, {"publicKey", "address"}, "a relay ticket", cause)) {
    return std::nullopt;
  }
  const SecretText* key_text = string_field(object, "publicKey", cause);
  const SecretText* address_text = key_text ? string_field(object, "address", cause) : nullptr;
  if (address_text == nullptr) return std::nullopt;
  auto key = public_key_from_text(view(*key_text), "\"publicKey\"", cause);
  if (!key) return std::nullopt;
  auto address = try_parse_address(view(*address_text), cause);
  if (!address) return std::nullopt;
  return RelayTicket{*key, std::move(*address)};
}

std::optional<FriendTicket> friend_from_json(const FileJson& object, std::string& cause) {
  if (!check_fields(object, {"publicKey", "relays"}, "a friend ticket", cause)) {
    return std::nullopt;
  }
  const SecretText* key_text = string_field(object, "publicKey", cause);
  if (key_text == nullptr) return std::nullopt;
  auto key = public_key_from_text(view(*key_text), "\"publicKey\"", cause);
  if (!key) return std::nullopt;
  const FileJson& relays = object.at(SecretText("relays"));
  if (!relays.is_array()) {
    cause = "\"relays\" must be an array of relay tickets";
    return std::nullopt;
  }
  if (relays.empty() || relays.size() > max_friend_ticket_relays) {
    cause = "\"relays\" has " + std::to_string(relays.size()) +
            " relays; a friend ticket names 1 to " + std::to_string(max_friend_ticket_relays);
    return std::nullopt;
  }
  FriendTicket ticket{*key, {}};
  for (std::size_t i = 0; i < relays.size(); ++i) {
    const std::string where = "\"relays\"[" + std::to_string(i) + "]: ";
    if (!relays[i].is_object()) {
      cause = where + "must be a relay ticket object";
      return std::nullopt;
    }
    auto relay = relay_from_json(relays[i], cause);
    if (!relay) {
      cause = where + cause;
      return std::nullopt;
    }
    ticket.relays.push_back(std::move(*relay));
  }
  return ticket;
}

nlohmann::ordered_json relay_json(const RelayTicket& ticket) {
  nlohmann::ordered_json j;
  j["publicKey"] = ticket.public_key.to_base64url();
  j["address"] = ticket.address.to_string();
  return j;
}

// Parses text of at most max_ticket_file_bytes into an object, or sets a cause.
std::optional<FileJson> ticket_json(std::string_view text, std::string& cause) {
  if (text.size() > max_ticket_file_bytes) {
    cause = "is " + std::to_string(text.size()) + " bytes, more than the " +
            std::to_string(max_ticket_file_bytes) + " a ticket may have";
    return std::nullopt;
  }
  return try_parse_file_json(text, cause);
}

template <class Ticket>
constexpr FileKind kind_of =
    std::is_same_v<Ticket, RelayTicket> ? FileKind::relay_ticket : FileKind::friend_ticket;

template <class Ticket, class Parse>
std::optional<Ticket> parse_ticket(std::string_view text, std::string_view source,
                                   std::string& error, Parse parse) {
  std::string cause;
  std::optional<Ticket> ticket;
  if (const auto json = ticket_json(text, cause);
      json && check_kind(*json, kind_of<Ticket>, cause)) {
    ticket = parse(*json, cause);
  }
  if (!ticket) error = std::string(source) + ": " + cause;
  return ticket;
}

template <class Ticket, class Parse>
std::optional<Ticket> load_ticket(const std::filesystem::path& path, std::string& error,
                                  Parse parse) {
  const auto text =
      try_read_file_bounded(path, max_ticket_file_bytes, FileSecrecy::shareable, error);
  if (!text) return std::nullopt;
  return parse_ticket<Ticket>(view(*text), path.string(), error, parse);
}

template <class T>
T value_or_throw(std::optional<T> value, const std::string& error) {
  if (!value) throw FileError(error);
  return std::move(*value);
}

}  // namespace

std::string file_kind_name(FileKind kind) {
  switch (kind) {
    case FileKind::identity: return "an identity file";
    case FileKind::relay_ticket: return "a relay ticket";
    case FileKind::friend_ticket: return "a friend ticket";
  }
  return "a file";
}

std::optional<FileKind> try_detect_distinctive_kind(std::string_view text) {
  std::string ignored;
  const auto json =
      text.size() <= max_ticket_file_bytes ? try_parse_file_json(text, ignored) : std::nullopt;
  return json ? distinctive_kind(*json) : std::nullopt;
}

std::optional<PublicKey> try_parse_public_key(std::string_view text, std::string& error) {
  return public_key_from_text(text, "key", error);
}

std::string format_relay_ticket(const RelayTicket& ticket) {
  return relay_json(ticket).dump(2);
}

std::string format_friend_ticket(const FriendTicket& ticket) {
  nlohmann::ordered_json j;
  j["publicKey"] = ticket.public_key.to_base64url();
  j["relays"] = nlohmann::ordered_json::array();
  for (const auto& relay : ticket.relays) j["relays"].push_back(relay_json(relay));
  return j.dump(2);
}

std::optional<RelayTicket> try_parse_relay_ticket(std::string_view text, std::string_view source,
                                                  std::string& error) {
  return parse_ticket<RelayTicket>(text, source, error, relay_from_json);
}

RelayTicket parse_relay_ticket(std::string_view text, std::string_view source) {
  std::string error;
  return value_or_throw(try_parse_relay_ticket(text, source, error), error);
}

std::optional<FriendTicket> try_parse_friend_ticket(std::string_view text, std::string_view source,
                                                    std::string& error) {
  return parse_ticket<FriendTicket>(text, source, error, friend_from_json);
}

FriendTicket parse_friend_ticket(std::string_view text, std::string_view source) {
  std::string error;
  return value_or_throw(try_parse_friend_ticket(text, source, error), error);
}

std::optional<RelayTicket> try_load_relay_ticket(const std::filesystem::path& path,
                                                 std::string& error) {
  return load_ticket<RelayTicket>(path, error, relay_from_json);
}

RelayTicket load_relay_ticket(const std::filesystem::path& path) {
  std::string error;
  return value_or_throw(try_load_relay_ticket(path, error), error);
}

std::optional<FriendTicket> try_load_friend_ticket(const std::filesystem::path& path,
                                                   std::string& error) {
  return load_ticket<FriendTicket>(path, error, friend_from_json);
}

FriendTicket load_friend_ticket(const std::filesystem::path& path) {
  std::string error;
  return value_or_throw(try_load_friend_ticket(path, error), error);
}

void write_relay_ticket(const std::filesystem::path& path, const RelayTicket& ticket,
                        Overwrite overwrite) {
  write_file_atomic(path, format_relay_ticket(ticket), FileSecrecy::shareable, overwrite);
}

void write_friend_ticket(const std::filesystem::path& path, const FriendTicket& ticket,
                         Overwrite overwrite) {
  write_file_atomic(path, format_friend_ticket(ticket), FileSecrecy::shareable, overwrite);
}

std::optional<FileKind> try_detect_file_kind(std::string_view text, std::string_view source,
                                             std::string& error) {
  std::string cause;
  const auto json = ticket_json(text, cause);
  if (!json) {
    error = std::string(source) + ": " + cause;
    return std::nullopt;
  }
  if (const auto kind = distinctive_kind(*json)) return kind;
  if (json->contains(SecretText("publicKey"))) return FileKind::relay_ticket;
  error = std::string(source) +
          ": neither an identity file nor a ticket (no \"privateKey\", \"publicKey\" or "
          "\"relays\" field)";
  return std::nullopt;
}

}  // namespace strelay
