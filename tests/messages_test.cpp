// Tests for common/messages: round trips, and hostile Cap'n Proto refused as protocol errors.
//
// Hostile messages are built word by word (serialise, ConnectBuilder), so each test controls the
// pointer it attacks. Layout reminders (Cap'n Proto encoding spec):
//   struct pointer: bits 0-1 = 0, 2-31 = offset (words after the pointer), 32-47 = data words,
//                   48-63 = pointer count
//   list pointer:   bits 0-1 = 1, 2-31 = offset, 32-34 = element size, 35-63 = element count
//   NodeMessage root: 1 data word (the union discriminant in bits 0-15), 1 pointer (the body).
#include "common/messages.hpp"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <doctest/doctest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "common/errors.hpp"
#include "common/keys.hpp"
#include "relay.capnp.h"

using namespace strelay;

namespace {

constexpr std::uint8_t elem_void = 0;
constexpr std::uint8_t elem_byte = 2;
constexpr std::uint8_t elem_composite = 7;

std::uint64_t struct_ptr(std::int32_t offset, std::uint16_t data_words, std::uint16_t pointers) {
  const auto b = static_cast<std::uint32_t>(static_cast<std::uint32_t>(offset) << 2);
  return b | std::uint64_t{data_words} << 32 | std::uint64_t{pointers} << 48;
}

std::uint64_t list_ptr(std::int32_t offset, std::uint8_t element_size, std::uint32_t count) {
  const auto b = static_cast<std::uint32_t>(static_cast<std::uint32_t>(offset) << 2);
  return 1u | b | std::uint64_t{element_size} << 32 | std::uint64_t{count} << 35;
}

// One segment's words, serialised with the standard single-segment header.
std::vector<std::uint8_t> serialise(const std::vector<std::uint64_t>& segment,
                                    std::uint32_t segment_count_minus_one = 0) {
  std::vector<std::uint64_t> words{std::uint64_t{segment_count_minus_one} |
                                   std::uint64_t{static_cast<std::uint32_t>(segment.size())} << 32};
  words.insert(words.end(), segment.begin(), segment.end());
  std::vector<std::uint8_t> bytes;
  for (auto w : words) {
    for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<std::uint8_t>(w >> (8 * i)));
  }
  return bytes;
}

std::vector<std::uint64_t> key_words(const PublicKey& key) {
  std::vector<std::uint64_t> words(4, 0);
  for (std::size_t i = 0; i < key_bytes; ++i)
    words[i / 8] |= std::uint64_t{key.bytes()[i]} << (8 * (i % 8));
  return words;
}

// A Connect{key} by hand. The root has `extra_data` more data words and `extra_pointers` more
// pointers than this version knows (a newer client's fields); `tail` follows the key and is
// what the extra pointers may point at.
struct ConnectBuilder {
  PublicKey key;
  std::uint16_t extra_data = 0;
  std::uint16_t extra_pointers = 0;
  std::uint16_t discriminant = 1;  // connect

  // Word index (within the segment) of the root's i-th extra pointer.
  std::size_t extra_pointer_index(std::size_t i) const { return 1 + 1 + extra_data + 1 + i; }
  // Word index where `tail` starts.
  std::size_t tail_index() const { return 1 + 1 + extra_data + 1 + extra_pointers + 1 + 4; }

  std::vector<std::uint64_t> segment() const {
    std::vector<std::uint64_t> s;
    s.push_back(struct_ptr(0, static_cast<std::uint16_t>(1 + extra_data),
                           static_cast<std::uint16_t>(1 + extra_pointers)));
    s.push_back(discriminant);
    for (std::uint16_t i = 0; i < extra_data; ++i) s.push_back(0);
    // The body pointer: the Connect struct sits after the root's extra pointers.
    s.push_back(struct_ptr(extra_pointers, 0, 1));
    for (std::uint16_t i = 0; i < extra_pointers; ++i) s.push_back(0);
    s.push_back(list_ptr(0, elem_byte, key_bytes));  // Connect.target
    for (auto w : key_words(key)) s.push_back(w);
    return s;
  }
};

// Points the root's first extra pointer at the tail (which the caller appends).
void point_extra_at_tail(std::vector<std::uint64_t>& s, const ConnectBuilder& b,
                         std::uint64_t ptr_without_offset, bool is_list) {
  const auto at = b.extra_pointer_index(0);
  const auto offset = static_cast<std::int32_t>(b.tail_index() - at - 1);
  const auto b_field = static_cast<std::uint64_t>(static_cast<std::uint32_t>(offset) << 2);
  s[at] = ptr_without_offset | b_field | (is_list ? 1u : 0u);
}

bool is_protocol_error(std::span<const std::uint8_t> bytes) {
  const auto node = try_decode_node_message(bytes);
  const auto relay = try_decode_relay_message(bytes);
  return !node && node.error() == errc::protocol_error && !relay &&
         relay.error() == errc::protocol_error;
}

PublicKey make_key() {
  return Identity::generate().public_key();
}

}  // namespace

TEST_CASE("every node message round-trips through encode and decode") {
  const auto key = make_key();
  const std::vector<NodeMessage> messages{Listen{}, Connect{key}, Accept{key},
                                          RejectConnection{key}, Standby{}};
  for (const auto& message : messages) {
    const auto bytes = encode(message);
    CHECK(bytes.size() % 8 == 0);
    CHECK(bytes.size() <= max_control_message_bytes);
    const auto decoded = try_decode_node_message(bytes);
    REQUIRE(decoded.has_value());
    CHECK(*decoded == message);
  }
}

TEST_CASE("every relay message and every refuse reason round-trips") {
  const auto key = make_key();
  std::vector<RelayMessage> messages{ListenOk{}, IncomingConnection{key}, Connected{key}};
  for (std::uint16_t r = 0; r <= 7; ++r) messages.push_back(Refused{static_cast<RefuseReason>(r)});
  for (const auto& message : messages) {
    const auto decoded = try_decode_relay_message(encode(message));
    REQUIRE(decoded.has_value());
    CHECK(*decoded == message);
  }
}

namespace {

// Hex with any whitespace, as docs/protocol.md writes its dumps.
std::vector<std::uint8_t> from_hex(std::string_view hex) {
  std::vector<std::uint8_t> out;
  std::string digits;
  for (const char c : hex) {
    if (c != ' ' && c != '\n') digits += c;
  }
  REQUIRE(digits.size() % 2 == 0);
  for (std::size_t i = 0; i < digits.size(); i += 2) {
    out.push_back(static_cast<std::uint8_t>(std::stoul(digits.substr(i, 2), nullptr, 16)));
  }
  return out;
}

// docs/protocol.md 4.2, "Byte layout": K is the frozen vectors' node key.
constexpr std::string_view doc_key_hex =
    "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8";
constexpr std::string_view doc_listen =
    "00 00 00 00 03 00 00 00  00 00 00 00 01 00 01 00  00 00 00 00 00 00 00 00"
    "fc ff ff ff 00 00 00 00";
// The keyed layout with the discriminant left out (its two bytes follow the first 16).
constexpr std::string_view doc_keyed_head = "00 00 00 00 08 00 00 00  00 00 00 00 01 00 01 00";
constexpr std::string_view doc_keyed_tail =
    "00 00 00 00 00 00  00 00 00 00 00 00 01 00  01 00 00 00 02 01 00 00"
    "03 a1 07 bf f3 ce 10 be  1d 70 dd 18 e7 4b c0 99  67 e4 d6 30 9b a5 0d 5f"
    "1d dc 86 64 12 55 31 b8";
constexpr std::string_view doc_refused_not_allowed =
    "00 00 00 00 04 00 00 00  00 00 00 00 01 00 01 00  03 00 00 00 00 00 00 00"
    "00 00 00 00 01 00 00 00  07 00 00 00 00 00 00 00";

std::vector<std::uint8_t> doc_keyed(std::uint8_t discriminant) {
  auto bytes = from_hex(doc_keyed_head);
  bytes.push_back(discriminant);
  bytes.push_back(0);
  const auto tail = from_hex(doc_keyed_tail);
  bytes.insert(bytes.end(), tail.begin(), tail.end());
  return bytes;
}

PublicKey doc_key() {
  const auto bytes = from_hex(doc_key_hex);
  const auto key = PublicKey::from_bytes(bytes);
  REQUIRE(key.has_value());
  return *key;
}

}  // namespace

TEST_CASE("the documented byte layouts (docs/protocol.md 4.2) are what the encoder writes") {
  const auto k = doc_key();
  CHECK(encode(NodeMessage{Listen{}}) == from_hex(doc_listen));
  CHECK(encode(RelayMessage{ListenOk{}}) == from_hex(doc_listen));
  CHECK(encode(NodeMessage{Connect{k}}) == doc_keyed(1));
  CHECK(encode(NodeMessage{Accept{k}}) == doc_keyed(2));
  CHECK(encode(NodeMessage{RejectConnection{k}}) == doc_keyed(3));
  auto standby = from_hex(doc_listen);
  standby[16] = 4;  // "(standby = ())": the listen layout with discriminant 4
  CHECK(encode(NodeMessage{Standby{}}) == standby);
  CHECK(encode(RelayMessage{IncomingConnection{k}}) == doc_keyed(1));
  CHECK(encode(RelayMessage{Connected{k}}) == doc_keyed(2));
  CHECK(encode(RelayMessage{Refused{RefuseReason::not_allowed}}) ==
        from_hex(doc_refused_not_allowed));
  auto not_found = from_hex(doc_refused_not_allowed);
  not_found[32] = 0;  // "notFound = 0 gives a last word of zeros"
  CHECK(encode(RelayMessage{Refused{RefuseReason::not_found}}) == not_found);
  // The topic messages (4.9), T = 32 bytes of 0x74.
  TopicId t{};
  t.fill(0x74);
  auto topic_keyed = [&](std::uint8_t discriminant) {
    auto bytes = doc_keyed(discriminant);
    std::fill(bytes.begin() + 40, bytes.end(), std::uint8_t{0x74});
    return bytes;
  };
  CHECK(encode(NodeMessage{JoinTopic{t}}) == topic_keyed(5));
  CHECK(encode(NodeMessage{LeaveTopic{t}}) == topic_keyed(6));
  CHECK(encode(RelayMessage{TopicLeft{t}}) == topic_keyed(7));
  std::string t_words;
  for (int i = 0; i < 32; ++i) t_words += "74";
  CHECK(encode(RelayMessage{TopicJoined{t, 3, 2}}) == from_hex("0000000009000000"
                                                               "0000000001000100"
                                                               "0400000000000000"
                                                               "0000000001000100"
                                                               "0300000002000000"
                                                               "0100000002010000" +
                                                               t_words));
  CHECK(encode(RelayMessage{TopicRefused{t, RefuseReason::overloaded}}) ==
        from_hex("0000000009000000"
                 "0000000001000100"
                 "0600000000000000"
                 "0000000001000100"
                 "0500000000000000"
                 "0100000002010000" +
                 t_words));
  CHECK(encode(RelayMessage{Introduction{t, k}}) == from_hex("000000000d000000"
                                                             "0000000001000100"
                                                             "0500000000000000"
                                                             "0000000000000200"
                                                             "0500000002010000"
                                                             "1100000002010000" +
                                                             t_words + std::string(doc_key_hex)));
  // And they decode back (so the sizes the doc gives, 32, 72 and 40, are whole messages).
  CHECK(try_decode_node_message(doc_keyed(3)).value() == NodeMessage{RejectConnection{k}});
  CHECK(from_hex(doc_listen).size() == 32);
  CHECK(doc_keyed(1).size() == 72);
  CHECK(from_hex(doc_refused_not_allowed).size() == 40);
}

TEST_CASE("valid but unusual encodings are accepted (docs/protocol.md 4.2)") {
  const auto k = doc_key();
  SUBCASE("the smallest accepted message: 16 bytes, a null root, reads as the first member") {
    const auto smallest = serialise({0});
    REQUIRE(smallest.size() == 16);
    CHECK(try_decode_node_message(smallest).value() == NodeMessage{Listen{}});
    CHECK(try_decode_relay_message(smallest).value() == RelayMessage{ListenOk{}});
    CHECK(is_protocol_error(serialise({})));  // 8 bytes: no root pointer at all
  }
  SUBCASE("unreachable words inside the segment are ignored, garbage or not") {
    auto segment = ConnectBuilder{k}.segment();
    segment.push_back(~std::uint64_t{0});
    segment.push_back(0x0123456789abcdefULL);
    CHECK(try_decode_node_message(serialise(segment)).value() == NodeMessage{Connect{k}});
  }
  SUBCASE("objects in another order: the key before the struct that points at it") {
    std::vector<std::uint64_t> s;
    s.push_back(struct_ptr(0, 1, 1));                 // 0: root at 1
    s.push_back(1);                                   // 1: discriminant = connect
    s.push_back(struct_ptr(4, 0, 1));                 // 2: the Connect struct at 2 + 1 + 4 = 7
    for (auto w : key_words(k)) s.push_back(w);       // 3..6: the key
    s.push_back(list_ptr(-5, elem_byte, key_bytes));  // 7: Connect.target, back at 7 + 1 - 5 = 3
    CHECK(try_decode_node_message(serialise(s)).value() == NodeMessage{Connect{k}});
  }
  SUBCASE("a null key is an empty Data, and refused") {
    std::vector<std::uint64_t> s{struct_ptr(0, 1, 1), 1, struct_ptr(0, 0, 1), 0};
    CHECK(is_protocol_error(serialise(s)));
  }
}

TEST_CASE("the hand-built Connect matches the encoder byte for byte") {
  const auto key = make_key();
  CHECK(serialise(ConnectBuilder{key}.segment()) == encode(NodeMessage{Connect{key}}));
}

TEST_CASE("a node message is not a relay message of the same shape by accident of keys") {
  // The same bytes decode under both schemas (both are a union over one pointer), so the
  // transport direction, not the bytes, says which schema applies. This pins that fact.
  const auto key = make_key();
  const auto as_relay = try_decode_relay_message(encode(NodeMessage{Connect{key}}));
  REQUIRE(as_relay.has_value());
  CHECK(*as_relay == RelayMessage{IncomingConnection{key}});
}

TEST_CASE("sizes: 4096 bytes is accepted, 4097 and 4104 are refused, before any parsing") {
  const auto key = make_key();
  ConnectBuilder b{key};
  b.extra_data = 503;  // 1 header + 1 root + 504 data + 1 pointer + 1 Connect + 4 key = 512 words
  auto bytes = serialise(b.segment());
  REQUIRE(bytes.size() == max_control_message_bytes);
  const auto decoded = try_decode_node_message(bytes);
  REQUIRE(decoded.has_value());
  CHECK(*decoded == NodeMessage{Connect{key}});

  auto plus_one = bytes;
  plus_one.push_back(0);
  CHECK(is_protocol_error(plus_one));

  b.extra_data = 504;
  const auto next_word = serialise(b.segment());
  REQUIRE(next_word.size() == max_control_message_bytes + 8);
  CHECK(is_protocol_error(next_word));
}

TEST_CASE("framing of the flat array: empty, short, unaligned, multi-segment, trailing bytes") {
  const auto valid = encode(NodeMessage{Listen{}});
  CHECK(is_protocol_error({}));
  CHECK(is_protocol_error(std::span(valid).first(4)));
  CHECK(is_protocol_error(std::span(valid).first(valid.size() - 1)));
  CHECK(is_protocol_error(std::span(valid).first(valid.size() - 8)));  // truncated segment

  SUBCASE("trailing bytes after the segment") {
    auto trailing = valid;
    trailing.insert(trailing.end(), 8, 0);
    CHECK(is_protocol_error(trailing));
    trailing.resize(valid.size() + 4);
    CHECK(is_protocol_error(trailing));
  }
  SUBCASE("a segment count of 0xFFFFFFFF") {
    auto bytes = valid;
    for (int i = 0; i < 4; ++i) bytes[static_cast<std::size_t>(i)] = 0xFF;
    CHECK(is_protocol_error(bytes));
  }
  SUBCASE("a valid two-segment message") {
    capnp::MallocMessageBuilder builder(1, capnp::AllocationStrategy::FIXED_SIZE);
    builder.initRoot<schema::NodeMessage>().initConnect().setTarget(
        capnp::Data::Reader(make_key().bytes().data(), key_bytes));
    REQUIRE(builder.getSegmentsForOutput().size() > 1);
    const auto words = capnp::messageToFlatArray(builder);
    const auto b = words.asBytes();
    CHECK(is_protocol_error(std::vector<std::uint8_t>(b.begin(), b.end())));
  }
}

TEST_CASE("out-of-range pointers are refused") {
  const auto key = make_key();
  auto s = ConnectBuilder{key}.segment();
  SUBCASE("root beyond the segment") {
    s[0] = struct_ptr(1000, 1, 1);
  }
  SUBCASE("root at a negative offset") {
    s[0] = struct_ptr(-5, 1, 1);
  }
  SUBCASE("root struct larger than the segment") {
    s[0] = struct_ptr(0, 60000, 1);
  }
  SUBCASE("body beyond the segment") {
    s[2] = struct_ptr(100, 0, 1);
  }
  SUBCASE("key list longer than the segment") {
    s[3] = list_ptr(0, elem_byte, 4000);
  }
  SUBCASE("key where a struct is expected") {
    s[2] = list_ptr(0, elem_byte, 8);
  }
  SUBCASE("a capability pointer as the body") {
    s[2] = 3;
  }
  CHECK(is_protocol_error(serialise(s)));
}

TEST_CASE("keys must be exactly 32 bytes of a valid Ed25519 point") {
  const auto key = make_key();
  SUBCASE("31 and 33 bytes") {
    auto s = ConnectBuilder{key}.segment();
    s[3] = list_ptr(0, elem_byte, 31);
    CHECK(is_protocol_error(serialise(s)));
    s[3] = list_ptr(0, elem_byte, 33);
    s.push_back(0);
    CHECK(is_protocol_error(serialise(s)));
  }
  SUBCASE("a null key") {
    auto s = ConnectBuilder{key}.segment();
    s[3] = 0;
    CHECK(is_protocol_error(serialise(s)));
  }
  SUBCASE("invalid points in every message that carries a key") {
    std::array<std::uint8_t, key_bytes> zero{};
    std::array<std::uint8_t, key_bytes> identity_point{1};  // small order
    std::array<std::uint8_t, key_bytes> non_canonical{};
    non_canonical.fill(0xFF);  // y >= p
    non_canonical[31] = 0x7F;
    for (const auto& raw : {zero, identity_point, non_canonical}) {
      const PublicKey bad(raw);
      REQUIRE_FALSE(bad.is_valid_point());
      for (const auto& m : std::vector<NodeMessage>{Connect{bad}, Accept{bad}}) {
        CHECK(try_decode_node_message(encode(m)).error() == errc::protocol_error);
      }
      // RejectConnection's key is only compared with keys the relay holds: 32 bytes suffice.
      const auto reject = try_decode_node_message(encode(NodeMessage{RejectConnection{bad}}));
      REQUIRE(reject.has_value());
      CHECK(std::get<RejectConnection>(*reject).from == bad);
      for (const auto& m : std::vector<RelayMessage>{IncomingConnection{bad}, Connected{bad}}) {
        CHECK(try_decode_relay_message(encode(m)).error() == errc::protocol_error);
      }
    }
  }
}

TEST_CASE("an unknown union member or refuse reason is a protocol error") {
  const auto key = make_key();
  ConnectBuilder b{key};
  b.discriminant = 8;  // a kind from a newer peer, either way
  CHECK(is_protocol_error(serialise(b.segment())));
  b.discriminant = 7;  // topicLeft: a relay message, but never a node message
  CHECK(try_decode_node_message(serialise(b.segment())).error() == errc::protocol_error);
  CHECK(try_decode_relay_message(serialise(b.segment())).has_value());
  b.discriminant = 0xFFFF;
  CHECK(is_protocol_error(serialise(b.segment())));

  auto refused = encode(RelayMessage{Refused{RefuseReason::not_allowed}});
  REQUIRE(try_decode_relay_message(refused).has_value());
  // Layout: header, root pointer, root data, body pointer, Refused data word (reason in 0-15).
  refused[4 * 8] = 8;
  CHECK(try_decode_relay_message(refused).error() == errc::protocol_error);
}

TEST_CASE("unknown fields are accepted but validated: nesting is limited to 8") {
  // The root's extra pointer leads into a chain of structs, each holding one pointer to the
  // next. The root itself is level 1; the reader allows 8 levels.
  const auto key = make_key();
  ConnectBuilder b{key};
  b.extra_pointers = 1;
  auto chain = [&](int nested) {
    auto s = b.segment();
    if (nested > 0) {
      point_extra_at_tail(s, b, struct_ptr(0, 0, 1), false);
      for (int i = 0; i < nested; ++i) s.push_back(i + 1 < nested ? struct_ptr(0, 0, 1) : 0);
    }
    return serialise(s);
  };
  CHECK(try_decode_node_message(chain(0)).has_value());
  CHECK(try_decode_node_message(chain(7)).has_value());  // levels 1 + 7 = 8: the maximum
  CHECK(is_protocol_error(chain(8)));                    // 9 levels
  CHECK(is_protocol_error(chain(100)));

  SUBCASE("a pointer cycle") {
    auto s = b.segment();
    point_extra_at_tail(s, b, struct_ptr(0, 0, 1), false);
    s.push_back(struct_ptr(-1, 0, 1));  // points at itself
    CHECK(is_protocol_error(serialise(s)));
  }
}

TEST_CASE(
    "amplification: zero-size list elements are charged against the 2048-word traversal limit") {
  // A list of N Void elements costs no bytes on the wire; Cap'n Proto charges N words to the
  // traversal limit when the list is read. The decoder reads every pointer (validate_pointer),
  // so even an unknown field is charged. 1000 fits in 2048 words; 4096 does not, which also
  // shows that our limit applies (the library default is 8 Mi words); 2^29-1 is the maximum.
  const auto key = make_key();
  ConnectBuilder b{key};
  b.extra_pointers = 1;
  auto void_list = [&](std::uint32_t count) {
    auto s = b.segment();
    point_extra_at_tail(s, b, list_ptr(0, elem_void, count), true);
    return serialise(s);
  };
  CHECK(try_decode_node_message(void_list(1000)).has_value());
  CHECK(is_protocol_error(void_list(4096)));
  CHECK(is_protocol_error(void_list((1u << 29) - 1)));

  SUBCASE("a composite list of 2^29-1 zero-size structs") {
    auto s = b.segment();
    point_extra_at_tail(s, b, list_ptr(0, elem_composite, 0), true);
    s.push_back(struct_ptr((1 << 29) - 1, 0, 0));  // the tag: element count, zero-size elements
    CHECK(is_protocol_error(serialise(s)));
  }
  SUBCASE("many pointers to the same struct") {
    // 400 pointers in a pointer list, all to one 10-word struct: 20 bytes a pointer on the
    // wire, 4000 words of traversal.
    auto s = b.segment();
    point_extra_at_tail(s, b, list_ptr(0, 6, 400), true);
    const std::size_t list_start = s.size();
    const std::size_t target = list_start + 400;
    for (std::size_t i = 0; i < 400; ++i) {
      s.push_back(struct_ptr(static_cast<std::int32_t>(target - (list_start + i) - 1), 10, 0));
    }
    for (int i = 0; i < 10; ++i) s.push_back(0);
    CHECK(is_protocol_error(serialise(s)));
  }
}

TEST_CASE("random bytes and random corruptions never escape as exceptions") {
  std::mt19937_64 rng(12345);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int i = 0; i < 2000; ++i) {
    std::vector<std::uint8_t> bytes(static_cast<std::size_t>(rng() % 200));
    for (auto& x : bytes) x = static_cast<std::uint8_t>(byte(rng));
    CHECK(is_protocol_error(bytes));  // the header check alone refuses random bytes
  }
  // Corrupt valid messages in 1-3 bytes past the header: the result is an error or a message
  // whose keys are valid points (decode never hands out an invalid key).
  const auto key = make_key();
  const std::vector<std::vector<std::uint8_t>> seeds{
      encode(NodeMessage{Connect{key}}), encode(NodeMessage{Listen{}}),
      encode(RelayMessage{Refused{RefuseReason::timeout}}), encode(RelayMessage{Connected{key}})};
  int decoded = 0;
  for (int i = 0; i < 20000; ++i) {
    auto bytes = seeds[static_cast<std::size_t>(i) % seeds.size()];
    const auto flips = 1 + rng() % 3;
    for (std::uint64_t f = 0; f < flips; ++f) {
      bytes[8 + rng() % (bytes.size() - 8)] ^= static_cast<std::uint8_t>(1u << (rng() % 8));
    }
    const auto node = try_decode_node_message(bytes);
    const auto relay = try_decode_relay_message(bytes);
    if (node) {
      ++decoded;
      if (const auto* c = std::get_if<Connect>(&*node)) CHECK(c->target.is_valid_point());
    } else {
      CHECK(node.error() == errc::protocol_error);
    }
    if (!relay) CHECK(relay.error() == errc::protocol_error);
  }
  CHECK(decoded > 0);  // some corruptions land in ignored bits: the test exercised both paths
}

TEST_CASE("each refuse reason maps to its close reason and error code") {
  CHECK(close_reason_for(RefuseReason::not_found) == CloseReason::normal);
  CHECK(close_reason_for(RefuseReason::rejected) == CloseReason::normal);
  CHECK(close_reason_for(RefuseReason::no_pending) == CloseReason::normal);
  CHECK(close_reason_for(RefuseReason::timeout) == CloseReason::timeout);
  CHECK(close_reason_for(RefuseReason::peer_gone) == CloseReason::peer_gone);
  CHECK(close_reason_for(RefuseReason::rate_limited) == CloseReason::rate_limited);
  CHECK(close_reason_for(RefuseReason::overloaded) == CloseReason::overloaded);
  CHECK(close_reason_for(RefuseReason::not_allowed) == CloseReason::not_allowed);
  CHECK(to_error_code(RefuseReason::not_found) == errc::not_found);
  CHECK(to_error_code(RefuseReason::no_pending) == errc::no_pending);
  CHECK(to_error_code(RefuseReason::not_allowed) == errc::not_allowed);
  CHECK(std::string(to_string(RefuseReason::peer_gone)) == "peer_gone");
}

TEST_CASE("the fuzz seeds, written by the reference capnp tool, decode and re-encode identically") {
  // fuzz/corpus/messages holds `capnp encode` output for every message, and two messages with
  // unknown fields. Both encoders must agree byte for byte on the messages we know.
  const std::filesystem::path dir =
      std::filesystem::path(STRELAY_TESTS_DIR) / ".." / "fuzz" / "corpus" / "messages";
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const auto name = entry.path().filename().string();
    INFO(name);
    std::ifstream in(entry.path(), std::ios::binary);
    const std::vector<std::uint8_t> bytes{std::istreambuf_iterator<char>(in), {}};
    std::vector<std::uint8_t> again;
    if (name.starts_with("node-")) {
      const auto m = try_decode_node_message(bytes);
      REQUIRE(m.has_value());
      again = encode(*m);
    } else {
      const auto m = try_decode_relay_message(bytes);
      REQUIRE(m.has_value());
      again = encode(*m);
    }
    if (name.find("unknown") == std::string::npos) CHECK(again == bytes);
    ++files;
  }
  CHECK(files >= 17);
}
