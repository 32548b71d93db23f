// Tests for common/handshake under attack: a wrong relay key, tampering (every bit flip,
// truncation and extension of each message), replay and splicing, a man in the middle, and bad
// keys and signatures (small-order, non-canonical, malleated). Messages the product would never
// write come from the independent writer of support/handshake_fixture.hpp; every negative case
// has a positive control through the same writer.
#include <doctest/doctest.h>

#include <array>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/errors.hpp"
#include "common/handshake.hpp"
#include "support/handshake_fixture.hpp"

using namespace strelay;
using namespace strelay::test::xk1;

namespace {

// Ed25519 signature tricks.
Signature add_group_order_to_s(Signature sig) {
  // L = 2^252 + 27742317777372353535851937790883648493, little-endian.
  static constexpr std::array<std::uint8_t, 32> order{
      0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7,
      0xa2, 0xde, 0xf9, 0xde, 0x14, 0,    0,    0,    0,    0,    0,
      0,    0,    0,    0,    0,    0,    0,    0,    0,    0x10};
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

// ================================================================ wrong relay, tampering

TEST_CASE("a ticket with the wrong relay key: the node aborts at msg2 and never writes msg3") {
  // The node pins mallory's key; the genuine relay answers.
  InitiatorHandshake initiator(keys().node, keys().mallory.public_key(), HandshakeLayer::hop);
  ResponderHandshake responder(keys().relay, HandshakeLayer::hop);
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
  InitiatorHandshake initiator(keys().node, keys().relay.public_key(), HandshakeLayer::hop, other);
  ResponderHandshake responder(keys().relay, HandshakeLayer::hop);  // the current preamble
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
  InitiatorHandshake initiator(keys().node, keys().relay.public_key(), HandshakeLayer::hop);
  ResponderHandshake original(keys().relay, HandshakeLayer::hop);
  const Bytes msg1 = initiator.create_msg1();
  REQUIRE_FALSE(original.consume_msg1(msg1));
  REQUIRE_FALSE(initiator.consume_msg2(original.create_msg2()));
  const Bytes msg3 = initiator.create_msg3(first_request());
  Bytes payload;
  REQUIRE_FALSE(original.consume_msg3(msg3, payload));

  ResponderHandshake fresh(keys().relay, HandshakeLayer::hop);  // a new relay ephemeral
  REQUIRE_FALSE(fresh.consume_msg1(msg1));                      // msg1 is only a key
  REQUIRE(fresh.create_msg2().size() == handshake_msg2_bytes);
  CHECK(fresh.consume_msg3(msg3, payload) == errc::handshake_failed);
  CHECK(payload.empty());
}

TEST_CASE("a recorded msg2 replayed to a fresh node does not authenticate") {
  InitiatorHandshake fresh(keys().node, keys().relay.public_key(), HandshakeLayer::hop);
  fresh.create_msg1();
  CHECK(fresh.consume_msg2(recorded().msg2) == errc::relay_identity_mismatch);
}

TEST_CASE("a man in the middle cannot swap in its own identity at msg3") {
  // Mallory relays msg1 and msg2 between the node and the relay unchanged. The keys of msg3
  // come from ee between the node's and the relay's ephemerals, which Mallory lacks. Her best
  // moves: splice in a msg3 from her own session with the relay, or write msg3 from her own
  // state, which has the transcript's public bytes but her own DH.
  InitiatorHandshake node(keys().node, keys().relay.public_key(), HandshakeLayer::hop);
  ResponderHandshake relay(keys().relay, HandshakeLayer::hop);
  const Bytes msg1 = node.create_msg1();
  REQUIRE_FALSE(relay.consume_msg1(msg1));
  const Bytes msg2 = relay.create_msg2();
  REQUIRE_FALSE(node.consume_msg2(msg2));  // the node is satisfied: it is the real relay

  SUBCASE("her msg3 from a parallel session of her own with the relay") {
    InitiatorHandshake own(keys().mallory, keys().relay.public_key(), HandshakeLayer::hop);
    ResponderHandshake other_relay_session(keys().relay, HandshakeLayer::hop);
    REQUIRE_FALSE(other_relay_session.consume_msg1(own.create_msg1()));
    REQUIRE_FALSE(own.consume_msg2(other_relay_session.create_msg2()));
    Bytes payload;
    CHECK(relay.consume_msg3(own.create_msg3(first_request()), payload) == errc::handshake_failed);
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
    CHECK(relay.consume_msg3(
              mallory.msg3(keys().mallory.public_key().bytes(),
                           signs_as(keys().mallory, initiator_signature_context), first_request()),
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
    CHECK(node_reads_manual_msg2(
              relay_key, signs_as(keys().relay, "strelay v2 handshake: responder signature")) ==
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
    CHECK(relay_reads_manual_msg3(
              node_key, signs_as(keys().node, "strelay v2 handshake: initiator signature")) ==
          errc::handshake_failed);
  }
}

// ================================================================ hop versus end to end

// A key may be both a relay's identity and a node's (nothing prevents it). A lying relay could
// then take a node's tunnel to that friend and pipe it into the real relay holding the friend's
// key: were the two handshakes the same, the node would report "connected" to a relay. The
// layers' prologues and contexts differ, so the node refuses at msg2 and never reveals itself.
TEST_CASE(
    "relay-in-the-middle: an end-to-end initiator piped into a hop responder with the "
    "friend's key refuses at msg2") {
  const Identity& friend_key = keys().relay;  // the friend's identity, also a relay's
  SUBCASE("positive control: the friend's own end-to-end responder is accepted") {
    InitiatorHandshake node(keys().node, friend_key.public_key(), HandshakeLayer::end_to_end);
    ResponderHandshake peer(friend_key, HandshakeLayer::end_to_end);
    REQUIRE_FALSE(peer.consume_msg1(node.create_msg1()));
    CHECK_FALSE(node.consume_msg2(peer.create_msg2()));
  }
  SUBCASE("the relay holding the friend's key") {
    InitiatorHandshake node(keys().node, friend_key.public_key(), HandshakeLayer::end_to_end);
    ResponderHandshake relay(friend_key, HandshakeLayer::hop);
    REQUIRE_FALSE(relay.consume_msg1(node.create_msg1()));  // msg1 is only a key
    CHECK(node.consume_msg2(relay.create_msg2()) == errc::relay_identity_mismatch);
    CHECK(node.state() == InitiatorHandshake::State::failed);
    CHECK(node.create_msg3({}).empty());  // the node's identity never leaves it
  }
}

TEST_CASE("the converse: a hop initiator piped into an end-to-end responder is refused") {
  const Identity& relay_key = keys().relay;  // a relay's identity, also a listening node's
  SUBCASE("the node refuses msg2") {
    InitiatorHandshake node(keys().node, relay_key.public_key(), HandshakeLayer::hop);
    ResponderHandshake listener(relay_key, HandshakeLayer::end_to_end);
    REQUIRE_FALSE(listener.consume_msg1(node.create_msg1()));
    CHECK(node.consume_msg2(listener.create_msg2()) == errc::relay_identity_mismatch);
    CHECK(node.create_msg3(first_request()).empty());
  }
  SUBCASE("and a hop msg3 written blind is refused by the end-to-end responder") {
    CHECK(relay_reads_manual_msg3(keys().node.public_key().bytes(),
                                  signs_as(keys().node, contexts_of(HandshakeLayer::hop).initiator),
                                  HandshakeLayer::end_to_end,
                                  prologue_of(HandshakeLayer::hop)) == errc::handshake_failed);
  }
}

TEST_CASE("either separation alone suffices: the prologue and the contexts") {
  const Key peer_key = keys().relay.public_key().bytes();
  const Key node_key = keys().node.public_key().bytes();
  const Contexts hop = contexts_of(HandshakeLayer::hop);
  const Contexts e2e = contexts_of(HandshakeLayer::end_to_end);
  const Bytes hop_prologue = prologue_of(HandshakeLayer::hop);
  const Bytes e2e_prologue = prologue_of(HandshakeLayer::end_to_end);
  SUBCASE("msg2: the end-to-end prologue, signed with the hop context") {
    CHECK(node_reads_manual_msg2(peer_key, signs_as(keys().relay, hop.responder),
                                 HandshakeLayer::end_to_end,
                                 e2e_prologue) == errc::relay_identity_mismatch);
    CHECK(node_reads_manual_msg2(peer_key, signs_as(keys().relay, e2e.responder),
                                 HandshakeLayer::hop,
                                 hop_prologue) == errc::relay_identity_mismatch);
  }
  SUBCASE("msg2: the hop prologue, signed with the end-to-end context") {
    CHECK(node_reads_manual_msg2(peer_key, signs_as(keys().relay, e2e.responder),
                                 HandshakeLayer::end_to_end,
                                 hop_prologue) == errc::relay_identity_mismatch);
  }
  SUBCASE("msg3: the right prologue, signed with the other layer's context") {
    CHECK(relay_reads_manual_msg3(node_key, signs_as(keys().node, hop.initiator),
                                  HandshakeLayer::end_to_end) == errc::handshake_failed);
    CHECK(relay_reads_manual_msg3(node_key, signs_as(keys().node, e2e.initiator),
                                  HandshakeLayer::hop) == errc::handshake_failed);
  }
  SUBCASE("positive controls through the same writer") {
    CHECK_FALSE(node_reads_manual_msg2(peer_key, signs_as(keys().relay, e2e.responder),
                                       HandshakeLayer::end_to_end, e2e_prologue));
    CHECK_FALSE(relay_reads_manual_msg3(node_key, signs_as(keys().node, e2e.initiator),
                                        HandshakeLayer::end_to_end));
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
