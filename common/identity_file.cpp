#include "common/identity_file.hpp"

#include <sodium.h>

#include <vector>

#include "common/base64url.hpp"
#include "common/file_json.hpp"
#include "common/protocol.hpp"
#include "common/tickets.hpp"

namespace strelay {

namespace {

// Wipes a decoded seed buffer, whatever its path out of the parser.
struct WipeOnExit {
  std::vector<std::uint8_t>& bytes;
  ~WipeOnExit() { sodium_memzero(bytes.data(), bytes.capacity()); }
};

constexpr std::size_t offset_legacy_identity_characters =
    (offset_legacy_identity_bytes * 4 + 2) / 3;

// Returns the identity, or nullopt with a cause (without the source prefix).
std::optional<Identity> identity_from_text(std::string_view text, std::string& cause) {
  if (text.size() > max_identity_file_bytes) {
    cause = "is " + std::to_string(text.size()) + " bytes, more than the " +
            std::to_string(max_identity_file_bytes) + " an identity file may have";
    return std::nullopt;
  }
  const auto json = try_parse_file_json(text, cause);
  if (const auto kind = json ? try_detect_distinctive_kind(text) : std::nullopt;
      kind && *kind != FileKind::identity) {
    cause = "is " + file_kind_name(*kind) + ", not an identity file";
    return std::nullopt;
  }
  if (!json || !check_fields(*json, {"privateKey"}, "an identity file", cause)) {
    return std::nullopt;
  }
  const SecretText* encoded = string_field(*json, "privateKey", cause);
  if (encoded == nullptr) return std::nullopt;

  std::vector<std::uint8_t> seed;
  seed.reserve(encoded->size());  // decoding never needs more; no reallocation leaves copies
  const WipeOnExit wipe{seed};
  const std::string_view encoded_text(encoded->data(), encoded->size());
  // The old format's 85 bytes are 114 characters: that case has its own message below.
  std::string problem = encoded_text.size() == offset_legacy_identity_characters
                            ? std::string()
                            : key_length_problem(encoded_text, key_bytes);
  if (!problem.empty()) {
    cause = "\"privateKey\" " + problem + " (a base64url Ed25519 seed)";
    return std::nullopt;
  }
  if (!try_from_base64url(encoded_text, seed, problem)) {
    cause = "\"privateKey\": " + problem;
    return std::nullopt;
  }
  if (seed.size() == offset_legacy_identity_bytes) {
    cause =
        "\"privateKey\" is 85 bytes: this is the old Offset <= 0.1.10 identity format "
        "(PKCS#8), which is not supported; generate a new identity with stmgr gen-ident";
    return std::nullopt;
  }
  if (seed.size() != key_bytes) {
    cause = "\"privateKey\" is " + std::to_string(seed.size()) + " bytes, expected " +
            std::to_string(key_bytes) + " (an Ed25519 seed)";
    return std::nullopt;
  }
  return Identity::from_seed(std::span<const std::uint8_t, key_bytes>(seed.data(), key_bytes));
}

}  // namespace

SecretText format_identity_file(const Identity& identity) {
  constexpr int variant = sodium_base64_VARIANT_URLSAFE_NO_PADDING;
  const auto seed = identity.seed();
  SecretText encoded(sodium_base64_ENCODED_LEN(key_bytes, variant), '\0');
  sodium_bin2base64(encoded.data(), encoded.size(), seed.data(), seed.size(), variant);
  encoded.resize(encoded.size() - 1);  // the terminating NUL
  SecretText text;
  text.reserve(64);  // built in place: no reallocation leaves a copy of the seed behind
  text += "{\n  \"privateKey\": \"";
  text += encoded;
  text += "\"\n}";
  return text;
}

std::optional<Identity> try_parse_identity_file(std::string_view text, std::string_view source,
                                                std::string& error) {
  std::string cause;
  auto identity = identity_from_text(text, cause);
  if (!identity) error = std::string(source) + ": " + cause;
  return identity;
}

Identity parse_identity_file(std::string_view text, std::string_view source) {
  std::string error;
  auto identity = try_parse_identity_file(text, source, error);
  if (!identity) throw FileError(error);
  return std::move(*identity);
}

namespace {

// After a refused secret read: when the file is a ticket (say relay.relay given as --idfile),
// that is the message, not advice to chmod or chown a file that holds no secret.
void explain_wrong_kind(const std::filesystem::path& path, std::string& error) {
  std::string ignored;
  const auto text =
      try_read_file_bounded(path, max_ticket_file_bytes, FileSecrecy::shareable, ignored);
  const auto kind = text ? try_detect_distinctive_kind({text->data(), text->size()}) : std::nullopt;
  if (kind && *kind != FileKind::identity) {
    error = path.string() + ": is " + file_kind_name(*kind) + ", not an identity file";
  }
}

}  // namespace

std::optional<Identity> try_load_identity(const std::filesystem::path& path, std::string& error) {
  const auto text =
      try_read_file_bounded(path, max_identity_file_bytes, FileSecrecy::secret, error);
  if (!text) {
    explain_wrong_kind(path, error);
    return std::nullopt;
  }
  return try_parse_identity_file(std::string_view(text->data(), text->size()), path.string(),
                                 error);
}

Identity load_identity(const std::filesystem::path& path) {
  std::string error;
  auto identity = try_load_identity(path, error);
  if (!identity) throw FileError(error);
  return std::move(*identity);
}

void write_identity(const std::filesystem::path& path, const Identity& identity,
                    Overwrite overwrite) {
  const SecretText text = format_identity_file(identity);
  write_file_atomic(path, std::string_view(text.data(), text.size()), FileSecrecy::secret,
                    overwrite);
}

}  // namespace strelay
