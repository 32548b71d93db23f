// Identities: Ed25519 signing keys that only ever sign.
//
// PublicKey is a regular value (==, hashable, printable as base64url).
// Identity owns a secret seed and the expanded signing key in wiped, locked memory;
// it is move-only and has no way to print its secret.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "common/protocol.hpp"
#include "common/secure.hpp"

namespace strelay {

// Initialises libsodium; throws std::runtime_error if it cannot (a fatal start-up error).
void init_crypto();

// No core dumps for this process: RLIMIT_CORE is set to 0 (soft and hard) and the process is
// made non-dumpable (PR_SET_DUMPABLE 0, which also keeps other processes of the same user from
// ptrace-attaching or reading its memory). Identity seeds sit in sodium_malloc'd memory, but
// session keys and plaintext sit on the ordinary heap, where a core file would keep them.
// Every program that holds secrets (strelay, stcat, stmgr) calls this first thing in main.
// Best effort: the calls cannot fail for an unprivileged process lowering its own limits.
void disable_core_dumps();

using Signature = std::array<std::uint8_t, signature_bytes>;

namespace detail {
// The slot a key takes in the process-wide table of keys already found valid (keys.cpp); for
// tests that need two keys in one slot.
std::size_t valid_key_slot(const std::array<std::uint8_t, key_bytes>& key);
inline constexpr std::size_t valid_key_slots = 256;
}  // namespace detail

class PublicKey {
 public:
  PublicKey() = default;
  explicit PublicKey(const std::array<std::uint8_t, key_bytes>& bytes) : bytes_(bytes) {}

  // Only keys that are canonical, on the curve and not of small order
  // (crypto_core_ed25519_is_valid_point) are accepted as identities. The check costs a scalar
  // multiplication; its answer for keys found valid is remembered (a small bounded table).
  static std::optional<PublicKey> from_bytes(std::span<const std::uint8_t> bytes);
  bool is_valid_point() const;

  const std::array<std::uint8_t, key_bytes>& bytes() const { return bytes_; }
  std::string to_base64url() const;
  // A short, non-secret tag for log lines: the first 8 base64url characters.
  std::string fingerprint() const;

  // Strict Ed25519 verification (libsodium's, plus the point check on this key).
  bool verify(std::span<const std::uint8_t> message, const Signature& signature) const;

  friend bool operator==(const PublicKey&, const PublicKey&) = default;
  friend auto operator<=>(const PublicKey&, const PublicKey&) = default;

 private:
  std::array<std::uint8_t, key_bytes> bytes_{};
};

class Identity {
 public:
  // A fresh random identity.
  static Identity generate();
  // From a 32-byte seed (the Offset identity file's privateKey). The caller wipes its copy.
  static Identity from_seed(std::span<const std::uint8_t, key_bytes> seed);

  const PublicKey& public_key() const { return public_key_; }
  Signature sign(std::span<const std::uint8_t> message) const;
  // The seed, for writing an identity file; never log it.
  std::span<const unsigned char, key_bytes> seed() const { return seed_.span(); }

  Identity(Identity&&) noexcept = default;
  Identity& operator=(Identity&&) noexcept = default;
  Identity(const Identity&) = delete;
  Identity& operator=(const Identity&) = delete;

 private:
  Identity() = default;
  Secret<key_bytes> seed_;
  Secret<crypto_sign_SECRETKEYBYTES> signing_key_;
  PublicKey public_key_;
};

}  // namespace strelay

template <>
struct std::hash<strelay::PublicKey> {
  // Not for tables that hostile clients can fill: those use a keyed hash (relay_state).
  std::size_t operator()(const strelay::PublicKey& key) const noexcept {
    std::size_t h = 0;
    for (std::size_t i = 0; i < sizeof h; ++i) h = (h << 8) | key.bytes()[i];
    return h;
  }
};
