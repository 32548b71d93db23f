// The signed handshake, sans-io: Noise XK1 in shape, with Ed25519 signatures for authentication
// (docs/protocol.md section 2 is the specification; tests/vectors/strelay-xk1sig.json and
// strelay-xk1sig-e2e.json freeze it).
//
//   InitializeSymmetric("Noise_XK1sig_25519_ChaChaPoly_SHA256"); MixHash(prologue)
//   <- s          MixHash(responder's Ed25519 public key, from the ticket)
//   ...
//   -> e          msg1 = e.pub                              (payload: empty, MixHash(""))
//   <- e, ee, sig msg2 = e.pub || Enc(Sign_R(ctx_responder || h))
//   -> s, sig     msg3 = Enc(s_I) || Enc(Sign_I(ctx_initiator || h)) || Enc(payload)
//   Split(): initiator sends with c1, responder with c2; h is the session id.
//
// Each side is a state machine of create_x()/consume_x() pairs over message bodies (without the
// 2-byte length prefix, which the driver reads and writes). Every consume computes into locals
// and commits only once every check passed; any failure wipes the state for good (`failed`),
// and the error carries no detail meant for the wire.
//
// Calls out of order: create_x() returns an empty vector (never a valid message), consume_x()
// fails the handshake, and finish() throws std::logic_error (a driver bug).
//
// It runs in two layers (HandshakeLayer), the same messages in separate domains: the prologue is
// the preamble on a hop and preamble || "end-to-end" end to end, and each layer signs with its
// own context strings. A key that is both a relay's and a node's identity therefore cannot be
// used to pass a relay off as the node, or the node as a relay.
//
// The Identity passed in must outlive the handshake object (it signs during the handshake).
#pragma once

#include <cstdint>
#include <span>
#include <system_error>
#include <vector>

#include "common/errors.hpp"
#include "common/keys.hpp"
#include "common/noise.hpp"
#include "common/preamble.hpp"
#include "common/protocol.hpp"

namespace strelay {

// Which handshake this is. Always chosen explicitly: there is no default.
enum class HandshakeLayer : std::uint8_t {
  hop,         // node <-> relay: prologue = preamble; ctx "strelay v1 handshake: ..."
  end_to_end,  // node <-> node inside a tunnel: prologue = preamble || "end-to-end";
               // ctx "strelay v1 end-to-end: ..."
};
const char* to_string(HandshakeLayer layer);

// What a finished handshake hands to the transport. Move-only; the keys wipe themselves.
struct HandshakeResult {
  CipherState send;                                   // initiator: c1 from Split; responder: c2
  CipherState recv;                                   // initiator: c2; responder: c1
  std::array<std::uint8_t, hash_bytes> session_id{};  // h at the end of the handshake
  PublicKey peer;                                     // the authenticated remote identity
};

// The node's side. It knows the relay's key from the ticket (the `<- s` pre-message).
class InitiatorHandshake {
 public:
  enum class State : std::uint8_t {
    started,        // nothing sent
    msg1_sent,      // e sent
    msg2_verified,  // the responder proved it holds the pinned key
    msg3_sent,      // our identity sent; finish() may be called
    finished,       // the result was handed out
    failed,         // terminal; everything wiped
  };

  // `preamble` is the one both sides exchanged (the current version's by default); the prologue
  // is made of it and the layer.
  InitiatorHandshake(const Identity& self, const PublicKey& responder, HandshakeLayer layer,
                     std::span<const std::uint8_t, preamble_bytes> preamble = current_preamble);
  // Test and vector hook: a fixed ephemeral private key instead of a random one.
  static InitiatorHandshake with_ephemeral_for_testing(
      const Identity& self, const PublicKey& responder, HandshakeLayer layer,
      std::span<const std::uint8_t, key_bytes> e_secret,
      std::span<const std::uint8_t, preamble_bytes> preamble = current_preamble);

  InitiatorHandshake(InitiatorHandshake&& other) noexcept;
  InitiatorHandshake& operator=(InitiatorHandshake&&) = delete;
  InitiatorHandshake(const InitiatorHandshake&) = delete;
  InitiatorHandshake& operator=(const InitiatorHandshake&) = delete;

  // msg1 (32 bytes).
  std::vector<std::uint8_t> create_msg1();
  // msg2. errc::relay_identity_mismatch when msg2 does not authenticate under the pinned key
  // (its tag or its signature): stop here and never send msg3. errc::handshake_failed when it
  // is malformed (length, unusable ephemeral).
  std::error_code consume_msg2(std::span<const std::uint8_t> body);
  // msg3 with the first request as payload (at most max_handshake_payload_bytes, else
  // std::length_error). Empty unless msg2 was verified.
  std::vector<std::uint8_t> create_msg3(std::span<const std::uint8_t> payload);
  // Only after create_msg3.
  HandshakeResult finish();

  State state() const { return state_; }
  HandshakeLayer layer() const { return layer_; }

 private:
  InitiatorHandshake(const Identity& self, const PublicKey& responder, HandshakeLayer layer,
                     DhKeyPair e, std::span<const std::uint8_t, preamble_bytes> preamble);
  std::error_code fail(errc code);

  const Identity* self_;
  PublicKey responder_;
  HandshakeLayer layer_;
  DhKeyPair e_;
  SymmetricState symmetric_;
  State state_ = State::started;
};

// The relay's side. Any valid identity may authenticate; policy (allowlists) comes after.
class ResponderHandshake {
 public:
  enum class State : std::uint8_t {
    started,        // nothing received
    msg1_received,  // the initiator's e is usable
    msg2_sent,      // our signature sent
    msg3_verified,  // the initiator proved its identity; finish() may be called
    finished,       // the result was handed out
    failed,         // terminal; everything wiped
  };

  ResponderHandshake(const Identity& self, HandshakeLayer layer,
                     std::span<const std::uint8_t, preamble_bytes> preamble = current_preamble);
  static ResponderHandshake with_ephemeral_for_testing(
      const Identity& self, HandshakeLayer layer, std::span<const std::uint8_t, key_bytes> e_secret,
      std::span<const std::uint8_t, preamble_bytes> preamble = current_preamble);

  ResponderHandshake(ResponderHandshake&& other) noexcept;
  ResponderHandshake& operator=(ResponderHandshake&&) = delete;
  ResponderHandshake(const ResponderHandshake&) = delete;
  ResponderHandshake& operator=(const ResponderHandshake&) = delete;

  // msg1; errc::handshake_failed for a wrong length or a small-order key.
  std::error_code consume_msg1(std::span<const std::uint8_t> body);
  // msg2 (112 bytes); empty unless msg1 was accepted.
  std::vector<std::uint8_t> create_msg2();
  // msg3; on success payload_out holds the first request. errc::handshake_failed otherwise
  // (payload_out is then empty).
  std::error_code consume_msg3(std::span<const std::uint8_t> body,
                               std::vector<std::uint8_t>& payload_out);
  // Only after consume_msg3 succeeded; result.peer is the initiator's identity.
  HandshakeResult finish();

  State state() const { return state_; }
  HandshakeLayer layer() const { return layer_; }

 private:
  ResponderHandshake(const Identity& self, HandshakeLayer layer, DhKeyPair e,
                     std::span<const std::uint8_t, preamble_bytes> preamble);
  std::error_code fail();

  const Identity* self_;
  HandshakeLayer layer_;
  DhKeyPair e_;
  DhOutput ee_;  // computed when msg1 arrives, so a small-order e fails there; mixed into msg2
  SymmetricState symmetric_;
  PublicKey peer_;
  State state_ = State::started;
};

}  // namespace strelay
