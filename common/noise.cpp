#include "common/noise.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace strelay {

static_assert(crypto_hash_sha256_BYTES == hash_bytes);
static_assert(crypto_auth_hmacsha256_BYTES == hash_bytes);
static_assert(crypto_scalarmult_BYTES == key_bytes);
static_assert(crypto_scalarmult_SCALARBYTES == key_bytes);
static_assert(crypto_aead_chacha20poly1305_ietf_KEYBYTES == key_bytes);
static_assert(crypto_aead_chacha20poly1305_ietf_NPUBBYTES == 12);
static_assert(crypto_aead_chacha20poly1305_ietf_ABYTES == aead_tag_bytes);
static_assert(crypto_aead_aes256gcm_KEYBYTES == key_bytes);
static_assert(crypto_aead_aes256gcm_NPUBBYTES == 12);
static_assert(crypto_aead_aes256gcm_ABYTES == aead_tag_bytes);

// ---------------------------------------------------------------- HASH, HMAC, HKDF

Hash sha256(std::span<const std::uint8_t> data) {
  Hash out{};
  crypto_hash_sha256(out.data(), data.data(), data.size());
  return out;
}

Hash sha256(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) {
  crypto_hash_sha256_state state;
  crypto_hash_sha256_init(&state);
  crypto_hash_sha256_update(&state, a.data(), a.size());
  crypto_hash_sha256_update(&state, b.data(), b.size());
  Hash out{};
  crypto_hash_sha256_final(&state, out.data());
  return out;
}

namespace {

// HMAC-SHA-256(key, a || b), with a 32-byte key (HASHLEN: every Noise HMAC key is one).
void hmac(std::span<const std::uint8_t, hash_bytes> key, std::span<const std::uint8_t> a,
          std::span<const std::uint8_t> b, std::span<std::uint8_t, hash_bytes> out) {
  crypto_auth_hmacsha256_state state;
  crypto_auth_hmacsha256_init(&state, key.data(), key.size());
  crypto_auth_hmacsha256_update(&state, a.data(), a.size());
  crypto_auth_hmacsha256_update(&state, b.data(), b.size());
  crypto_auth_hmacsha256_final(&state, out.data());
  sodium_memzero(&state, sizeof state);  // it holds the key's pads
}

// The spec's HKDF: temp_key = HMAC(ck, ikm); out_i = HMAC(temp_key, out_{i-1} || byte(i)).
void hkdf(std::span<const std::uint8_t, hash_bytes> chaining_key,
          std::span<const std::uint8_t> input_key_material,
          std::span<const std::span<std::uint8_t, hash_bytes>> outputs) {
  WipedBytes<hash_bytes> temp_key;
  hmac(chaining_key, input_key_material, {}, temp_key.span());
  std::span<const std::uint8_t> previous;
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    const std::uint8_t counter = static_cast<std::uint8_t>(i + 1);
    hmac(temp_key.span(), previous, std::span(&counter, 1), outputs[i]);
    previous = outputs[i];
  }
}

}  // namespace

void hkdf2(std::span<const std::uint8_t, hash_bytes> chaining_key,
           std::span<const std::uint8_t> input_key_material,
           std::span<std::uint8_t, hash_bytes> out1, std::span<std::uint8_t, hash_bytes> out2) {
  const std::array<std::span<std::uint8_t, hash_bytes>, 2> outputs{out1, out2};
  hkdf(chaining_key, input_key_material, outputs);
}

void hkdf3(std::span<const std::uint8_t, hash_bytes> chaining_key,
           std::span<const std::uint8_t> input_key_material,
           std::span<std::uint8_t, hash_bytes> out1, std::span<std::uint8_t, hash_bytes> out2,
           std::span<std::uint8_t, hash_bytes> out3) {
  const std::array<std::span<std::uint8_t, hash_bytes>, 3> outputs{out1, out2, out3};
  hkdf(chaining_key, input_key_material, outputs);
}

// ---------------------------------------------------------------- DH

DhKeyPair DhKeyPair::generate() {
  WipedBytes<key_bytes> secret;
  randombytes_buf(secret.data(), secret.size());
  return from_secret(secret.span());
}

DhKeyPair DhKeyPair::from_secret(std::span<const std::uint8_t, key_bytes> secret) {
  DhKeyPair pair;
  std::copy(secret.begin(), secret.end(), pair.secret_.data());
  if (crypto_scalarmult_base(pair.public_.data(), pair.secret_.data()) != 0) {
    // Only an all-zero secret after clamping could do this, and clamping rules it out.
    throw std::runtime_error("crypto_scalarmult_base failed");
  }
  return pair;
}

bool DhKeyPair::dh(std::span<const std::uint8_t, key_bytes> remote_public, DhOutput& out) const {
  // libsodium returns -1 when the shared point is all zero (a small-order remote key).
  if (crypto_scalarmult(out.data(), secret_.data(), remote_public.data()) != 0) {
    out.wipe();
    return false;
  }
  return true;
}

bool aesgcm_available() {
  return crypto_aead_aes256gcm_is_available() == 1;
}

// ---------------------------------------------------------------- CipherState

CipherState::CipherState(std::span<const std::uint8_t, key_bytes> key, Cipher cipher)
    : has_key_(true), cipher_(cipher) {
  std::copy(key.begin(), key.end(), k_.data());
}

CipherState::CipherState(CipherState&& other) noexcept
    : k_(std::move(other.k_)),
      n_(std::exchange(other.n_, 0)),
      has_key_(std::exchange(other.has_key_, false)),
      cipher_(other.cipher_) {}

CipherState& CipherState::operator=(CipherState&& other) noexcept {
  if (this != &other) {
    k_ = std::move(other.k_);
    n_ = std::exchange(other.n_, 0);
    has_key_ = std::exchange(other.has_key_, false);
    cipher_ = other.cipher_;
  }
  return *this;
}

CipherState CipherState::clone() const {
  CipherState copy;
  copy.k_ = k_.clone();
  copy.n_ = n_;
  copy.has_key_ = has_key_;
  copy.cipher_ = cipher_;
  return copy;
}

void CipherState::wipe() {
  k_.wipe();
  n_ = 0;
  has_key_ = false;
}

void CipherState::nonce_bytes(std::uint8_t out[12]) const {
  std::memset(out, 0, 4);
  for (int i = 0; i < 8; ++i) {
    const auto byte = static_cast<std::uint8_t>(n_ >> (8 * i));
    if (cipher_ == Cipher::chachapoly) {
      out[4 + i] = byte;  // little-endian
    } else {
      out[11 - i] = byte;  // big-endian
    }
  }
}

bool CipherState::encrypt_with_ad(std::span<const std::uint8_t> ad,
                                  std::span<const std::uint8_t> plaintext,
                                  std::span<std::uint8_t> out) {
  if (!has_key_ || nonce_exhausted()) return false;
  if (out.size() < plaintext.size() || out.size() - plaintext.size() < aead_tag_bytes) return false;
  std::uint8_t nonce[12];
  nonce_bytes(nonce);
  int rc = -1;
  if (cipher_ == Cipher::chachapoly) {
    rc = crypto_aead_chacha20poly1305_ietf_encrypt(out.data(), nullptr, plaintext.data(),
                                                   plaintext.size(), ad.data(), ad.size(), nullptr,
                                                   nonce, k_.data());
  } else if (aesgcm_available()) {
    rc = crypto_aead_aes256gcm_encrypt(out.data(), nullptr, plaintext.data(), plaintext.size(),
                                       ad.data(), ad.size(), nullptr, nonce, k_.data());
  }
  if (rc != 0) return false;
  ++n_;
  return true;
}

bool CipherState::decrypt_with_ad(std::span<const std::uint8_t> ad,
                                  std::span<const std::uint8_t> ciphertext,
                                  std::span<std::uint8_t> out) {
  if (!has_key_ || nonce_exhausted()) return false;
  if (ciphertext.size() < aead_tag_bytes) return false;
  const std::size_t plaintext_size = ciphertext.size() - aead_tag_bytes;
  if (out.size() < plaintext_size) return false;
  std::uint8_t nonce[12];
  nonce_bytes(nonce);
  int rc = -1;
  if (cipher_ == Cipher::chachapoly) {
    rc = crypto_aead_chacha20poly1305_ietf_decrypt(out.data(), nullptr, nullptr, ciphertext.data(),
                                                   ciphertext.size(), ad.data(), ad.size(), nonce,
                                                   k_.data());
  } else if (aesgcm_available()) {
    rc = crypto_aead_aes256gcm_decrypt(out.data(), nullptr, nullptr, ciphertext.data(),
                                       ciphertext.size(), ad.data(), ad.size(), nonce, k_.data());
  }
  if (rc != 0) {
    sodium_memzero(out.data(), plaintext_size);  // never leave unauthenticated plaintext
    return false;
  }
  ++n_;
  return true;
}

// ---------------------------------------------------------------- SymmetricState

SymmetricState::SymmetricState(std::string_view protocol_name, Cipher cipher) : cipher_(cipher) {
  const auto name =
      std::span(reinterpret_cast<const std::uint8_t*>(protocol_name.data()), protocol_name.size());
  if (name.size() <= hash_bytes) {
    std::copy(name.begin(), name.end(), h_.begin());  // padded with zeros
  } else {
    h_ = sha256(name);
  }
  std::copy(h_.begin(), h_.end(), ck_.data());
}

SymmetricState SymmetricState::clone() const {
  SymmetricState copy;
  copy.ck_ = ck_.clone();
  copy.h_ = h_;
  copy.cipher_state_ = cipher_state_.clone();
  copy.cipher_ = cipher_;
  return copy;
}

void SymmetricState::mix_key(std::span<const std::uint8_t> input_key_material) {
  ChainingKey next_ck;
  CipherKey temp_k;
  hkdf2(ck_.span(), input_key_material, next_ck.span(), temp_k.span());
  ck_ = std::move(next_ck);
  cipher_state_ = CipherState(temp_k.span(), cipher_);  // HASHLEN = 32: no truncation
}

void SymmetricState::mix_hash(std::span<const std::uint8_t> data) {
  h_ = sha256(h_, data);
}

bool SymmetricState::encrypt_and_hash(std::span<const std::uint8_t> plaintext,
                                      std::span<std::uint8_t> out) {
  if (out.size() != plaintext.size() + overhead()) return false;
  if (!has_key()) {
    std::copy(plaintext.begin(), plaintext.end(), out.begin());
  } else if (!cipher_state_.encrypt_with_ad(h_, plaintext, out)) {
    return false;
  }
  mix_hash(out);
  return true;
}

bool SymmetricState::decrypt_and_hash(std::span<const std::uint8_t> ciphertext,
                                      std::span<std::uint8_t> out) {
  if (ciphertext.size() < overhead() || out.size() != ciphertext.size() - overhead()) {
    return false;
  }
  const Hash next_h = sha256(h_, ciphertext);  // before out is written: out may alias
  if (!has_key()) {
    std::copy(ciphertext.begin(), ciphertext.end(), out.begin());
  } else if (!cipher_state_.decrypt_with_ad(h_, ciphertext, out)) {
    return false;
  }
  h_ = next_h;
  return true;
}

std::pair<CipherState, CipherState> SymmetricState::split() const {
  CipherKey k1;
  CipherKey k2;
  hkdf2(ck_.span(), {}, k1.span(), k2.span());
  return {CipherState(k1.span(), cipher_), CipherState(k2.span(), cipher_)};
}

void SymmetricState::wipe() {
  ck_.wipe();
  sodium_memzero(h_.data(), h_.size());
  cipher_state_.wipe();
}

}  // namespace strelay
