// Tests for common/handshake: the signed XK1 handshake, sans-io.
#include <doctest/doctest.h>

#include <vector>

#include "common/errors.hpp"
#include "common/handshake.hpp"

using namespace strelay;

namespace {

using Bytes = std::vector<std::uint8_t>;

Bytes bytes_of(std::string_view text) { return Bytes(text.begin(), text.end()); }

// Encrypt with one CipherState and decrypt with the other: they must be a matched pair.
bool pair_matches(CipherState& sender, CipherState& receiver, std::string_view text) {
  const Bytes plaintext = bytes_of(text);
  Bytes ciphertext(plaintext.size() + aead_tag_bytes);
  if (!sender.encrypt_with_ad({}, plaintext, ciphertext)) return false;
  Bytes decrypted(plaintext.size());
  if (!receiver.decrypt_with_ad({}, ciphertext, decrypted)) return false;
  return decrypted == plaintext;
}

}  // namespace

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
}
