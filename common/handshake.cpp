#include "common/handshake.hpp"

#include <algorithm>
#include <array>
#include <stdexcept>
#include <string_view>

#include "common/errors.hpp"

namespace strelay {

namespace {

static_assert(handshake_msg3_min_bytes == 144);
static_assert(max_handshake_payload_bytes == 65391);

// What separates the two layers (docs/protocol.md 2.4): a prologue label and the contexts.
struct Domain {
  std::string_view prologue_label;
  std::string_view responder_context;
  std::string_view initiator_context;
};

constexpr Domain domain_of(HandshakeLayer layer) {
  switch (layer) {
    case HandshakeLayer::hop: return {"", responder_signature_context, initiator_signature_context};
    case HandshakeLayer::end_to_end:
      return {end_to_end_prologue_label, end_to_end_responder_signature_context,
              end_to_end_initiator_signature_context};
  }
  throw std::invalid_argument("unknown HandshakeLayer");
}

// The message each side signs: context || h. Fixed-size, no allocation.
class SignedMessage {
 public:
  SignedMessage(std::string_view context, const Hash& h) : size_(context.size() + h.size()) {
    std::copy(context.begin(), context.end(), bytes_.begin());
    std::copy(h.begin(), h.end(), bytes_.begin() + static_cast<std::ptrdiff_t>(context.size()));
  }
  std::span<const std::uint8_t> bytes() const { return std::span(bytes_).first(size_); }

 private:
  static_assert(responder_signature_context.size() + hash_bytes <= 96);
  static_assert(initiator_signature_context.size() + hash_bytes <= 96);
  static_assert(end_to_end_responder_signature_context.size() + hash_bytes <= 96);
  static_assert(end_to_end_initiator_signature_context.size() + hash_bytes <= 96);
  std::array<std::uint8_t, 96> bytes_{};
  std::size_t size_;
};

SymmetricState initial_state(HandshakeLayer layer,
                             std::span<const std::uint8_t, preamble_bytes> preamble,
                             const PublicKey& responder) {
  // prologue = preamble || label, mixed as one MixHash (8 bytes on a hop, 18 end to end).
  const std::string_view label = domain_of(layer).prologue_label;
  std::array<std::uint8_t, preamble_bytes + end_to_end_prologue_label.size()> prologue{};
  std::copy(preamble.begin(), preamble.end(), prologue.begin());
  std::copy(label.begin(), label.end(), prologue.begin() + preamble_bytes);
  SymmetricState state(handshake_protocol_name, Cipher::chachapoly);
  state.mix_hash(std::span(prologue).first(preamble_bytes + label.size()));
  state.mix_hash(responder.bytes());  // <- s (pre-message)
  return state;
}

std::span<const std::uint8_t, key_bytes> first_key(std::span<const std::uint8_t> bytes) {
  return bytes.first<key_bytes>();
}

}  // namespace

const char* to_string(HandshakeLayer layer) {
  switch (layer) {
    case HandshakeLayer::hop: return "hop";
    case HandshakeLayer::end_to_end: return "end-to-end";
  }
  return "unknown";
}

// ---------------------------------------------------------------- initiator

InitiatorHandshake::InitiatorHandshake(const Identity& self, const PublicKey& responder,
                                       HandshakeLayer layer,
                                       std::span<const std::uint8_t, preamble_bytes> preamble)
    : InitiatorHandshake(self, responder, layer, DhKeyPair::generate(), preamble) {}

InitiatorHandshake::InitiatorHandshake(const Identity& self, const PublicKey& responder,
                                       HandshakeLayer layer, DhKeyPair e,
                                       std::span<const std::uint8_t, preamble_bytes> preamble)
    : self_(&self),
      responder_(responder),
      layer_(layer),
      e_(std::move(e)),
      symmetric_(initial_state(layer, preamble, responder)) {}

InitiatorHandshake InitiatorHandshake::with_ephemeral_for_testing(
    const Identity& self, const PublicKey& responder, HandshakeLayer layer,
    std::span<const std::uint8_t, key_bytes> e_secret,
    std::span<const std::uint8_t, preamble_bytes> preamble) {
  return InitiatorHandshake(self, responder, layer, DhKeyPair::from_secret(e_secret), preamble);
}

InitiatorHandshake::InitiatorHandshake(InitiatorHandshake&& other) noexcept
    : self_(other.self_),
      responder_(other.responder_),
      layer_(other.layer_),
      e_(std::move(other.e_)),
      symmetric_(std::move(other.symmetric_)),
      state_(std::exchange(other.state_, State::failed)) {}

std::error_code InitiatorHandshake::fail(errc code) {
  e_.wipe();
  symmetric_.wipe();
  state_ = State::failed;
  return code;
}

std::vector<std::uint8_t> InitiatorHandshake::create_msg1() {
  if (state_ != State::started) return {};
  // e
  const auto& e_pub = e_.public_key();
  symmetric_.mix_hash(e_pub);
  // payload: always empty, and without a key EncryptAndHash("") is MixHash("")
  symmetric_.mix_hash({});
  state_ = State::msg1_sent;
  return {e_pub.begin(), e_pub.end()};
}

std::error_code InitiatorHandshake::consume_msg2(std::span<const std::uint8_t> body) {
  if (state_ != State::msg1_sent) return fail(errc::handshake_failed);
  if (body.size() != handshake_msg2_bytes) return fail(errc::handshake_failed);
  SymmetricState next = symmetric_.clone();
  // e
  const auto re = first_key(body);
  next.mix_hash(re);
  // ee
  DhOutput ee;
  if (!e_.dh(re, ee)) return fail(errc::handshake_failed);
  next.mix_key(ee.span());
  // sig: the tag fails when the responder mixed another key or another layer's prologue into
  // h, the signature when it signed with another key or context. Either way it is not the
  // responder we pinned (our relay, or end to end our peer).
  const SignedMessage signed_message(domain_of(layer_).responder_context, next.handshake_hash());
  Signature sig{};
  if (!next.decrypt_and_hash(body.subspan(key_bytes), sig)) {
    return fail(errc::relay_identity_mismatch);
  }
  if (!responder_.verify(signed_message.bytes(), sig)) {
    return fail(errc::relay_identity_mismatch);
  }
  // Success: commit. The ephemeral has done its only DH.
  symmetric_ = std::move(next);
  e_.wipe();
  state_ = State::msg2_verified;
  return {};
}

std::vector<std::uint8_t> InitiatorHandshake::create_msg3(std::span<const std::uint8_t> payload) {
  if (payload.size() > max_handshake_payload_bytes) {
    throw std::length_error("handshake payload larger than max_handshake_payload_bytes");
  }
  if (state_ != State::msg2_verified) return {};
  SymmetricState next = symmetric_.clone();
  std::vector<std::uint8_t> out(handshake_msg3_min_bytes + payload.size());
  auto rest = std::span(out);
  // s: our Ed25519 identity, encrypted under ee
  const auto& s = self_->public_key().bytes();
  bool ok = next.encrypt_and_hash(s, rest.first(key_bytes + aead_tag_bytes));
  rest = rest.subspan(key_bytes + aead_tag_bytes);
  // sig
  const Signature sig = self_->sign(
      SignedMessage(domain_of(layer_).initiator_context, next.handshake_hash()).bytes());
  ok = ok && next.encrypt_and_hash(sig, rest.first(signature_bytes + aead_tag_bytes));
  rest = rest.subspan(signature_bytes + aead_tag_bytes);
  // payload
  ok = ok && next.encrypt_and_hash(payload, rest);
  if (!ok) {
    fail(errc::handshake_failed);
    return {};
  }
  symmetric_ = std::move(next);
  state_ = State::msg3_sent;
  return out;
}

HandshakeResult InitiatorHandshake::finish() {
  if (state_ != State::msg3_sent) {
    throw std::logic_error("InitiatorHandshake::finish before msg3 was created");
  }
  auto [c1, c2] = symmetric_.split();
  HandshakeResult result{std::move(c1), std::move(c2), symmetric_.handshake_hash(), responder_};
  symmetric_.wipe();
  state_ = State::finished;
  return result;
}

// ---------------------------------------------------------------- responder

ResponderHandshake::ResponderHandshake(const Identity& self, HandshakeLayer layer,
                                       std::span<const std::uint8_t, preamble_bytes> preamble)
    : ResponderHandshake(self, layer, DhKeyPair::generate(), preamble) {}

ResponderHandshake::ResponderHandshake(const Identity& self, HandshakeLayer layer, DhKeyPair e,
                                       std::span<const std::uint8_t, preamble_bytes> preamble)
    : self_(&self),
      layer_(layer),
      e_(std::move(e)),
      symmetric_(initial_state(layer, preamble, self.public_key())) {}

ResponderHandshake ResponderHandshake::with_ephemeral_for_testing(
    const Identity& self, HandshakeLayer layer, std::span<const std::uint8_t, key_bytes> e_secret,
    std::span<const std::uint8_t, preamble_bytes> preamble) {
  return ResponderHandshake(self, layer, DhKeyPair::from_secret(e_secret), preamble);
}

ResponderHandshake::ResponderHandshake(ResponderHandshake&& other) noexcept
    : self_(other.self_),
      layer_(other.layer_),
      e_(std::move(other.e_)),
      ee_(std::move(other.ee_)),
      symmetric_(std::move(other.symmetric_)),
      peer_(other.peer_),
      state_(std::exchange(other.state_, State::failed)) {}

std::error_code ResponderHandshake::fail() {
  e_.wipe();
  ee_.wipe();
  symmetric_.wipe();
  peer_ = PublicKey();
  state_ = State::failed;
  return errc::handshake_failed;
}

std::error_code ResponderHandshake::consume_msg1(std::span<const std::uint8_t> body) {
  if (state_ != State::started) return fail();
  if (body.size() != handshake_msg1_bytes) return fail();
  SymmetricState next = symmetric_.clone();
  // e
  const auto re = first_key(body);
  next.mix_hash(re);
  // ee is msg2's token; computing it now rejects a small-order e before we sign anything.
  DhOutput ee;
  if (!e_.dh(re, ee)) return fail();
  // payload: empty
  next.mix_hash({});
  symmetric_ = std::move(next);
  ee_ = std::move(ee);
  state_ = State::msg1_received;
  return {};
}

std::vector<std::uint8_t> ResponderHandshake::create_msg2() {
  if (state_ != State::msg1_received) return {};
  SymmetricState next = symmetric_.clone();
  std::vector<std::uint8_t> out(handshake_msg2_bytes);
  // e
  const auto& e_pub = e_.public_key();
  std::copy(e_pub.begin(), e_pub.end(), out.begin());
  next.mix_hash(e_pub);
  // ee
  next.mix_key(ee_.span());
  // sig
  const Signature sig = self_->sign(
      SignedMessage(domain_of(layer_).responder_context, next.handshake_hash()).bytes());
  if (!next.encrypt_and_hash(sig, std::span(out).subspan(key_bytes))) {
    fail();
    return {};
  }
  symmetric_ = std::move(next);
  e_.wipe();
  ee_.wipe();
  state_ = State::msg2_sent;
  return out;
}

std::error_code ResponderHandshake::consume_msg3(std::span<const std::uint8_t> body,
                                                 std::vector<std::uint8_t>& payload_out) {
  payload_out.clear();
  if (state_ != State::msg2_sent) return fail();
  // Limits before allocation: the payload buffer below is at most max_handshake_payload_bytes.
  if (body.size() < handshake_msg3_min_bytes || body.size() > max_frame_bytes) return fail();
  SymmetricState next = symmetric_.clone();
  // s
  std::array<std::uint8_t, key_bytes> s{};
  if (!next.decrypt_and_hash(body.first(key_bytes + aead_tag_bytes), s)) return fail();
  // Canonical, on the curve, not of small order, in the prime-order subgroup: the one point
  // check of this key (a scalar multiplication, which is why the verify below is libsodium's
  // own and not PublicKey::verify, which would repeat it).
  const auto peer = PublicKey::from_bytes(s);
  if (!peer) return fail();
  body = body.subspan(key_bytes + aead_tag_bytes);
  // sig
  const SignedMessage signed_message(domain_of(layer_).initiator_context, next.handshake_hash());
  Signature sig{};
  if (!next.decrypt_and_hash(body.first(signature_bytes + aead_tag_bytes), sig)) return fail();
  const auto message = signed_message.bytes();
  if (crypto_sign_verify_detached(sig.data(), message.data(), message.size(),
                                  peer->bytes().data()) != 0) {
    return fail();  // also rejects S >= L and small-order R
  }
  body = body.subspan(signature_bytes + aead_tag_bytes);
  // payload
  std::vector<std::uint8_t> payload(body.size() - aead_tag_bytes);
  if (!next.decrypt_and_hash(body, payload)) return fail();
  symmetric_ = std::move(next);
  peer_ = *peer;
  payload_out = std::move(payload);
  state_ = State::msg3_verified;
  return {};
}

HandshakeResult ResponderHandshake::finish() {
  if (state_ != State::msg3_verified) {
    throw std::logic_error("ResponderHandshake::finish before msg3 was verified");
  }
  auto [c1, c2] = symmetric_.split();
  HandshakeResult result{std::move(c2), std::move(c1), symmetric_.handshake_hash(), peer_};
  symmetric_.wipe();
  state_ = State::finished;
  return result;
}

}  // namespace strelay
