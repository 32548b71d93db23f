#include "common/keys.hpp"

#include <sys/prctl.h>
#include <sys/resource.h>

#include <mutex>
#include <stdexcept>

#include "common/base64url.hpp"

namespace strelay {

static_assert(crypto_sign_PUBLICKEYBYTES == key_bytes);
static_assert(crypto_sign_SEEDBYTES == key_bytes);
static_assert(crypto_sign_BYTES == signature_bytes);

void init_crypto() {
  if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
}

void disable_core_dumps() {
  const rlimit none{0, 0};
  ::setrlimit(RLIMIT_CORE, &none);
  ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

std::optional<PublicKey> PublicKey::from_bytes(std::span<const std::uint8_t> bytes) {
  if (bytes.size() != key_bytes) return std::nullopt;
  std::array<std::uint8_t, key_bytes> raw{};
  std::copy(bytes.begin(), bytes.end(), raw.begin());
  PublicKey key(raw);
  if (!key.is_valid_point()) return std::nullopt;
  return key;
}

namespace {

// crypto_core_ed25519_is_valid_point costs a scalar multiplication (about 40 us here, a fifth
// of the relay's handshake), and the same keys come back: a listener's acceptor connections
// carry the listener's key, nodes reconnect, every node checks the same relay key. The answer
// depends on the 32 bytes alone, so keys found valid are remembered in a direct-mapped table
// (256 slots, 8 KiB, shared by all threads). A miss, or a key evicted by another in its slot,
// only costs the check again; invalid keys are never stored, and a hit needs all 32 bytes
// equal, so the table can change how fast a key is accepted, never whether.
class KnownValidKeys {
 public:
  bool contains(const std::array<std::uint8_t, key_bytes>& key) {
    const auto& slot = slots_[detail::valid_key_slot(key)];
    std::lock_guard lock(mutex_);
    return slot.used && slot.key == key;
  }
  void insert(const std::array<std::uint8_t, key_bytes>& key) {
    auto& slot = slots_[detail::valid_key_slot(key)];
    std::lock_guard lock(mutex_);
    slot.key = key;
    slot.used = true;
  }

 private:
  struct Slot {
    std::array<std::uint8_t, key_bytes> key{};
    bool used = false;
  };
  std::mutex mutex_;
  std::array<Slot, detail::valid_key_slots> slots_{};
};

KnownValidKeys& known_valid_keys() {
  static KnownValidKeys table;
  return table;
}

}  // namespace

std::size_t detail::valid_key_slot(const std::array<std::uint8_t, key_bytes>& key) {
  // An honest key's bytes are uniform; a chosen key can only evict another from its slot.
  return (std::size_t{key[0]} ^ std::size_t{key[7]} ^ std::size_t{key[15]}) % valid_key_slots;
}

bool PublicKey::is_valid_point() const {
  auto& known = known_valid_keys();
  if (known.contains(bytes_)) return true;
  if (crypto_core_ed25519_is_valid_point(bytes_.data()) != 1) return false;
  known.insert(bytes_);
  return true;
}

std::string PublicKey::to_base64url() const {
  return strelay::to_base64url(bytes_);
}

std::string PublicKey::fingerprint() const {
  return to_base64url().substr(0, 8);
}

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
