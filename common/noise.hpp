// The Noise core (noiseprotocol.org/noise.html, revision 34): HASH = SHA-256, DH = X25519,
// CIPHER = ChaChaPoly (the product) or AESGCM (only so that the official vectors run).
//
// CipherState and SymmetricState follow the spec's objects and names. The handshake patterns
// live elsewhere: common/handshake.* runs strelay's signed XK1 shape on top of this core.
//
// Secrets (k, ck, DH private keys and outputs) sit in ordinary memory inside these objects and
// are wiped when they are destroyed or moved from, as WireGuard keeps them. They are not
// sodium_malloc'd: a handshake would need half a dozen guarded, mlock'ed allocations (several
// system calls each), which costs more than its Diffie-Hellman. Long-lived identities use
// Secret<> (common/keys.hpp).
#pragma once

#include <sodium.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <utility>

#include "common/protocol.hpp"

namespace strelay {

// Fixed-size secret bytes, wiped on destruction and when moved from; never copied implicitly.
template <std::size_t N>
class WipedBytes {
 public:
  WipedBytes() = default;
  ~WipedBytes() { wipe(); }
  WipedBytes(WipedBytes&& other) noexcept : bytes_(other.bytes_) { other.wipe(); }
  WipedBytes& operator=(WipedBytes&& other) noexcept {
    if (this != &other) {
      bytes_ = other.bytes_;
      other.wipe();
    }
    return *this;
  }
  WipedBytes(const WipedBytes&) = delete;
  WipedBytes& operator=(const WipedBytes&) = delete;
  // An explicit copy, for the rare place that must fork a state (compute into locals).
  WipedBytes clone() const {
    WipedBytes copy;
    copy.bytes_ = bytes_;
    return copy;
  }

  static constexpr std::size_t size() { return N; }
  std::uint8_t* data() { return bytes_.data(); }
  const std::uint8_t* data() const { return bytes_.data(); }
  std::span<std::uint8_t, N> span() { return bytes_; }
  std::span<const std::uint8_t, N> span() const { return bytes_; }
  void wipe() { sodium_memzero(bytes_.data(), N); }

 private:
  std::array<std::uint8_t, N> bytes_{};
};

using Hash = std::array<std::uint8_t, hash_bytes>;
using ChainingKey = WipedBytes<hash_bytes>;
using CipherKey = WipedBytes<key_bytes>;
using DhOutput = WipedBytes<key_bytes>;

// HASH(data) and HMAC-HASH(key, data) with SHA-256.
Hash sha256(std::span<const std::uint8_t> data);
Hash sha256(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b);

// HKDF as the Noise spec defines it (HMAC-SHA-256; no salt/info; outputs 1..n of 32 bytes).
void hkdf2(std::span<const std::uint8_t, hash_bytes> chaining_key,
           std::span<const std::uint8_t> input_key_material,
           std::span<std::uint8_t, hash_bytes> out1, std::span<std::uint8_t, hash_bytes> out2);
void hkdf3(std::span<const std::uint8_t, hash_bytes> chaining_key,
           std::span<const std::uint8_t> input_key_material,
           std::span<std::uint8_t, hash_bytes> out1, std::span<std::uint8_t, hash_bytes> out2,
           std::span<std::uint8_t, hash_bytes> out3);

// An X25519 key pair (an ephemeral, or a static in the test vectors).
class DhKeyPair {
 public:
  static DhKeyPair generate();
  // From a 32-byte private key (clamped by X25519 itself, as the Noise vectors expect).
  static DhKeyPair from_secret(std::span<const std::uint8_t, key_bytes> secret);

  const std::array<std::uint8_t, key_bytes>& public_key() const { return public_; }
  // DH(self, remote) into out. False when the result is all zero (the remote key has small
  // order or is not a usable point): the handshake must fail.
  [[nodiscard]] bool dh(std::span<const std::uint8_t, key_bytes> remote_public,
                        DhOutput& out) const;
  void wipe() { secret_.wipe(); }

 private:
  DhKeyPair() = default;
  WipedBytes<key_bytes> secret_;
  std::array<std::uint8_t, key_bytes> public_{};
};

enum class Cipher : std::uint8_t {
  chachapoly,  // nonce = 4 zero bytes || little-endian 64-bit n
  aesgcm,      // nonce = 4 zero bytes || big-endian 64-bit n; only where the CPU has AES-NI
};

// k and n. Without a key it refuses to encrypt or decrypt (the Noise "no key, pass the plaintext
// through" rule is applied by SymmetricState, where it belongs, so a transport can never send
// plaintext by mistake). Neither call allocates.
class CipherState {
 public:
  CipherState() = default;
  CipherState(std::span<const std::uint8_t, key_bytes> key, Cipher cipher);
  ~CipherState() = default;  // k_ wipes itself
  CipherState(CipherState&& other) noexcept;
  CipherState& operator=(CipherState&& other) noexcept;
  CipherState(const CipherState&) = delete;
  CipherState& operator=(const CipherState&) = delete;
  CipherState clone() const;  // explicit, for computing into locals

  bool has_key() const { return has_key_; }
  Cipher cipher() const { return cipher_; }
  std::uint64_t nonce() const { return n_; }
  // True once n reached 2^64-1, which Noise reserves: nothing more can be sent or received.
  bool nonce_exhausted() const { return n_ == reserved_nonce; }
  void set_nonce_for_testing(std::uint64_t n) { n_ = n; }

  // Writes plaintext.size() + 16 bytes to out (which may be exactly the plaintext's buffer,
  // never a partial overlap) and advances n. False, with nothing written, when there is no
  // key, n is exhausted, or out is too small.
  [[nodiscard]] bool encrypt_with_ad(std::span<const std::uint8_t> ad,
                                     std::span<const std::uint8_t> plaintext,
                                     std::span<std::uint8_t> out);
  // Writes ciphertext.size() - 16 bytes to out (which may be exactly the ciphertext's buffer)
  // and advances n. False when there is no key, n is exhausted, the sizes do not fit, or the
  // tag does not authenticate; then n is unchanged and out holds zeros, never plaintext.
  [[nodiscard]] bool decrypt_with_ad(std::span<const std::uint8_t> ad,
                                     std::span<const std::uint8_t> ciphertext,
                                     std::span<std::uint8_t> out);

  void wipe();

 private:
  void nonce_bytes(std::uint8_t out[12]) const;

  CipherKey k_;
  std::uint64_t n_ = 0;
  bool has_key_ = false;
  Cipher cipher_ = Cipher::chachapoly;
};

// ck, h and a CipherState, through a handshake.
class SymmetricState {
 public:
  // InitializeSymmetric(protocol_name).
  SymmetricState(std::string_view protocol_name, Cipher cipher);
  SymmetricState(SymmetricState&&) noexcept = default;
  SymmetricState& operator=(SymmetricState&&) noexcept = default;
  SymmetricState(const SymmetricState&) = delete;
  SymmetricState& operator=(const SymmetricState&) = delete;
  SymmetricState clone() const;  // explicit, for computing into locals

  void mix_key(std::span<const std::uint8_t> input_key_material);
  void mix_hash(std::span<const std::uint8_t> data);
  // The handshake hash h: after the handshake, the session id.
  const Hash& handshake_hash() const { return h_; }
  bool has_key() const { return cipher_state_.has_key(); }
  // Bytes EncryptAndHash adds to a plaintext: 16 once a key is mixed in, 0 before.
  std::size_t overhead() const { return has_key() ? aead_tag_bytes : 0; }

  // EncryptAndHash: out.size() must be plaintext.size() + overhead(); out must not overlap it.
  [[nodiscard]] bool encrypt_and_hash(std::span<const std::uint8_t> plaintext,
                                      std::span<std::uint8_t> out);
  // DecryptAndHash: out.size() must be ciphertext.size() - overhead(). On failure h and n are
  // unchanged (the caller wipes the whole state anyway).
  [[nodiscard]] bool decrypt_and_hash(std::span<const std::uint8_t> ciphertext,
                                      std::span<std::uint8_t> out);
  // Split(): (c1, c2); c1 carries initiator-to-responder traffic.
  std::pair<CipherState, CipherState> split() const;

  void wipe();

 private:
  SymmetricState() = default;
  ChainingKey ck_;
  Hash h_{};
  CipherState cipher_state_;
  Cipher cipher_ = Cipher::chachapoly;
};

// True when the CPU and libsodium can run AES-256-GCM (AES-NI and PCLMUL).
bool aesgcm_available();

}  // namespace strelay
