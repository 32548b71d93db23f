#include "support/handshake_fixture.hpp"

#include <stdexcept>

#include "common/errors.hpp"

namespace strelay::test::xk1 {

Bytes bytes_of(std::string_view text) {
  return Bytes(text.begin(), text.end());
}

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

Key sha256_of(std::string_view text) {
  return sha256(bytes_of(text));
}

// The fixed inputs of the frozen vectors (tests/vectors/strelay-xk1sig.json).
Key node_seed() {
  Key seed{};
  for (std::size_t i = 0; i < seed.size(); ++i) seed[i] = static_cast<std::uint8_t>(i);
  return seed;
}
Key relay_seed() {
  return sha256_of("relay example seed");
}
Key node_ephemeral() {
  return sha256_of("strelay vector: initiator ephemeral");
}
Key relay_ephemeral() {
  return sha256_of("strelay vector: responder ephemeral");
}
const Bytes& first_request() {
  static const Bytes request = bytes_of("first request rides in msg3");
  return request;
}

Bytes prologue_of(HandshakeLayer layer) {
  Bytes out = bytes_of("strelay");
  out.push_back(1);  // the version
  if (layer == HandshakeLayer::end_to_end) {
    const Bytes label = bytes_of("end-to-end");
    out.insert(out.end(), label.begin(), label.end());
  }
  return out;
}

Contexts contexts_of(HandshakeLayer layer) {
  if (layer == HandshakeLayer::end_to_end) {
    return {"strelay v1 end-to-end: responder signature",
            "strelay v1 end-to-end: initiator signature"};
  }
  return {"strelay v1 handshake: responder signature", "strelay v1 handshake: initiator signature"};
}

const Bytes& first_payload_of(HandshakeLayer layer) {
  static const Bytes empty;
  return layer == HandshakeLayer::end_to_end ? empty : first_request();
}

const Keys& keys() {
  static const Keys k;
  return k;
}

InitiatorHandshake fixed_initiator(HandshakeLayer layer) {
  return InitiatorHandshake::with_ephemeral_for_testing(keys().node, keys().relay.public_key(),
                                                        layer, node_ephemeral());
}
ResponderHandshake fixed_responder(HandshakeLayer layer) {
  return ResponderHandshake::with_ephemeral_for_testing(keys().relay, layer, relay_ephemeral());
}

namespace {
Transcript record(HandshakeLayer layer) {
  auto initiator = fixed_initiator(layer);
  auto responder = fixed_responder(layer);
  Transcript out;
  out.msg1 = initiator.create_msg1();
  REQUIRE_FALSE(responder.consume_msg1(out.msg1));
  out.msg2 = responder.create_msg2();
  REQUIRE_FALSE(initiator.consume_msg2(out.msg2));
  out.msg3 = initiator.create_msg3(first_payload_of(layer));
  return out;
}
}  // namespace

// One recorded handshake between the fixed parties (deterministic: Ed25519 is too).
const Transcript& recorded(HandshakeLayer layer) {
  static const Transcript hop = record(HandshakeLayer::hop);
  static const Transcript end_to_end = record(HandshakeLayer::end_to_end);
  return layer == HandshakeLayer::end_to_end ? end_to_end : hop;
}

// Fixed-party states advanced to just before reading msg2 / msg3.
InitiatorHandshake initiator_awaiting_msg2(HandshakeLayer layer) {
  auto initiator = fixed_initiator(layer);
  initiator.create_msg1();
  return initiator;
}
ResponderHandshake responder_awaiting_msg3(HandshakeLayer layer) {
  auto responder = fixed_responder(layer);
  REQUIRE_FALSE(responder.consume_msg1(recorded(layer).msg1));
  REQUIRE(responder.create_msg2() == recorded(layer).msg2);
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
Signer signs_as(const Identity& who, std::string_view context) {
  return [&who, context](const Hash& h) { return who.sign(signed_message(context, h)); };
}
Signer fixed_signature(Signature sig) {
  return [sig](const Hash&) { return sig; };
}

SymmetricState manual_initial_state(const Key& responder_key,
                                    std::span<const std::uint8_t> prologue) {
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

DhKeyPair ephemeral(const std::optional<Key>& secret) {
  return secret ? DhKeyPair::from_secret(*secret) : DhKeyPair::generate();
}

// Runs a product responder against a manual initiator up to msg3; returns consume_msg3's result.
std::error_code relay_reads_manual_msg3(const Key& claimed_identity, const Signer& signer,
                                        HandshakeLayer layer,
                                        const std::optional<Bytes>& manual_prologue) {
  ResponderHandshake responder(keys().relay, layer);
  ManualInitiator node(keys().relay.public_key().bytes(), {},
                       manual_prologue ? *manual_prologue : prologue_of(layer));
  REQUIRE_FALSE(responder.consume_msg1(node.msg1()));
  const Bytes msg2 = responder.create_msg2();
  if (manual_prologue && *manual_prologue != prologue_of(layer)) {
    // The transcripts differ, so the manual side cannot even read msg2 (its read REQUIREs
    // success); it goes on blind, as a man in the middle would, hashing what it cannot open.
    node.state.mix_hash(std::span(msg2).first<key_bytes>());
    DhOutput ee;
    REQUIRE(node.e.dh(std::span(msg2).first<key_bytes>(), ee));
    node.state.mix_key(ee.span());
    node.state.mix_hash(std::span(msg2).subspan(key_bytes));
  } else {
    node.read_msg2(msg2);
  }
  Bytes payload;
  const auto ec =
      responder.consume_msg3(node.msg3(claimed_identity, signer, first_payload_of(layer)), payload);
  if (ec) {
    CHECK(responder.state() == ResponderHandshake::State::failed);
    CHECK(payload.empty());
    CHECK_THROWS_AS(responder.finish(), std::logic_error);
  } else {
    CHECK(payload == first_payload_of(layer));
    CHECK(responder.finish().peer.bytes() == claimed_identity);
  }
  return ec;
}

// Runs a product initiator against a manual responder; returns consume_msg2's result.
std::error_code node_reads_manual_msg2(const Key& mixed_key, const Signer& signer,
                                       HandshakeLayer layer,
                                       const std::optional<Bytes>& manual_prologue) {
  InitiatorHandshake initiator(keys().node, keys().relay.public_key(), layer);
  ManualResponder relay(mixed_key, {}, manual_prologue ? *manual_prologue : prologue_of(layer));
  const auto ec = initiator.consume_msg2(relay.msg2(initiator.create_msg1(), signer));
  if (ec) {
    CHECK(initiator.state() == InitiatorHandshake::State::failed);
    CHECK(initiator.create_msg3(first_payload_of(layer)).empty());
  }
  return ec;
}

}  // namespace strelay::test::xk1
