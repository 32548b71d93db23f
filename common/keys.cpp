#include "common/keys.hpp"

#include <stdexcept>

#include "common/base64url.hpp"

namespace strelay {

static_assert(crypto_sign_PUBLICKEYBYTES == key_bytes);
static_assert(crypto_sign_SEEDBYTES == key_bytes);
static_assert(crypto_sign_BYTES == signature_bytes);

void init_crypto() {
  if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
}

std::optional<PublicKey> PublicKey::from_bytes(std::span<const std::uint8_t> bytes) {
  if (bytes.size() != key_bytes) return std::nullopt;
  std::array<std::uint8_t, key_bytes> raw{};
  std::copy(bytes.begin(), bytes.end(), raw.begin());
  PublicKey key(raw);
  if (!key.is_valid_point()) return std::nullopt;
  return key;
}

bool PublicKey::is_valid_point() const {
  return crypto_core_ed25519_is_valid_point(bytes_.data()) == 1;
}

std::string PublicKey::to_base64url() const { return strelay::to_base64url(bytes_); }

std::string PublicKey::fingerprint() const { return to_base64url().substr(0, 8); }

bool PublicKey::verify(std::span<const std::uint8_t> message, const Signature& signature) const {
  if (!is_valid_point()) return false;
  return crypto_sign_verify_detached(signature.data(), message.data(), message.size(),
                                     bytes_.data()) == 0;
}

Identity Identity::generate() {
  Secret<key_bytes> seed;
  randombytes_buf(seed.data(), seed.size());
  return from_seed(seed.span());
}

Identity Identity::from_seed(std::span<const std::uint8_t, key_bytes> seed) {
  Identity id;
  std::copy(seed.begin(), seed.end(), id.seed_.data());
  std::array<std::uint8_t, key_bytes> pk{};
  if (crypto_sign_seed_keypair(pk.data(), id.signing_key_.data(), id.seed_.data()) != 0) {
    throw std::runtime_error("crypto_sign_seed_keypair failed");
  }
  id.public_key_ = PublicKey(pk);
  return id;
}

Signature Identity::sign(std::span<const std::uint8_t> message) const {
  Signature sig{};
  if (crypto_sign_detached(sig.data(), nullptr, message.data(), message.size(),
                           signing_key_.data()) != 0) {
    throw std::runtime_error("crypto_sign_detached failed");
  }
  return sig;
}

}  // namespace strelay
