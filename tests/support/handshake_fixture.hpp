// Shared by the handshake's tests (tests/handshake_test.cpp: round trips and the frozen vectors;
// tests/handshake_attack_test.cpp: wrong relay, tampering, replay, bad keys and signatures):
//
//  - the fixed parties of the frozen vectors (tests/vectors/strelay-xk1sig.json for the hop,
//    strelay-xk1sig-e2e.json end to end: the same parties and ephemerals), and one recorded
//    handshake between them per layer;
//  - an independent writer on the Noise core (ManualInitiator, ManualResponder) for messages the
//    product would never write (bad signatures, bad identities, other contexts). Every negative
//    case has a positive control through the same writer, so a test cannot pass because the
//    writer itself is broken. The writer builds each layer's prologue and contexts from its own
//    literals (prologue_of, contexts_of), not from the product's constants.
//
// The helpers below default to the hop layer (most attacks are the same in both); the
// end-to-end cases name their layer.
#pragma once

#include <doctest/doctest.h>

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "common/handshake.hpp"
#include "common/preamble.hpp"

namespace strelay::test::xk1 {

using Bytes = std::vector<std::uint8_t>;
using Key = std::array<std::uint8_t, key_bytes>;

Bytes bytes_of(std::string_view text);
std::string to_hex(std::span<const std::uint8_t> bytes);
Key key_from_hex(std::string_view hex);  // REQUIREs 64 hex digits
Key sha256_of(std::string_view text);

// The fixed inputs of the frozen vectors.
Key node_seed();
Key relay_seed();
Key node_ephemeral();
Key relay_ephemeral();
const Bytes& first_request();

struct Keys {
  Identity node = Identity::from_seed(node_seed());
  Identity relay = Identity::from_seed(relay_seed());
  Identity mallory = Identity::from_seed(sha256_of("mallory"));
};
const Keys& keys();

// The prologue and the two signature contexts of a layer, written out independently.
Bytes prologue_of(HandshakeLayer layer);
struct Contexts {
  std::string_view responder, initiator;
};
Contexts contexts_of(HandshakeLayer layer);
// The first request of the vectors: the hop's; end to end, msg3's payload is always empty.
const Bytes& first_payload_of(HandshakeLayer layer);

InitiatorHandshake fixed_initiator(HandshakeLayer layer = HandshakeLayer::hop);
ResponderHandshake fixed_responder(HandshakeLayer layer = HandshakeLayer::hop);

// One recorded handshake between the fixed parties (deterministic: Ed25519 is too); msg3
// carries first_payload_of(layer).
struct Transcript {
  Bytes msg1, msg2, msg3;
};
const Transcript& recorded(HandshakeLayer layer = HandshakeLayer::hop);

// Fixed-party states advanced to just before reading msg2 / msg3.
InitiatorHandshake initiator_awaiting_msg2(HandshakeLayer layer = HandshakeLayer::hop);
ResponderHandshake responder_awaiting_msg3(HandshakeLayer layer = HandshakeLayer::hop);

// True when `text` sealed by `sender` opens with `receiver`.
bool pair_matches(CipherState& sender, CipherState& receiver, std::string_view text);

// ---------------------------------------------------------------- an independent writer

// context || h, the bytes each side signs.
Bytes signed_message(std::string_view context, const Hash& h);
using Signer = std::function<Signature(const Hash& h)>;
Signer signs_as(const Identity& who, std::string_view context);  // `who` must outlive it
Signer fixed_signature(Signature sig);

SymmetricState manual_initial_state(const Key& responder_key,
                                    std::span<const std::uint8_t> prologue = current_preamble);
Bytes encrypt_and_hash(SymmetricState& state, std::span<const std::uint8_t> plaintext);
// A new ephemeral, or the one from `secret`.
DhKeyPair ephemeral(const std::optional<Key>& secret);

// The relay's side, written out token by token; it signs whatever it is told to.
struct ManualResponder {
  SymmetricState state;
  DhKeyPair e;

  explicit ManualResponder(const Key& mixed_key, const std::optional<Key>& e_secret = {},
                           std::span<const std::uint8_t> prologue = current_preamble)
      : state(manual_initial_state(mixed_key, prologue)), e(ephemeral(e_secret)) {}
  Bytes msg2(std::span<const std::uint8_t> msg1, const Signer& signer) {
    state.mix_hash(msg1);  // e
    state.mix_hash({});    // empty payload
    Bytes out(e.public_key().begin(), e.public_key().end());
    state.mix_hash(e.public_key());  // e
    DhOutput ee;
    REQUIRE(e.dh(std::span<const std::uint8_t, key_bytes>(msg1.first<key_bytes>()), ee));
    state.mix_key(ee.span());                                                   // ee
    const Bytes sig = encrypt_and_hash(state, signer(state.handshake_hash()));  // sig
    out.insert(out.end(), sig.begin(), sig.end());
    return out;
  }
};

// The node's side, written out token by token; it claims any identity and signs as told.
struct ManualInitiator {
  SymmetricState state;
  DhKeyPair e;

  explicit ManualInitiator(const Key& responder_key, const std::optional<Key>& e_secret = {},
                           std::span<const std::uint8_t> prologue = current_preamble)
      : state(manual_initial_state(responder_key, prologue)), e(ephemeral(e_secret)) {}
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
  Bytes msg3(const Key& claimed_identity, const Signer& signer,
             std::span<const std::uint8_t> payload) {
    Bytes out = encrypt_and_hash(state, claimed_identity);                      // s
    const Bytes sig = encrypt_and_hash(state, signer(state.handshake_hash()));  // sig
    out.insert(out.end(), sig.begin(), sig.end());
    const Bytes body = encrypt_and_hash(state, payload);
    out.insert(out.end(), body.begin(), body.end());
    return out;
  }
};

// Runs a product responder of `layer` against a manual initiator up to msg3; returns
// consume_msg3's result. The manual side's prologue is prologue_of(layer) unless given.
std::error_code relay_reads_manual_msg3(const Key& claimed_identity, const Signer& signer,
                                        HandshakeLayer layer = HandshakeLayer::hop,
                                        const std::optional<Bytes>& manual_prologue = {});
// Runs a product initiator of `layer` against a manual responder; returns consume_msg2's
// result. The manual side's prologue is prologue_of(layer) unless given.
std::error_code node_reads_manual_msg2(const Key& mixed_key, const Signer& signer,
                                       HandshakeLayer layer = HandshakeLayer::hop,
                                       const std::optional<Bytes>& manual_prologue = {});

}  // namespace strelay::test::xk1
