// Tests for common/handshake: the signed XK1 handshake, sans-io.
//
// Messages the product would never write (bad signatures, bad identities, other contexts) come
// from a second, independent writer built on the Noise core (ManualInitiator/ManualResponder);
// every negative case has a positive control through the same writer, so a test cannot pass
// because the writer itself is broken.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/errors.hpp"
#include "common/handshake.hpp"

using namespace strelay;

namespace {

using Bytes = std::vector<std::uint8_t>;
using Key = std::array<std::uint8_t, key_bytes>;

Bytes bytes_of(std::string_view text) { return Bytes(text.begin(), text.end()); }

std::string to_hex(std::span<const std::uint8_t> bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (const auto b : bytes) {
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

Key key_from_hex(std::string_view hex) {
  REQUIRE(hex.size() == 2 * key_bytes);
  Key out{};
  for (std::size_t i = 0; i < key_bytes; ++i) {
    out[i] = static_cast<std::uint8_t>(std::stoul(std::string(hex.substr(2 * i, 2)), nullptr, 16));
  }
  return out;
}

Key sha256_of(std::string_view text) { return sha256(bytes_of(text)); }

// The fixed inputs of the frozen vectors (tests/vectors/strelay-xk1sig.json).
Key node_seed() {
  Key seed{};
  for (std::size_t i = 0; i < seed.size(); ++i) seed[i] = static_cast<std::uint8_t>(i);
  return seed;
}
Key relay_seed() { return sha256_of("relay example seed"); }
Key node_ephemeral() { return sha256_of("strelay vector: initiator ephemeral"); }
Key relay_ephemeral() { return sha256_of("strelay vector: responder ephemeral"); }
const Bytes& first_request() {
  static const Bytes request = bytes_of("first request rides in msg3");
  return request;
}

struct Keys {
  Identity node = Identity::from_seed(node_seed());
  Identity relay = Identity::from_seed(relay_seed());
  Identity mallory = Identity::from_seed(sha256_of("mallory"));
};
const Keys& keys() {
  static const Keys k;
  return k;
}

InitiatorHandshake fixed_initiator() {
  return InitiatorHandshake::with_ephemeral_for_testing(keys().node, keys().relay.public_key(),
                                                        node_ephemeral());
}
ResponderHandshake fixed_responder() {
  return ResponderHandshake::with_ephemeral_for_testing(keys().relay, relay_ephemeral());
}

// One recorded handshake between the fixed parties (deterministic: Ed25519 is too).
struct Transcript {
  Bytes msg1, msg2, msg3;
};
const Transcript& recorded() {
  static const Transcript t = [] {
    auto initiator = fixed_initiator();
    auto responder = fixed_responder();
    Transcript out;
    out.msg1 = initiator.create_msg1();
    REQUIRE_FALSE(responder.consume_msg1(out.msg1));
    out.msg2 = responder.create_msg2();
    REQUIRE_FALSE(initiator.consume_msg2(out.msg2));
    out.msg3 = initiator.create_msg3(first_request());
    return out;
  }();
  return t;
}

// Fixed-party states advanced to just before reading msg2 / msg3.
InitiatorHandshake initiator_awaiting_msg2() {
  auto initiator = fixed_initiator();
  initiator.create_msg1();
  return initiator;
}
ResponderHandshake responder_awaiting_msg3() {
  auto responder = fixed_responder();
  REQUIRE_FALSE(responder.consume_msg1(recorded().msg1));
  REQUIRE(responder.create_msg2() == recorded().msg2);
  return responder;
}

bool pair_matches(CipherState& sender, CipherState& receiver, std::string_view text) {
  const Bytes plaintext = bytes_of(text);
  Bytes ciphertext(plaintext.size() + aead_tag_bytes);
  if (!sender.encrypt_with_ad({}, plaintext, ciphertext)) return false;
  Bytes decrypted(plaintext.size());
  if (!receiver.decrypt_with_ad({}, ciphertext, decrypted)) return false;
  return decrypted == plaintext;
}

// ---------------------------------------------------------------- an independent writer

Bytes signed_message(std::string_view context, const Hash& h) {
  Bytes out = bytes_of(context);
  out.insert(out.end(), h.begin(), h.end());
  return out;
}
using Signer = std::function<Signature(const Hash& h)>;
Signer signs_as(const Identity& who, std::string_view context) {
  return [&who, context](const Hash& h) { return who.sign(signed_message(context, h)); };
}
Signer fixed_signature(Signature sig) {
  return [sig](const Hash&) { return sig; };
}

SymmetricState manual_initial_state(const Key& responder_key,
                                    std::span<const std::uint8_t> prologue = current_preamble) {
  SymmetricState state(handshake_protocol_name, Cipher::chachapoly);
  state.mix_hash(prologue);
  state.mix_hash(responder_key);  // <- s
  return state;
}

Bytes encrypt_and_hash(SymmetricState& state, std::span<const std::uint8_t> plaintext) {
  Bytes out(plaintext.size() + state.overhead());
  REQUIRE(state.encrypt_and_hash(plaintext, out));
  return out;
}

// The relay's side, written out token by token; it signs whatever it is told to.
DhKeyPair ephemeral(const std::optional<Key>& secret) {
  return secret ? DhKeyPair::from_secret(*secret) : DhKeyPair::generate();
}

struct ManualResponder {
  SymmetricState state;
  DhKeyPair e;

  explicit ManualResponder(const Key& mixed_key, const std::optional<Key>& e_secret = {})
      : state(manual_initial_state(mixed_key)), e(ephemeral(e_secret)) {}
  Bytes msg2(std::span<const std::uint8_t> msg1, const Signer& signer) {
    state.mix_hash(msg1);  // e
    state.mix_hash({});    // empty payload
    Bytes out(e.public_key().begin(), e.public_key().end());
    state.mix_hash(e.public_key());  // e
    DhOutput ee;
    REQUIRE(e.dh(std::span<const std::uint8_t, key_bytes>(msg1.first<key_bytes>()), ee));
    state.mix_key(ee.span());  // ee
    const Bytes sig = encrypt_and_hash(state, signer(state.handshake_hash()));  // sig
    out.insert(out.end(), sig.begin(), sig.end());
    return out;
  }
};

// The node's side, written out token by token; it claims any identity and signs as told.
struct ManualInitiator {
  SymmetricState state;
  DhKeyPair e;

  explicit ManualInitiator(const Key& responder_key, const std::optional<Key>& e_secret = {})
      : state(manual_initial_state(responder_key)), e(ephemeral(e_secret)) {}
  Bytes msg1() {
    state.mix_hash(e.public_key());  // e
    state.mix_hash({});
    return Bytes(e.public_key().begin(), e.public_key().end());
  }
  void read_msg2(std::span<const std::uint8_t> msg2) {  // trusts msg2: it is not under test
    const auto re = msg2.first<key_bytes>();
    state.mix_hash(re);  // e
    DhOutput ee;
    REQUIRE(e.dh(re, ee));
    state.mix_key(ee.span());  // ee
    Signature sig{};
    REQUIRE(state.decrypt_and_hash(msg2.subspan(key_bytes), sig));  // sig
  }
  Bytes msg3(const Key& claimed_identity, const Signer& signer, std::span<const std::uint8_t> payload) {
    Bytes out = encrypt_and_hash(state, claimed_identity);  // s
    const Bytes sig = encrypt_and_hash(state, signer(state.handshake_hash()));  // sig
    out.insert(out.end(), sig.begin(), sig.end());
    const Bytes body = encrypt_and_hash(state, payload);
    out.insert(out.end(), body.begin(), body.end());
    return out;
  }
};

// Runs a product responder against a manual initiator up to msg3; returns consume_msg3's result.
std::error_code relay_reads_manual_msg3(const Key& claimed_identity, const Signer& signer) {
  ResponderHandshake responder(keys().relay);
  ManualInitiator node(keys().relay.public_key().bytes());
  REQUIRE_FALSE(responder.consume_msg1(node.msg1()));
  node.read_msg2(responder.create_msg2());
  Bytes payload;
  const auto ec = responder.consume_msg3(node.msg3(claimed_identity, signer, first_request()), payload);
  if (ec) {
    CHECK(responder.state() == ResponderHandshake::State::failed);
    CHECK(payload.empty());
    CHECK_THROWS_AS(responder.finish(), std::logic_error);
  } else {
    CHECK(payload == first_request());
    CHECK(responder.finish().peer.bytes() == claimed_identity);
  }
  return ec;
}

// Runs a product initiator against a manual responder; returns consume_msg2's result.
std::error_code node_reads_manual_msg2(const Key& mixed_key, const Signer& signer) {
  InitiatorHandshake initiator(keys().node, keys().relay.public_key());
  ManualResponder relay(mixed_key);
  const auto ec = initiator.consume_msg2(relay.msg2(initiator.create_msg1(), signer));
  if (ec) {
    CHECK(initiator.state() == InitiatorHandshake::State::failed);
    CHECK(initiator.create_msg3(first_request()).empty());
  }
  return ec;
}

// Ed25519 signature tricks.
Signature add_group_order_to_s(Signature sig) {
  // L = 2^252 + 27742317777372353535851937790883648493, little-endian.
  static constexpr std::array<std::uint8_t, 32> order{
      0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
      0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0x10};
  unsigned carry = 0;
  for (std::size_t i = 0; i < 32; ++i) {
    const unsigned sum = sig[32 + i] + order[i] + carry;
    sig[32 + i] = static_cast<std::uint8_t>(sum);
    carry = sum >> 8;
  }
  return sig;
}
// R = the identity point, S = 0: a lax verifier accepts it for any message under a small-order key.
Signature identity_point_signature() {
  Signature sig{};
  sig[0] = 1;
  return sig;
}

// The eight Ed25519 points of small order, as encodings.
const std::vector<Key>& small_order_ed25519() {
  static const std::vector<Key> points = [] {
    std::vector<Key> out;
    for (const char* hex : {
             "0100000000000000000000000000000000000000000000000000000000000000",
             "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
             "0000000000000000000000000000000000000000000000000000000000000080",
             "0000000000000000000000000000000000000000000000000000000000000000",
             "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
             "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
             "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
             "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
         }) {
      out.push_back(key_from_hex(hex));
    }
    return out;
  }();
  return points;
}
// y >= p (y = p + k, k = 0..18), with either sign bit: never a canonical encoding.
std::vector<Key> non_canonical_ed25519() {
  std::vector<Key> out;
  for (int k = 0; k <= 18; ++k) {
    for (const std::uint8_t top : {std::uint8_t{0x7f}, std::uint8_t{0xff}}) {
      Key key;
      key.fill(0xff);
      key[0] = static_cast<std::uint8_t>(0xed + k);
      key[31] = top;
      out.push_back(key);
    }
  }
  return out;
}

// The points of small order on Curve25519 (u-coordinates), with and without the ignored top bit.
std::vector<Key> small_order_x25519() {
  std::vector<Key> out;
  for (const char* hex : {
           "0000000000000000000000000000000000000000000000000000000000000000",
           "0100000000000000000000000000000000000000000000000000000000000000",
           "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
           "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
           "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
           "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
           "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
       }) {
    Key key = key_from_hex(hex);
    out.push_back(key);
    key[31] |= 0x80;
    out.push_back(key);
  }
  return out;
}

}  // namespace

// ================================================================ happy path

TEST_CASE("a full handshake in memory agrees on keys, session id and identities") {
  const auto node = Identity::generate();
  const auto relay = Identity::generate();
  InitiatorHandshake initiator(node, relay.public_key());
  ResponderHandshake responder(relay);

  const Bytes msg1 = initiator.create_msg1();
  CHECK(msg1.size() == handshake_msg1_bytes);
  REQUIRE_FALSE(responder.consume_msg1(msg1));
  const Bytes msg2 = responder.create_msg2();
  CHECK(msg2.size() == handshake_msg2_bytes);
  REQUIRE_FALSE(initiator.consume_msg2(msg2));
  CHECK(initiator.state() == InitiatorHandshake::State::msg2_verified);
  const Bytes request = bytes_of("listen");
  const Bytes msg3 = initiator.create_msg3(request);
  CHECK(msg3.size() == handshake_msg3_min_bytes + request.size());
  Bytes payload;
  REQUIRE_FALSE(responder.consume_msg3(msg3, payload));
  CHECK(payload == request);

  auto node_side = initiator.finish();
  auto relay_side = responder.finish();
  CHECK(initiator.state() == InitiatorHandshake::State::finished);
  CHECK(responder.state() == ResponderHandshake::State::finished);
  CHECK(node_side.session_id == relay_side.session_id);
  CHECK(node_side.peer == relay.public_key());
  CHECK(relay_side.peer == node.public_key());
  CHECK(pair_matches(node_side.send, relay_side.recv, "node to relay"));
  CHECK(pair_matches(relay_side.send, node_side.recv, "relay to node"));
  // The two directions have different keys: a frame reflected back does not decrypt.
  Bytes frame(5 + aead_tag_bytes);
  REQUIRE(node_side.send.encrypt_with_ad({}, bytes_of("hello"), frame));
  Bytes out(5);
  CHECK_FALSE(node_side.recv.decrypt_with_ad({}, frame, out));
  // A second finish is a driver bug.
  CHECK_THROWS_AS(initiator.finish(), std::logic_error);
  CHECK_THROWS_AS(responder.finish(), std::logic_error);
}

TEST_CASE("two handshakes between the same parties get different session ids and keys") {
  auto run = [] {
    InitiatorHandshake initiator(keys().node, keys().relay.public_key());
    ResponderHandshake responder(keys().relay);
    REQUIRE_FALSE(responder.consume_msg1(initiator.create_msg1()));
    REQUIRE_FALSE(initiator.consume_msg2(responder.create_msg2()));
    Bytes payload;
    REQUIRE_FALSE(responder.consume_msg3(initiator.create_msg3({}), payload));
    CHECK(payload.empty());
    return initiator.finish();
  };
  auto a = run();
  auto b = run();
  CHECK(a.session_id != b.session_id);
  CHECK_FALSE(pair_matches(a.send, b.recv, "cross-session"));
}

TEST_CASE("the msg3 payload is accepted at its maximum and refused one byte above") {
  SUBCASE("max") {
    auto initiator = initiator_awaiting_msg2();
    REQUIRE_FALSE(initiator.consume_msg2(recorded().msg2));
    const Bytes payload(max_handshake_payload_bytes, 0x5a);
    const Bytes msg3 = initiator.create_msg3(payload);
    CHECK(msg3.size() == max_frame_bytes);
    auto responder = responder_awaiting_msg3();
    Bytes out;
    REQUIRE_FALSE(responder.consume_msg3(msg3, out));
    CHECK(out == payload);
  }
  SUBCASE("max + 1 is refused before anything is written") {
    auto initiator = initiator_awaiting_msg2();
    REQUIRE_FALSE(initiator.consume_msg2(recorded().msg2));
    const Bytes payload(max_handshake_payload_bytes + 1, 0x5a);
    CHECK_THROWS_AS(initiator.create_msg3(payload), std::length_error);
    CHECK(initiator.state() == InitiatorHandshake::State::msg2_verified);
  }
  SUBCASE("a msg3 body above the frame limit is refused by the reader") {
    auto responder = responder_awaiting_msg3();
    Bytes out;
    CHECK(responder.consume_msg3(Bytes(max_frame_bytes + 1, 0), out) == errc::handshake_failed);
  }
}

TEST_CASE("calls out of order are refused") {
  auto initiator = fixed_initiator();
  CHECK(initiator.create_msg3(first_request()).empty());  // before msg1/msg2
  CHECK_THROWS_AS(initiator.finish(), std::logic_error);
  CHECK(initiator.create_msg1().size() == handshake_msg1_bytes);
  CHECK(initiator.create_msg1().empty());  // twice
  auto responder = fixed_responder();
  CHECK(responder.create_msg2().empty());  // before msg1
  Bytes payload;
  CHECK(responder.consume_msg3(recorded().msg3, payload) == errc::handshake_failed);
  CHECK(responder.state() == ResponderHandshake::State::failed);
  CHECK(responder.consume_msg1(recorded().msg1) == errc::handshake_failed);  // failed for good
  // A moved-from handshake is failed, not half-alive.
  auto moved = fixed_initiator();
  auto target = std::move(moved);
  CHECK(moved.state() == InitiatorHandshake::State::failed);  // NOLINT(bugprone-use-after-move)
  CHECK(target.state() == InitiatorHandshake::State::started);
}

// ================================================================ frozen vectors

TEST_CASE("the signed handshake reproduces its frozen vectors") {
  const auto path = std::filesystem::path(STRELAY_TESTS_DIR) / "vectors/strelay-xk1sig.json";
  const Transcript& t = recorded();
  auto node_side = [&] {
    auto i = fixed_initiator();
    i.create_msg1();
    REQUIRE_FALSE(i.consume_msg2(t.msg2));
    i.create_msg3(first_request());
    return i.finish();
  }();
  auto relay_side = [&] {
    auto r = responder_awaiting_msg3();
    Bytes payload;
    REQUIRE_FALSE(r.consume_msg3(t.msg3, payload));
    return r.finish();
  }();
  // The key schedule, derived here independently of the product: the only MixKey is ee.
  const auto e_i = DhKeyPair::from_secret(node_ephemeral());
  const auto e_r = DhKeyPair::from_secret(relay_ephemeral());
  DhOutput ee;
  REQUIRE(e_i.dh(e_r.public_key(), ee));
  const Hash h0 = sha256(bytes_of(handshake_protocol_name));
  Key ck{}, k{}, k1{}, k2{};
  hkdf2(h0, ee.span(), ck, k);
  hkdf2(ck, {}, k1, k2);

  nlohmann::ordered_json v;
  v["about"] = "strelay's signed handshake (docs/protocol.md section 2) between fixed test "
               "identities and ephemerals. Statics are Ed25519 seeds, ephemerals X25519 private "
               "keys. messages: msg1, msg2, msg3 (payload = the first request), then transport "
               "messages alternating initiator/responder, EncryptWithAd(empty ad, payload) with "
               "the Split() keys. Never use these keys outside tests.";
  v["protocol_name"] = std::string(handshake_protocol_name);
  v["init_prologue"] = to_hex(current_preamble);
  v["resp_prologue"] = to_hex(current_preamble);
  v["init_static"] = to_hex(node_seed());
  v["init_static_public"] = to_hex(keys().node.public_key().bytes());
  v["init_remote_static"] = to_hex(keys().relay.public_key().bytes());
  v["resp_static"] = to_hex(relay_seed());
  v["resp_static_public"] = to_hex(keys().relay.public_key().bytes());
  v["init_ephemeral"] = to_hex(node_ephemeral());
  v["resp_ephemeral"] = to_hex(relay_ephemeral());
  v["resp_signature_context"] = std::string(responder_signature_context);
  v["init_signature_context"] = std::string(initiator_signature_context);
  v["ee"] = to_hex(ee.span());
  v["handshake_key"] = to_hex(k);
  v["chaining_key"] = to_hex(ck);
  v["messages"] = nlohmann::ordered_json::array();
  auto add_message = [&](std::span<const std::uint8_t> payload, std::span<const std::uint8_t> ct) {
    nlohmann::ordered_json m;
    m["payload"] = to_hex(payload);
    m["ciphertext"] = to_hex(ct);
    v["messages"].push_back(m);
  };
  add_message({}, t.msg1);
  add_message({}, t.msg2);
  add_message(first_request(), t.msg3);
  const std::array<std::string_view, 4> transport{"ping from the node", "pong from the relay",
                                                  "second from the node", ""};
  for (std::size_t i = 0; i < transport.size(); ++i) {
    auto& sender = i % 2 == 0 ? node_side.send : relay_side.send;
    auto& receiver = i % 2 == 0 ? relay_side.recv : node_side.recv;
    const Bytes payload = bytes_of(transport[i]);
    Bytes ct(payload.size() + aead_tag_bytes);
    REQUIRE(sender.encrypt_with_ad({}, payload, ct));
    Bytes back(payload.size());
    REQUIRE(receiver.decrypt_with_ad({}, ct, back));
    CHECK(back == payload);
    // The independently derived keys give the same bytes.
    CipherState reference(i % 2 == 0 ? k1 : k2, Cipher::chachapoly);
    reference.set_nonce_for_testing(i / 2);
    Bytes expected(ct.size());
    REQUIRE(reference.encrypt_with_ad({}, payload, expected));
    CHECK(ct == expected);
    add_message(payload, ct);
  }
  v["handshake_hash"] = to_hex(node_side.session_id);
  v["init_send_key"] = to_hex(k1);
  v["resp_send_key"] = to_hex(k2);
  CHECK(node_side.session_id == relay_side.session_id);
  const std::string text = v.dump(1) + "\n";

  if (const char* regenerate = std::getenv("STRELAY_REGENERATE_VECTORS");
      regenerate != nullptr && std::string_view(regenerate) == "1") {
    std::ofstream(path, std::ios::binary) << text;
    MESSAGE("regenerated " << path);
  }
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "missing " << path << " (STRELAY_REGENERATE_VECTORS=1 writes it)");
  std::ostringstream frozen;
  frozen << in.rdbuf();
  CHECK_MESSAGE(frozen.str() == text, "the handshake no longer matches its frozen vectors");
  // The independent writer produces the same three messages from the vector's inputs.
  const Key relay_key = keys().relay.public_key().bytes();
  ManualInitiator manual_node(relay_key, node_ephemeral());
  ManualResponder manual_relay(relay_key, relay_ephemeral());
  CHECK(manual_node.msg1() == t.msg1);
  CHECK(manual_relay.msg2(t.msg1, signs_as(keys().relay, responder_signature_context)) == t.msg2);
  manual_node.read_msg2(t.msg2);
  CHECK(manual_node.msg3(keys().node.public_key().bytes(),
                         signs_as(keys().node, initiator_signature_context),
                         first_request()) == t.msg3);
}

TEST_CASE("an independent writer on the Noise core interoperates with the product") {
  // Positive controls for the manual writers used by the attack tests below.
  CHECK_FALSE(node_reads_manual_msg2(keys().relay.public_key().bytes(),
                                     signs_as(keys().relay, responder_signature_context)));
  CHECK_FALSE(relay_reads_manual_msg3(keys().node.public_key().bytes(),
                                      signs_as(keys().node, initiator_signature_context)));
}

// ================================================================ wrong relay, tampering

TEST_CASE("a ticket with the wrong relay key: the node aborts at msg2 and never writes msg3") {
  // The node pins mallory's key; the genuine relay answers.
  InitiatorHandshake initiator(keys().node, keys().mallory.public_key());
  ResponderHandshake responder(keys().relay);
  REQUIRE_FALSE(responder.consume_msg1(initiator.create_msg1()));
  CHECK(initiator.consume_msg2(responder.create_msg2()) == errc::relay_identity_mismatch);
  CHECK(initiator.state() == InitiatorHandshake::State::failed);
  CHECK(initiator.create_msg3(first_request()).empty());
  CHECK_THROWS_AS(initiator.finish(), std::logic_error);
}

TEST_CASE("a relay that hashes the pinned key but signs with another is a mismatch too") {
  CHECK(node_reads_manual_msg2(keys().relay.public_key().bytes(),
                               signs_as(keys().mallory, responder_signature_context)) ==
        errc::relay_identity_mismatch);
}

TEST_CASE("a preamble changed on the path (a downgrade) breaks the handshake") {
  const Preamble other = make_preamble(2);
  InitiatorHandshake initiator(keys().node, keys().relay.public_key(), other);
  ResponderHandshake responder(keys().relay);  // the current preamble
  REQUIRE_FALSE(responder.consume_msg1(initiator.create_msg1()));
  CHECK(initiator.consume_msg2(responder.create_msg2()) == errc::relay_identity_mismatch);
}

TEST_CASE("every single-bit flip of msg1 makes the handshake fail") {
  // msg1 is only a key, so the relay may accept a flipped one; but h then differs on the two
  // sides, and the node rejects msg2. No session comes into being on either side.
  const Bytes& msg1 = recorded().msg1;
  for (std::size_t bit = 0; bit < msg1.size() * 8; ++bit) {
    CAPTURE(bit);
    Bytes flipped = msg1;
    flipped[bit / 8] = static_cast<std::uint8_t>(flipped[bit / 8] ^ (1u << (bit % 8)));
    auto initiator = initiator_awaiting_msg2();
    auto responder = fixed_responder();
    if (!responder.consume_msg1(flipped)) {
      CHECK(initiator.consume_msg2(responder.create_msg2()));
    }
    CHECK(initiator.state() == InitiatorHandshake::State::failed);
    CHECK(initiator.create_msg3(first_request()).empty());
    CHECK_THROWS_AS(responder.finish(), std::logic_error);
  }
}

TEST_CASE("every single-bit flip of msg2 is rejected and nothing is committed") {
  const Bytes& msg2 = recorded().msg2;
  for (std::size_t bit = 0; bit < msg2.size() * 8; ++bit) {
    CAPTURE(bit);
    Bytes flipped = msg2;
    flipped[bit / 8] = static_cast<std::uint8_t>(flipped[bit / 8] ^ (1u << (bit % 8)));
    auto initiator = initiator_awaiting_msg2();
    CHECK(initiator.consume_msg2(flipped));
    CHECK(initiator.state() == InitiatorHandshake::State::failed);
    CHECK(initiator.create_msg3(first_request()).empty());
    CHECK_THROWS_AS(initiator.finish(), std::logic_error);
  }
}

TEST_CASE("every single-bit flip of msg3 is rejected and nothing is committed") {
  const Bytes& msg3 = recorded().msg3;
  for (std::size_t bit = 0; bit < msg3.size() * 8; ++bit) {
    CAPTURE(bit);
    Bytes flipped = msg3;
    flipped[bit / 8] = static_cast<std::uint8_t>(flipped[bit / 8] ^ (1u << (bit % 8)));
    auto responder = responder_awaiting_msg3();
    Bytes payload{1};
    CHECK(responder.consume_msg3(flipped, payload) == errc::handshake_failed);
    CHECK(payload.empty());
    CHECK(responder.state() == ResponderHandshake::State::failed);
    CHECK_THROWS_AS(responder.finish(), std::logic_error);
  }
}

TEST_CASE("every truncation and extension of each message is rejected") {
  const Transcript& t = recorded();
  auto variants = [](const Bytes& message) {
    std::vector<Bytes> out;
    for (std::size_t size = 0; size < message.size(); ++size) {
      out.emplace_back(message.begin(), message.begin() + static_cast<std::ptrdiff_t>(size));
    }
    for (const std::size_t extra : {std::size_t{1}, std::size_t{16}, std::size_t{1000}}) {
      Bytes longer = message;
      longer.resize(message.size() + extra, 0);
      out.push_back(longer);
    }
    return out;
  };
  SUBCASE("msg1") {
    for (const Bytes& m : variants(t.msg1)) {
      auto responder = fixed_responder();
      CHECK(responder.consume_msg1(m) == errc::handshake_failed);
      CHECK(responder.create_msg2().empty());
    }
  }
  SUBCASE("msg2") {
    for (const Bytes& m : variants(t.msg2)) {
      auto initiator = initiator_awaiting_msg2();
      CHECK(initiator.consume_msg2(m));
      CHECK(initiator.create_msg3(first_request()).empty());
    }
  }
  SUBCASE("msg3") {
    for (const Bytes& m : variants(t.msg3)) {
      auto responder = responder_awaiting_msg3();
      Bytes payload;
      CHECK(responder.consume_msg3(m, payload) == errc::handshake_failed);
      CHECK_THROWS_AS(responder.finish(), std::logic_error);
    }
  }
}

// ================================================================ replay and splicing

TEST_CASE("a recorded msg1 and msg3 replayed to a fresh relay do not authenticate") {
  InitiatorHandshake initiator(keys().node, keys().relay.public_key());
  ResponderHandshake original(keys().relay);
  const Bytes msg1 = initiator.create_msg1();
  REQUIRE_FALSE(original.consume_msg1(msg1));
  REQUIRE_FALSE(initiator.consume_msg2(original.create_msg2()));
  const Bytes msg3 = initiator.create_msg3(first_request());
  Bytes payload;
  REQUIRE_FALSE(original.consume_msg3(msg3, payload));

  ResponderHandshake fresh(keys().relay);  // a new connection: a new relay ephemeral
  REQUIRE_FALSE(fresh.consume_msg1(msg1));  // msg1 is only a key
  REQUIRE(fresh.create_msg2().size() == handshake_msg2_bytes);
  CHECK(fresh.consume_msg3(msg3, payload) == errc::handshake_failed);
  CHECK(payload.empty());
}

TEST_CASE("a recorded msg2 replayed to a fresh node does not authenticate") {
  InitiatorHandshake fresh(keys().node, keys().relay.public_key());
  fresh.create_msg1();
  CHECK(fresh.consume_msg2(recorded().msg2) == errc::relay_identity_mismatch);
}

TEST_CASE("a man in the middle cannot swap in its own identity at msg3") {
  // Mallory relays msg1 and msg2 between the node and the relay unchanged. The keys of msg3
  // come from ee between the node's and the relay's ephemerals, which Mallory lacks. Her best
  // moves: splice in a msg3 from her own session with the relay, or write msg3 from her own
  // state, which has the transcript's public bytes but her own DH.
  InitiatorHandshake node(keys().node, keys().relay.public_key());
  ResponderHandshake relay(keys().relay);
  const Bytes msg1 = node.create_msg1();
  REQUIRE_FALSE(relay.consume_msg1(msg1));
  const Bytes msg2 = relay.create_msg2();
  REQUIRE_FALSE(node.consume_msg2(msg2));  // the node is satisfied: it is the real relay

  SUBCASE("her msg3 from a parallel session of her own with the relay") {
    InitiatorHandshake own(keys().mallory, keys().relay.public_key());
    ResponderHandshake other_relay_session(keys().relay);
    REQUIRE_FALSE(other_relay_session.consume_msg1(own.create_msg1()));
    REQUIRE_FALSE(own.consume_msg2(other_relay_session.create_msg2()));
    Bytes payload;
    CHECK(relay.consume_msg3(own.create_msg3(first_request()), payload) ==
          errc::handshake_failed);
  }
  SUBCASE("her msg3 written over the observed transcript with her own ephemeral") {
    ManualInitiator mallory(keys().relay.public_key().bytes());
    mallory.state.mix_hash(msg1);  // e: the node's, as observed
    mallory.state.mix_hash({});
    const auto re = std::span(msg2).first<key_bytes>();
    mallory.state.mix_hash(re);  // e
    DhOutput ee;
    REQUIRE(mallory.e.dh(re, ee));  // ee: hers, not the node's
    mallory.state.mix_key(ee.span());
    // sig: she cannot decrypt it, but hashing needs no key, so her h is the genuine h and her
    // signature below covers the real transcript. Only her key is wrong, and that suffices.
    mallory.state.mix_hash(std::span(msg2).subspan(key_bytes));
    Bytes payload;
    CHECK(relay.consume_msg3(mallory.msg3(keys().mallory.public_key().bytes(),
                                          signs_as(keys().mallory, initiator_signature_context),
                                          first_request()),
                             payload) == errc::handshake_failed);
  }
  SUBCASE("the node's identity with the node's signature from another session") {
    // Even holding a session key of her own and a signature the node once made, she cannot
    // claim to be the node: that signature covers another h.
    const Hash old_h = sha256(bytes_of("an earlier session's h"));
    const Signature old = keys().node.sign(signed_message(initiator_signature_context, old_h));
    CHECK(relay_reads_manual_msg3(keys().node.public_key().bytes(), fixed_signature(old)) ==
          errc::handshake_failed);
  }
  // Whatever she tried, the node's own msg3 is still the only one the relay would accept.
}

TEST_CASE("a signature made for the other role or another version does not verify") {
  const Key relay_key = keys().relay.public_key().bytes();
  const Key node_key = keys().node.public_key().bytes();
  SUBCASE("msg2 signed with the initiator's context") {
    CHECK(node_reads_manual_msg2(relay_key, signs_as(keys().relay, initiator_signature_context)) ==
          errc::relay_identity_mismatch);
  }
  SUBCASE("msg2 signed with protocol version 2's context") {
    CHECK(node_reads_manual_msg2(relay_key,
                                 signs_as(keys().relay, "strelay v2 handshake: responder signature")) ==
          errc::relay_identity_mismatch);
  }
  SUBCASE("msg2 signed over h alone") {
    CHECK(node_reads_manual_msg2(relay_key, signs_as(keys().relay, "")) ==
          errc::relay_identity_mismatch);
  }
  SUBCASE("msg3 signed with the responder's context") {
    CHECK(relay_reads_manual_msg3(node_key, signs_as(keys().node, responder_signature_context)) ==
          errc::handshake_failed);
  }
  SUBCASE("msg3 signed with protocol version 2's context") {
    CHECK(relay_reads_manual_msg3(node_key,
                                  signs_as(keys().node, "strelay v2 handshake: initiator signature")) ==
          errc::handshake_failed);
  }
}

// ================================================================ bad keys and signatures

TEST_CASE("small-order and all-zero X25519 ephemerals are rejected") {
  for (const Key& point : small_order_x25519()) {
    CAPTURE(to_hex(point));
    SUBCASE("as the node's e in msg1") {
      auto responder = fixed_responder();
      CHECK(responder.consume_msg1(point) == errc::handshake_failed);
      CHECK(responder.create_msg2().empty());  // the relay signs nothing for it
    }
    SUBCASE("as the relay's e in msg2") {
      Bytes msg2 = recorded().msg2;
      std::copy(point.begin(), point.end(), msg2.begin());
      auto initiator = initiator_awaiting_msg2();
      // handshake_failed, not a mismatch: the DH check caught it before any tag was tried.
      CHECK(initiator.consume_msg2(msg2) == errc::handshake_failed);
    }
  }
}

TEST_CASE("malleated, all-zero and small-order Ed25519 signatures are rejected") {
  const Key relay_key = keys().relay.public_key().bytes();
  const Key node_key = keys().node.public_key().bytes();
  auto relay_signer = signs_as(keys().relay, responder_signature_context);
  auto node_signer = signs_as(keys().node, initiator_signature_context);
  SUBCASE("S + L in msg2") {
    const Signer malleated = [&](const Hash& h) { return add_group_order_to_s(relay_signer(h)); };
    CHECK(node_reads_manual_msg2(relay_key, malleated) == errc::relay_identity_mismatch);
  }
  SUBCASE("S + L in msg3") {
    const Signer malleated = [&](const Hash& h) { return add_group_order_to_s(node_signer(h)); };
    CHECK(relay_reads_manual_msg3(node_key, malleated) == errc::handshake_failed);
  }
  SUBCASE("all zero") {
    CHECK(node_reads_manual_msg2(relay_key, fixed_signature(Signature{})) ==
          errc::relay_identity_mismatch);
    CHECK(relay_reads_manual_msg3(node_key, fixed_signature(Signature{})) ==
          errc::handshake_failed);
  }
  SUBCASE("R of small order, S = 0") {
    for (const Key& r : small_order_ed25519()) {
      Signature sig{};
      std::copy(r.begin(), r.end(), sig.begin());
      CAPTURE(to_hex(r));
      CHECK(node_reads_manual_msg2(relay_key, fixed_signature(sig)) ==
            errc::relay_identity_mismatch);
      CHECK(relay_reads_manual_msg3(node_key, fixed_signature(sig)) == errc::handshake_failed);
    }
  }
}

TEST_CASE("invalid node identities in msg3 are rejected, even with a lax-valid signature") {
  // R = identity point and S = 0 satisfy the unbatched equation for any message under a
  // small-order key; a verifier that accepted small-order keys would let anyone in.
  std::vector<Key> bad = small_order_ed25519();
  for (const Key& k : non_canonical_ed25519()) bad.push_back(k);
  for (const Key& identity : bad) {
    CAPTURE(to_hex(identity));
    CHECK_FALSE(PublicKey::from_bytes(identity).has_value());
    CHECK(relay_reads_manual_msg3(identity, fixed_signature(identity_point_signature())) ==
          errc::handshake_failed);
  }
}
