// Tests for common/handshake: the signed XK1 handshake, sans-io: round trips in memory, the
// frozen vectors, and the independent writer's interoperation. The attacks (wrong relay,
// tampering, replay, bad keys and signatures) are in handshake_attack_test.cpp; the fixed
// parties and the independent writer both use are in support/handshake_fixture.hpp.
#include "common/handshake.hpp"

#include <doctest/doctest.h>

#include <array>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "common/errors.hpp"
#include "support/handshake_fixture.hpp"

using namespace strelay;
using namespace strelay::test::xk1;

// ================================================================ happy path

namespace {

void check_full_round_trip(HandshakeLayer layer) {
  const auto node = Identity::generate();
  const auto relay = Identity::generate();
  InitiatorHandshake initiator(node, relay.public_key(), layer);
  ResponderHandshake responder(relay, layer);
  CHECK(initiator.layer() == layer);
  CHECK(responder.layer() == layer);

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

}  // namespace

TEST_CASE("a full handshake in memory agrees on keys, session id and identities") {
  SUBCASE("hop") {
    check_full_round_trip(HandshakeLayer::hop);
  }
  SUBCASE("end to end") {
    check_full_round_trip(HandshakeLayer::end_to_end);
  }
}

TEST_CASE("two handshakes between the same parties get different session ids and keys") {
  auto run = [] {
    InitiatorHandshake initiator(keys().node, keys().relay.public_key(), HandshakeLayer::hop);
    ResponderHandshake responder(keys().relay, HandshakeLayer::hop);
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

namespace {

// What differs between the two vector files: the layer's prologue, contexts and msg3 payload
// (from the product's constants, which the independent writer below checks against its own
// literals), the description, and the transport messages.
struct VectorFile {
  HandshakeLayer layer;
  const char* name;
  const char* about;
  std::array<std::string_view, 4> transport;
};

const VectorFile hop_vectors{
    HandshakeLayer::hop,
    "strelay-xk1sig.json",
    "strelay's signed handshake (docs/protocol.md section 2) between fixed test "
    "identities and ephemerals. Statics are Ed25519 seeds, ephemerals X25519 private "
    "keys. messages: msg1, msg2, msg3 (payload = the first request), then transport "
    "messages alternating initiator/responder, EncryptWithAd(empty ad, payload) with "
    "the Split() keys. Never use these keys outside tests.",
    {"ping from the node", "pong from the relay", "second from the node", ""}};

const VectorFile end_to_end_vectors{
    HandshakeLayer::end_to_end,
    "strelay-xk1sig-e2e.json",
    "strelay's end-to-end handshake (docs/protocol.md sections 2.4 and 5): the same messages "
    "as strelay-xk1sig.json in their own domain, prologue = preamble || \"end-to-end\" and the "
    "end-to-end signature contexts, between the same fixed identities and ephemerals (the "
    "initiator is the connecting node, the responder the listening node). Statics are Ed25519 "
    "seeds, ephemerals X25519 private keys. messages: msg1, msg2, msg3 (payload always empty "
    "end to end), then transport messages alternating initiator/responder, EncryptWithAd(empty "
    "ad, payload) with the Split() keys. Never use these keys outside tests.",
    {"hello from the connector", "hello from the listener", "second from the connector", ""}};

// Runs the layer's handshake between the fixed parties, writes it as JSON and compares that,
// byte for byte, with the frozen file (STRELAY_REGENERATE_VECTORS=1 rewrites the file first).
void check_frozen_vectors(const VectorFile& file) {
  const HandshakeLayer layer = file.layer;
  const auto path = std::filesystem::path(STRELAY_TESTS_DIR) / "vectors" / file.name;
  const Transcript& t = recorded(layer);
  const Bytes& payload3 = first_payload_of(layer);
  auto node_side = [&] {
    auto i = fixed_initiator(layer);
    i.create_msg1();
    REQUIRE_FALSE(i.consume_msg2(t.msg2));
    i.create_msg3(payload3);
    return i.finish();
  }();
  auto relay_side = [&] {
    auto r = responder_awaiting_msg3(layer);
    Bytes payload;
    REQUIRE_FALSE(r.consume_msg3(t.msg3, payload));
    CHECK(payload == payload3);
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
  const bool e2e = layer == HandshakeLayer::end_to_end;
  Bytes prologue(current_preamble.begin(), current_preamble.end());
  if (e2e)
    prologue.insert(prologue.end(), end_to_end_prologue_label.begin(),
                    end_to_end_prologue_label.end());

  nlohmann::ordered_json v;
  v["about"] = file.about;
  v["protocol_name"] = std::string(handshake_protocol_name);
  v["init_prologue"] = to_hex(prologue);
  v["resp_prologue"] = to_hex(prologue);
  v["init_static"] = to_hex(node_seed());
  v["init_static_public"] = to_hex(keys().node.public_key().bytes());
  v["init_remote_static"] = to_hex(keys().relay.public_key().bytes());
  v["resp_static"] = to_hex(relay_seed());
  v["resp_static_public"] = to_hex(keys().relay.public_key().bytes());
  v["init_ephemeral"] = to_hex(node_ephemeral());
  v["resp_ephemeral"] = to_hex(relay_ephemeral());
  v["resp_signature_context"] =
      std::string(e2e ? end_to_end_responder_signature_context : responder_signature_context);
  v["init_signature_context"] =
      std::string(e2e ? end_to_end_initiator_signature_context : initiator_signature_context);
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
  add_message(payload3, t.msg3);
  for (std::size_t i = 0; i < file.transport.size(); ++i) {
    auto& sender = i % 2 == 0 ? node_side.send : relay_side.send;
    auto& receiver = i % 2 == 0 ? relay_side.recv : node_side.recv;
    const Bytes payload = bytes_of(file.transport[i]);
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
  // The independent writer, from its own literals for the prologue and the contexts, produces
  // the same three messages from the vector's inputs.
  CHECK(prologue == prologue_of(layer));
  const Key relay_key = keys().relay.public_key().bytes();
  const Bytes manual_prologue = prologue_of(layer);
  ManualInitiator manual_node(relay_key, node_ephemeral(), manual_prologue);
  ManualResponder manual_relay(relay_key, relay_ephemeral(), manual_prologue);
  CHECK(manual_node.msg1() == t.msg1);
  CHECK(manual_relay.msg2(t.msg1, signs_as(keys().relay, contexts_of(layer).responder)) == t.msg2);
  manual_node.read_msg2(t.msg2);
  CHECK(manual_node.msg3(keys().node.public_key().bytes(),
                         signs_as(keys().node, contexts_of(layer).initiator), payload3) == t.msg3);
}

}  // namespace

TEST_CASE("the signed handshake reproduces its frozen vectors") {
  check_frozen_vectors(hop_vectors);
}

TEST_CASE("the end-to-end handshake reproduces its own frozen vectors") {
  check_frozen_vectors(end_to_end_vectors);
  // Nothing but the domain differs: the same inputs give other bytes from msg2 on.
  CHECK(recorded(HandshakeLayer::end_to_end).msg1 == recorded(HandshakeLayer::hop).msg1);
  CHECK(recorded(HandshakeLayer::end_to_end).msg2 != recorded(HandshakeLayer::hop).msg2);
  CHECK(recorded(HandshakeLayer::end_to_end).msg3.size() == handshake_msg3_min_bytes);
}

TEST_CASE("the domain strings are the bytes docs/protocol.md gives in hex") {
  // docs/protocol.md 2.4: the contexts of both layers, and the end-to-end prologue.
  CHECK(to_hex(bytes_of(responder_signature_context)) ==
        "737472656c61792076312068616e647368616b653a20726573706f6e646572207369676e6174757265");
  CHECK(to_hex(bytes_of(initiator_signature_context)) ==
        "737472656c61792076312068616e647368616b653a20696e69746961746f72207369676e6174757265");
  CHECK(to_hex(bytes_of(end_to_end_responder_signature_context)) ==
        "737472656c617920763120656e642d746f2d656e643a20726573706f6e646572207369676e6174757265");
  CHECK(to_hex(bytes_of(end_to_end_initiator_signature_context)) ==
        "737472656c617920763120656e642d746f2d656e643a20696e69746961746f72207369676e6174757265");
  CHECK(to_hex(prologue_of(HandshakeLayer::end_to_end)) ==
        "737472656c617901"
        "656e642d746f2d656e64");
  CHECK(end_to_end_responder_signature_context.size() == 42);
  CHECK(end_to_end_initiator_signature_context.size() == 42);
}

TEST_CASE("an independent writer on the Noise core interoperates with the product") {
  // Positive controls for the manual writers used by the attack tests below.
  for (const auto layer : {HandshakeLayer::hop, HandshakeLayer::end_to_end}) {
    CAPTURE(to_string(layer));
    CHECK_FALSE(node_reads_manual_msg2(keys().relay.public_key().bytes(),
                                       signs_as(keys().relay, contexts_of(layer).responder),
                                       layer));
    CHECK_FALSE(relay_reads_manual_msg3(keys().node.public_key().bytes(),
                                        signs_as(keys().node, contexts_of(layer).initiator),
                                        layer));
  }
}
