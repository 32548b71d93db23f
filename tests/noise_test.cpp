// Tests for common/noise: the Noise core against the official vectors (cacophony and snow),
// run through a small generic pattern interpreter, plus the CipherState rules strelay relies on.
#include "common/noise.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

using namespace strelay;

namespace {

using Bytes = std::vector<std::uint8_t>;

Bytes from_hex(const std::string& hex) {
  REQUIRE(hex.size() % 2 == 0);
  Bytes out(hex.size() / 2);
  for (std::size_t i = 0; i < out.size(); ++i) {
    out[i] = static_cast<std::uint8_t>(std::stoul(hex.substr(2 * i, 2), nullptr, 16));
  }
  return out;
}

std::array<std::uint8_t, key_bytes> key_from_hex(const std::string& hex) {
  const Bytes bytes = from_hex(hex);
  REQUIRE(bytes.size() == key_bytes);
  std::array<std::uint8_t, key_bytes> out{};
  std::copy(bytes.begin(), bytes.end(), out.begin());
  return out;
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// ---------------------------------------------------------------- a generic pattern interpreter
// Enough of HandshakeState (spec section 5.3) for the interactive patterns in the vector file.
// The product runs only its signed handshake (common/handshake); this exists to prove the core.

enum class Token { e, s, ee, es, se, ss };

struct Pattern {
  bool responder_static_premessage = false;  // "<- s ..."
  std::vector<std::vector<Token>> messages;  // alternating, initiator first
};

const std::map<std::string, Pattern>& patterns() {
  using enum Token;
  static const std::map<std::string, Pattern> table{
      {"NN", {false, {{e}, {e, ee}}}},
      {"XK", {true, {{e, es}, {e, ee}, {s, se}}}},
      {"XX", {false, {{e}, {e, ee, s, es}, {s, se}}}},
      {"IK", {true, {{e, es, s, ss}, {e, ee, se}}}},
      {"XK1", {true, {{e}, {e, ee, es}, {s, se}}}},
  };
  return table;
}

struct Party {
  bool initiator;
  SymmetricState symmetric;
  std::optional<DhKeyPair> s;
  std::optional<DhKeyPair> e;
  std::optional<std::array<std::uint8_t, key_bytes>> rs;
  std::optional<std::array<std::uint8_t, key_bytes>> re;
  Bytes fixed_ephemeral;  // the vector's ephemeral private key, used when "e" is written

  bool mix_dh(const DhKeyPair& local, const std::array<std::uint8_t, key_bytes>& remote) {
    DhOutput out;
    if (!local.dh(remote, out)) return false;
    symmetric.mix_key(out.span());
    return true;
  }

  bool dh_token(Token token) {
    switch (token) {
      case Token::ee: return mix_dh(*e, *re);
      case Token::ss: return mix_dh(*s, *rs);
      case Token::es: return initiator ? mix_dh(*e, *rs) : mix_dh(*s, *re);
      case Token::se: return initiator ? mix_dh(*s, *re) : mix_dh(*e, *rs);
      default: return false;
    }
  }

  Bytes write_message(const std::vector<Token>& tokens, const Bytes& payload) {
    Bytes out;
    auto append_encrypted = [&](std::span<const std::uint8_t> plaintext) {
      Bytes part(plaintext.size() + symmetric.overhead());
      REQUIRE(symmetric.encrypt_and_hash(plaintext, part));
      out.insert(out.end(), part.begin(), part.end());
    };
    for (const Token token : tokens) {
      if (token == Token::e) {
        e = DhKeyPair::from_secret(std::span<const std::uint8_t, key_bytes>(fixed_ephemeral));
        out.insert(out.end(), e->public_key().begin(), e->public_key().end());
        symmetric.mix_hash(e->public_key());
      } else if (token == Token::s) {
        append_encrypted(s->public_key());
      } else {
        REQUIRE(dh_token(token));
      }
    }
    append_encrypted(payload);
    return out;
  }

  std::optional<Bytes> read_message(const std::vector<Token>& tokens,
                                    std::span<const std::uint8_t> in) {
    for (const Token token : tokens) {
      if (token == Token::e) {
        if (in.size() < key_bytes) return std::nullopt;
        re.emplace();
        std::copy_n(in.begin(), key_bytes, re->begin());
        symmetric.mix_hash(*re);
        in = in.subspan(key_bytes);
      } else if (token == Token::s) {
        const std::size_t size = key_bytes + symmetric.overhead();
        if (in.size() < size) return std::nullopt;
        rs.emplace();
        if (!symmetric.decrypt_and_hash(in.first(size), *rs)) return std::nullopt;
        in = in.subspan(size);
      } else if (!dh_token(token)) {
        return std::nullopt;
      }
    }
    if (in.size() < symmetric.overhead()) return std::nullopt;
    Bytes payload(in.size() - symmetric.overhead());
    if (!symmetric.decrypt_and_hash(in, payload)) return std::nullopt;
    return payload;
  }
};

struct VectorCounts {
  int ran = 0;
  int ran_chachapoly = 0;
  int skipped_aesgcm = 0;
};

Party make_party(bool initiator, const nlohmann::json& v, const std::string& name, Cipher cipher,
                 const Pattern& pattern) {
  const std::string prefix = initiator ? "init_" : "resp_";
  Party party{initiator, SymmetricState(name, cipher), {}, {}, {}, {}, {}};
  party.symmetric.mix_hash(from_hex(v.at(prefix + "prologue").get<std::string>()));
  if (v.contains(prefix + "static")) {
    party.s = DhKeyPair::from_secret(key_from_hex(v.at(prefix + "static").get<std::string>()));
  }
  if (v.contains(prefix + "remote_static")) {
    party.rs = key_from_hex(v.at(prefix + "remote_static").get<std::string>());
  }
  party.fixed_ephemeral = from_hex(v.at(prefix + "ephemeral").get<std::string>());
  if (pattern.responder_static_premessage) {
    party.symmetric.mix_hash(initiator ? *party.rs : party.s->public_key());
  }
  return party;
}

// Runs one vector: every handshake message and every transport message, both directions.
void run_vector(const nlohmann::json& v, VectorCounts& counts) {
  const std::string name = v.at("protocol_name").get<std::string>();
  CAPTURE(name);
  CAPTURE(v.at("vector_source").get<std::string>());
  // Noise_<pattern>_25519_<cipher>_SHA256
  const auto first = name.find('_');
  const auto second = name.find('_', first + 1);
  const std::string pattern_name = name.substr(first + 1, second - first - 1);
  REQUIRE(name.substr(second) == (name.find("AESGCM") != std::string::npos
                                      ? "_25519_AESGCM_SHA256"
                                      : "_25519_ChaChaPoly_SHA256"));
  const Cipher cipher =
      name.find("AESGCM") != std::string::npos ? Cipher::aesgcm : Cipher::chachapoly;
  if (cipher == Cipher::aesgcm && !aesgcm_available()) {
    MESSAGE("SKIPPED: this CPU has no AES-GCM in libsodium; vector " << name << " not run");
    ++counts.skipped_aesgcm;
    return;
  }
  if (v.contains("init_psks")) REQUIRE(v.at("init_psks").empty());  // no PSK modes here
  REQUIRE(patterns().count(pattern_name) == 1);
  const Pattern& pattern = patterns().at(pattern_name);

  Party init = make_party(true, v, name, cipher, pattern);
  Party resp = make_party(false, v, name, cipher, pattern);
  std::optional<std::pair<CipherState, CipherState>> init_split;
  std::optional<std::pair<CipherState, CipherState>> resp_split;
  const auto& messages = v.at("messages");
  REQUIRE(messages.size() > pattern.messages.size());  // at least one transport message
  for (std::size_t i = 0; i < messages.size(); ++i) {
    CAPTURE(i);
    const Bytes payload = from_hex(messages[i].at("payload").get<std::string>());
    const Bytes expected = from_hex(messages[i].at("ciphertext").get<std::string>());
    const bool from_initiator = i % 2 == 0;
    if (i < pattern.messages.size()) {
      Party& writer = from_initiator ? init : resp;
      Party& reader = from_initiator ? resp : init;
      CHECK(writer.write_message(pattern.messages[i], payload) == expected);
      const auto read = reader.read_message(pattern.messages[i], expected);
      REQUIRE(read.has_value());
      CHECK(*read == payload);
      if (i + 1 == pattern.messages.size()) {
        CHECK(init.symmetric.handshake_hash() == resp.symmetric.handshake_hash());
        if (v.contains("handshake_hash")) {  // the snow vectors do not carry it
          const Bytes h = from_hex(v.at("handshake_hash").get<std::string>());
          CHECK(Bytes(init.symmetric.handshake_hash().begin(),
                      init.symmetric.handshake_hash().end()) == h);
        }
        init_split = init.symmetric.split();
        resp_split = resp.symmetric.split();
      }
    } else {
      // Transport: c1 carries initiator-to-responder messages, c2 the other way.
      CipherState& sender = from_initiator ? init_split->first : resp_split->second;
      CipherState& receiver = from_initiator ? resp_split->first : init_split->second;
      Bytes ciphertext(payload.size() + aead_tag_bytes);
      REQUIRE(sender.encrypt_with_ad({}, payload, ciphertext));
      CHECK(ciphertext == expected);
      Bytes decrypted(payload.size());
      REQUIRE(receiver.decrypt_with_ad({}, expected, decrypted));
      CHECK(decrypted == payload);
    }
  }
  ++counts.ran;
  if (cipher == Cipher::chachapoly) ++counts.ran_chachapoly;
}

}  // namespace

TEST_CASE("the Noise core reproduces every official vector byte for byte") {
  const auto copy = std::filesystem::path(STRELAY_TESTS_DIR) / "vectors/noise-25519-sha256.json";
  const std::string text = read_file(copy);
  const auto shared = std::filesystem::path(STRELAY_SHARED_DIR) / "vectors/noise-25519-sha256.json";
  if (std::filesystem::exists(shared)) {
    CHECK_MESSAGE(read_file(shared) == text, "tests/vectors copy differs from " << shared);
  }
  const auto vectors = nlohmann::json::parse(text).at("vectors");
  REQUIRE(vectors.size() == 14);
  VectorCounts counts;
  for (const auto& v : vectors) run_vector(v, counts);
  // The file holds 10 ChaChaPoly and 4 AESGCM vectors; none may be silently left out.
  CHECK(counts.ran_chachapoly == 10);
  CHECK(counts.ran + counts.skipped_aesgcm == 14);
  if (aesgcm_available()) CHECK(counts.ran == 14);
}

TEST_CASE("HKDF is RFC 5869's with the chaining key as salt and no info") {
  // RFC 5869 test case 3: SHA-256, IKM = 22 x 0x0b, empty salt (an HMAC key of 32 zero bytes
  // is the same key), empty info; OKM is out1 || out2 truncated to 42 bytes.
  const std::array<std::uint8_t, hash_bytes> zero_ck{};
  const Bytes ikm(22, 0x0b);
  std::array<std::uint8_t, hash_bytes> out1{};
  std::array<std::uint8_t, hash_bytes> out2{};
  hkdf2(zero_ck, ikm, out1, out2);
  Bytes okm(2 * hash_bytes);
  std::copy(out1.begin(), out1.end(), okm.begin());
  std::copy(out2.begin(), out2.end(), okm.begin() + hash_bytes);
  okm.resize(42);
  CHECK(okm == from_hex("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d20"
                        "1395faa4b61a96c8"));
  std::array<std::uint8_t, hash_bytes> three1{};
  std::array<std::uint8_t, hash_bytes> three2{};
  std::array<std::uint8_t, hash_bytes> three3{};
  hkdf3(zero_ck, ikm, three1, three2, three3);
  CHECK(three1 == out1);
  CHECK(three2 == out2);
  CHECK(three3 != out2);
}

TEST_CASE("InitializeSymmetric pads short names and hashes long ones") {
  const SymmetricState short_name("Noise_NN_25519_ChaChaPoly_SHA256", Cipher::chachapoly);
  const std::string_view name = "Noise_NN_25519_ChaChaPoly_SHA256";  // exactly 32 bytes
  CHECK(Bytes(short_name.handshake_hash().begin(), short_name.handshake_hash().end()) ==
        Bytes(name.begin(), name.end()));
  const std::string_view long_name = "Noise_XK1sig_25519_ChaChaPoly_SHA256";
  const SymmetricState hashed(long_name, Cipher::chachapoly);
  CHECK(
      hashed.handshake_hash() ==
      sha256(std::span(reinterpret_cast<const std::uint8_t*>(long_name.data()), long_name.size())));
}

TEST_CASE("ChaChaPoly nonces are 4 zero bytes then n little-endian, AESGCM's big-endian") {
  const std::array<std::uint8_t, key_bytes> key{7};
  const Bytes plaintext{1, 2, 3};
  SUBCASE("chachapoly") {
    CipherState cs(key, Cipher::chachapoly);
    cs.set_nonce_for_testing(0x0102030405060708);
    Bytes ours(plaintext.size() + aead_tag_bytes);
    REQUIRE(cs.encrypt_with_ad({}, plaintext, ours));
    const std::uint8_t nonce[12] = {0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1};
    Bytes reference(ours.size());
    crypto_aead_chacha20poly1305_ietf_encrypt(reference.data(), nullptr, plaintext.data(),
                                              plaintext.size(), nullptr, 0, nullptr, nonce,
                                              key.data());
    CHECK(ours == reference);
  }
  SUBCASE("aesgcm") {
    if (!aesgcm_available()) {
      MESSAGE("SKIPPED: no AES-GCM on this CPU");
      return;
    }
    CipherState cs(key, Cipher::aesgcm);
    cs.set_nonce_for_testing(0x0102030405060708);
    Bytes ours(plaintext.size() + aead_tag_bytes);
    REQUIRE(cs.encrypt_with_ad({}, plaintext, ours));
    const std::uint8_t nonce[12] = {0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8};
    Bytes reference(ours.size());
    crypto_aead_aes256gcm_encrypt(reference.data(), nullptr, plaintext.data(), plaintext.size(),
                                  nullptr, 0, nullptr, nonce, key.data());
    CHECK(ours == reference);
  }
}

TEST_CASE("a failed decrypt does not advance the nonce and leaves no plaintext") {
  const std::array<std::uint8_t, key_bytes> key{42};
  CipherState sender(key, Cipher::chachapoly);
  CipherState receiver(key, Cipher::chachapoly);
  const Bytes plaintext{'s', 'e', 'c', 'r', 'e', 't'};
  Bytes ciphertext(plaintext.size() + aead_tag_bytes);
  REQUIRE(sender.encrypt_with_ad({}, plaintext, ciphertext));
  Bytes tampered = ciphertext;
  tampered[0] ^= 1;
  Bytes out(plaintext.size(), 0xee);
  CHECK_FALSE(receiver.decrypt_with_ad({}, tampered, out));
  CHECK(receiver.nonce() == 0);
  CHECK(out == Bytes(plaintext.size(), 0));
  const Bytes wrong_ad{1};
  CHECK_FALSE(receiver.decrypt_with_ad(wrong_ad, ciphertext, out));
  CHECK(receiver.nonce() == 0);
  REQUIRE(receiver.decrypt_with_ad({}, ciphertext, out));  // the genuine one still works
  CHECK(out == plaintext);
  CHECK(receiver.nonce() == 1);
  // Shorter than a tag: refused without touching anything.
  CHECK_FALSE(receiver.decrypt_with_ad({}, std::span(ciphertext).first(15), out));
  CHECK(receiver.nonce() == 1);
}

TEST_CASE("encryption and decryption work in place") {
  const std::array<std::uint8_t, key_bytes> key{9};
  CipherState sender(key, Cipher::chachapoly);
  CipherState receiver(key, Cipher::chachapoly);
  Bytes buffer{'i', 'n', ' ', 'p', 'l', 'a', 'c', 'e'};
  const Bytes original = buffer;
  buffer.resize(original.size() + aead_tag_bytes);
  REQUIRE(sender.encrypt_with_ad({}, std::span(buffer).first(original.size()), buffer));
  CHECK(Bytes(buffer.begin(), buffer.begin() + 8) != original);
  REQUIRE(receiver.decrypt_with_ad({}, buffer, buffer));
  CHECK(Bytes(buffer.begin(), buffer.begin() + 8) == original);
}

TEST_CASE("the reserved nonce 2^64-1 is never used") {
  const std::array<std::uint8_t, key_bytes> key{1};
  CipherState sender(key, Cipher::chachapoly);
  CipherState receiver(key, Cipher::chachapoly);
  sender.set_nonce_for_testing(reserved_nonce - 1);
  receiver.set_nonce_for_testing(reserved_nonce - 1);
  const Bytes plaintext{1};
  Bytes ciphertext(plaintext.size() + aead_tag_bytes);
  REQUIRE(sender.encrypt_with_ad({}, plaintext, ciphertext));  // n = 2^64-2: the last one
  CHECK(sender.nonce_exhausted());
  Bytes out(1);
  REQUIRE(receiver.decrypt_with_ad({}, ciphertext, out));
  CHECK(receiver.nonce_exhausted());
  Bytes next(plaintext.size() + aead_tag_bytes, 0xaa);
  CHECK_FALSE(sender.encrypt_with_ad({}, plaintext, next));
  CHECK(next == Bytes(next.size(), 0xaa));  // nothing written
  CHECK(sender.nonce() == reserved_nonce);
  CHECK_FALSE(receiver.decrypt_with_ad({}, ciphertext, out));
}

TEST_CASE("a CipherState without a key refuses rather than passing plaintext through") {
  CipherState empty;
  const Bytes plaintext{1, 2};
  Bytes out(plaintext.size() + aead_tag_bytes);
  CHECK_FALSE(empty.encrypt_with_ad({}, plaintext, out));
  CHECK_FALSE(empty.decrypt_with_ad({}, out, out));
  // A moved-from CipherState has no key either.
  CipherState keyed(std::array<std::uint8_t, key_bytes>{5}, Cipher::chachapoly);
  CipherState moved = std::move(keyed);
  CHECK(moved.has_key());
  CHECK_FALSE(keyed.has_key());  // NOLINT(bugprone-use-after-move): that is the point
  CHECK_FALSE(keyed.encrypt_with_ad({}, plaintext, out));
  // Too small an output buffer is refused.
  Bytes small(plaintext.size() + aead_tag_bytes - 1);
  CHECK_FALSE(moved.encrypt_with_ad({}, plaintext, small));
  CHECK(moved.nonce() == 0);
}

TEST_CASE("DecryptAndHash that fails leaves h unchanged") {
  SymmetricState a("Noise_test", Cipher::chachapoly);
  a.mix_key(Bytes{1, 2, 3});
  SymmetricState b = a.clone();
  const Bytes plaintext{4, 5};
  Bytes ciphertext(plaintext.size() + a.overhead());
  REQUIRE(a.encrypt_and_hash(plaintext, ciphertext));
  const Hash before = b.handshake_hash();
  ciphertext.back() ^= 0x80;
  Bytes out(plaintext.size());
  CHECK_FALSE(b.decrypt_and_hash(ciphertext, out));
  CHECK(b.handshake_hash() == before);
  ciphertext.back() ^= 0x80;
  REQUIRE(b.decrypt_and_hash(ciphertext, out));
  CHECK(out == plaintext);
  CHECK(b.handshake_hash() == a.handshake_hash());
}

TEST_CASE("X25519 refuses every small-order point, canonical or not") {
  const auto pair = DhKeyPair::generate();
  // The points of order 1, 2, 4 and 8 (and their encodings >= p), as u-coordinates.
  const std::vector<std::string> small_order{
      "0000000000000000000000000000000000000000000000000000000000000000",
      "0100000000000000000000000000000000000000000000000000000000000000",
      "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
      "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
      "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
      "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
      "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  };
  for (const auto& hex : small_order) {
    for (const bool high_bit : {false, true}) {  // X25519 ignores the top bit of u
      auto point = key_from_hex(hex);
      if (high_bit) point[31] |= 0x80;
      CAPTURE(hex);
      CAPTURE(high_bit);
      DhOutput out;
      CHECK_FALSE(pair.dh(point, out));
    }
  }
  // A real peer's key works, and both sides agree.
  const auto other = DhKeyPair::generate();
  DhOutput ab;
  DhOutput ba;
  REQUIRE(pair.dh(other.public_key(), ab));
  REQUIRE(other.dh(pair.public_key(), ba));
  CHECK(std::equal(ab.span().begin(), ab.span().end(), ba.span().begin()));
}
