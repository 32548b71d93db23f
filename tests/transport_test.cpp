// Tests for common/transport: sealing and opening frames, failure rules, nonce limits,
// and the keepalive decisions. Sans-io: CipherStates are built from fixed keys.
#include "common/transport.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "common/errors.hpp"

using namespace strelay;
using namespace std::chrono_literals;

namespace {

using Bytes = std::vector<std::uint8_t>;
constexpr std::uint64_t last_usable_nonce = ~std::uint64_t{0} - 1;  // 2^64-2

std::array<std::uint8_t, key_bytes> key_of(std::uint8_t fill) {
  std::array<std::uint8_t, key_bytes> key{};
  key.fill(fill);
  return key;
}

CipherState cipher(std::uint8_t fill, std::uint64_t nonce = 0) {
  CipherState state(key_of(fill), Cipher::chachapoly);
  state.set_nonce_for_testing(nonce);
  return state;
}

// Two ends of one session: a's send key is b's receive key and vice versa.
struct Pair {
  Transport a{cipher(1), cipher(2)};
  Transport b{cipher(2), cipher(1)};
};

// The ciphertext (no prefix) that the sender of key `fill` at counter `nonce` would produce for
// an arbitrary plaintext: lets a test forge frames the Transport API refuses to build.
Bytes raw_ciphertext(std::uint8_t fill, std::uint64_t nonce, const Bytes& plaintext) {
  auto state = cipher(fill, nonce);
  Bytes out(plaintext.size() + aead_tag_bytes);
  REQUIRE(state.encrypt_with_ad({}, plaintext, out));
  return out;
}

// A sealed frame's body (the ciphertext), without the 2-byte prefix.
Bytes seal_body(Transport& t, FrameKind kind, const Bytes& body) {
  Bytes frame;
  REQUIRE(!t.seal(kind, body, frame));
  REQUIRE(frame.size() == Transport::sealed_bytes(body.size()));
  const std::size_t announced = static_cast<std::size_t>(frame[0]) << 8 | frame[1];
  REQUIRE(announced == frame.size() - length_prefix_bytes);
  return Bytes(frame.begin() + length_prefix_bytes, frame.end());
}

std::error_code open_copy(Transport& t, Bytes ciphertext, Opened& out, Bytes& storage) {
  storage = std::move(ciphertext);
  return t.open(storage, out);
}

Bytes bytes_of(std::string_view text) {
  return Bytes(text.begin(), text.end());
}

}  // namespace

TEST_CASE("frames of every kind round-trip in order, in both directions") {
  Pair p;
  Bytes storage;
  Opened got;
  const Bytes payload = bytes_of("hello relay");
  REQUIRE(!open_copy(p.b, seal_body(p.a, FrameKind::control, payload), got, storage));
  CHECK(got.kind == FrameKind::control);
  CHECK(Bytes(got.body.begin(), got.body.end()) == payload);
  // The body is a view into the caller's buffer: opened in place, no copy.
  CHECK(got.body.data() == storage.data() + frame_kind_bytes);

  REQUIRE(!open_copy(p.b, seal_body(p.a, FrameKind::data, {}), got, storage));
  CHECK(got.kind == FrameKind::data);
  CHECK(got.body.empty());
  const Bytes token{1, 2, 3, 4, 5, 6, 7, 8};
  REQUIRE(!open_copy(p.a, seal_body(p.b, FrameKind::ping, token), got, storage));
  CHECK(got.kind == FrameKind::ping);
  REQUIRE(!open_copy(p.b, seal_body(p.a, FrameKind::pong, token), got, storage));
  CHECK(Bytes(got.body.begin(), got.body.end()) == token);
  CHECK(p.a.send_nonce() == 3);
  CHECK(p.b.recv_nonce() == 3);
  CHECK(p.b.send_nonce() == 1);
}

TEST_CASE("ciphertext lengths 65535, 65534, 17, 16, 15, 1 and 0 behave as specified") {
  Bytes storage;
  Opened got;
  SUBCASE("65535: the largest frame, a 65518-byte body") {
    Pair p;
    const Bytes body(max_frame_body_bytes, 0x42);
    auto ct = seal_body(p.a, FrameKind::data, body);
    CHECK(ct.size() == 65535);
    REQUIRE(!open_copy(p.b, ct, got, storage));
    CHECK(got.body.size() == max_frame_body_bytes);
  }
  SUBCASE("65534") {
    Pair p;
    auto ct = seal_body(p.a, FrameKind::data, Bytes(max_frame_body_bytes - 1, 1));
    CHECK(ct.size() == 65534);
    CHECK(!open_copy(p.b, ct, got, storage));
  }
  SUBCASE("17: a kind and no body") {
    Pair p;
    auto ct = seal_body(p.a, FrameKind::data, {});
    CHECK(ct.size() == 17);
    CHECK(!open_copy(p.b, ct, got, storage));
  }
  SUBCASE("16: an authentic but empty plaintext has no kind and is refused unopened") {
    Pair p;
    auto ct = raw_ciphertext(1, 0, {});
    REQUIRE(ct.size() == 16);
    CHECK(open_copy(p.b, ct, got, storage) == errc::protocol_error);
    CHECK(p.b.recv_nonce() == 0);
    CHECK(p.b.failure() == errc::protocol_error);
  }
  for (std::size_t len : {15u, 1u, 0u}) {
    CAPTURE(len);
    Pair p;
    CHECK(open_copy(p.b, Bytes(len, 0), got, storage) == errc::protocol_error);
    CHECK(p.b.recv_nonce() == 0);
    // Terminal: even the next valid frame is refused.
    CHECK(open_copy(p.b, seal_body(p.a, FrameKind::data, {}), got, storage) ==
          errc::protocol_error);
  }
  SUBCASE("65536 is not a frame") {
    Pair p;
    CHECK(open_copy(p.b, Bytes(65536, 0), got, storage) == errc::frame_too_large);
  }
}

TEST_CASE("plaintext of 65519 bytes is sealed, 65520 is refused before sealing") {
  Pair p;
  Bytes frame;
  CHECK(!p.a.seal(FrameKind::data, Bytes(max_plaintext_bytes - 1), frame));  // + kind = 65519
  CHECK(p.a.send_nonce() == 1);
  CHECK(p.a.seal(FrameKind::data, Bytes(max_plaintext_bytes), frame) == errc::frame_too_large);
  CHECK(frame.empty());
  CHECK(p.a.send_nonce() == 1);  // nothing was encrypted
}

TEST_CASE("sealing in place from the body slot gives the same frame as sealing a copy") {
  Pair p;
  Pair q;
  const Bytes body = bytes_of("zero copy");
  Bytes copied;
  REQUIRE(!p.a.seal(FrameKind::data, body, copied));
  Bytes in_place(Transport::sealed_bytes(body.size()));
  auto slot = Transport::body_slot(in_place, body.size());
  std::copy(body.begin(), body.end(), slot.begin());
  REQUIRE(!q.a.seal(FrameKind::data, slot, std::span<std::uint8_t>(in_place)));
  CHECK(in_place == copied);
}

TEST_CASE("a corrupted frame is refused without advancing the counter") {
  SUBCASE("at the CipherState level the valid frame then decrypts, and its replay fails") {
    auto recv = cipher(1);
    const auto valid = raw_ciphertext(1, 0, bytes_of("\x02payload"));
    auto corrupted = valid;
    corrupted[3] ^= 0x01;
    Bytes out(valid.size() - aead_tag_bytes);
    CHECK_FALSE(recv.decrypt_with_ad({}, corrupted, out));
    CHECK(recv.nonce() == 0);
    CHECK(recv.decrypt_with_ad({}, valid, out));
    CHECK(recv.nonce() == 1);
    CHECK_FALSE(recv.decrypt_with_ad({}, valid, out));  // replay
    CHECK(recv.nonce() == 1);
  }
  SUBCASE("at the Transport level the failure ends the channel") {
    Pair p;
    Bytes storage;
    Opened got;
    const auto valid = seal_body(p.a, FrameKind::data, bytes_of("payload"));
    for (std::size_t bit = 0; bit < valid.size() * 8; bit += 37) {
      Pair fresh;
      auto flipped = seal_body(fresh.a, FrameKind::data, bytes_of("payload"));
      flipped[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
      CHECK(open_copy(fresh.b, flipped, got, storage) == errc::decrypt_failed);
      CHECK(fresh.b.recv_nonce() == 0);
    }
    auto flipped = valid;
    flipped.back() ^= 0x80;
    CHECK(open_copy(p.b, flipped, got, storage) == errc::decrypt_failed);
    CHECK(p.b.recv_nonce() == 0);
    CHECK(open_copy(p.b, valid, got, storage) == errc::decrypt_failed);  // terminal
    CHECK(p.b.failure() == errc::decrypt_failed);
    // Only a close may still be sent, to tell the peer why.
    Bytes frame;
    CHECK(p.b.seal(FrameKind::data, {}, frame) == errc::decrypt_failed);
    CHECK(!p.b.seal_close(CloseReason::protocol_error, "bad frame", frame));
  }
}

TEST_CASE("swapped, duplicated, dropped and truncated frames end the channel") {
  Bytes storage;
  Opened got;
  auto three = [](Pair& p) {
    std::vector<Bytes> frames;
    for (std::uint8_t i = 0; i < 3; ++i) frames.push_back(seal_body(p.a, FrameKind::data, {i}));
    return frames;
  };
  SUBCASE("swapped") {
    Pair p;
    auto f = three(p);
    CHECK(open_copy(p.b, f[1], got, storage) == errc::decrypt_failed);
  }
  SUBCASE("duplicated") {
    Pair p;
    auto f = three(p);
    CHECK(!open_copy(p.b, f[0], got, storage));
    CHECK(open_copy(p.b, f[0], got, storage) == errc::decrypt_failed);
    CHECK(open_copy(p.b, f[1], got, storage) == errc::decrypt_failed);
  }
  SUBCASE("dropped") {
    Pair p;
    auto f = three(p);
    CHECK(!open_copy(p.b, f[0], got, storage));
    CHECK(open_copy(p.b, f[2], got, storage) == errc::decrypt_failed);
  }
  SUBCASE("truncated") {
    Pair p;
    auto f = three(p);
    f[0].pop_back();
    CHECK(open_copy(p.b, f[0], got, storage) == errc::decrypt_failed);
  }
}

TEST_CASE("at a send counter of 2^64-2 one more frame succeeds and the next is refused") {
  Transport a{cipher(1, last_usable_nonce), cipher(2)};
  Transport b{cipher(2), cipher(1, last_usable_nonce)};
  Bytes frame;
  REQUIRE(!a.seal(FrameKind::data, bytes_of("last"), frame));
  CHECK(a.send_nonce() == ~std::uint64_t{0});
  Bytes ct(frame.begin() + length_prefix_bytes, frame.end());
  Opened got;
  CHECK(!b.open(ct, got));
  CHECK(a.seal(FrameKind::data, bytes_of("one too many"), frame) == errc::nonce_exhausted);
  CHECK(a.seal_close(CloseReason::normal, "", frame) == errc::nonce_exhausted);
  // The receiver, now at 2^64-1 itself, refuses whatever comes next without decrypting it.
  Bytes storage;
  CHECK(open_copy(b, Bytes(min_transport_frame_bytes, 0), got, storage) == errc::nonce_exhausted);
}

TEST_CASE("the set_send_nonce test hook starts a Transport's counter near its end") {
  Pair p;
  p.a.set_send_nonce_for_testing(last_usable_nonce);
  Bytes frame;
  CHECK(!p.a.seal(FrameKind::ping, Bytes(8), frame));
  CHECK(p.a.seal(FrameKind::ping, Bytes(8), frame) == errc::nonce_exhausted);
}

TEST_CASE("unknown kinds are a protocol error") {
  for (int kind_value : {0, 6, 7, 0x80, 0xff}) {
    const auto kind = static_cast<std::uint8_t>(kind_value);
    CAPTURE(kind_value);
    Transport b{cipher(2), cipher(1)};
    Bytes storage;
    Opened got;
    CHECK(open_copy(b, raw_ciphertext(1, 0, {kind, 1, 2}), got, storage) == errc::protocol_error);
    CHECK(b.recv_nonce() == 1);  // it authenticated; the channel ends all the same
  }
  Pair p;
  Bytes frame;
  CHECK(p.a.seal(static_cast<FrameKind>(9), {}, frame) == errc::protocol_error);
}

TEST_CASE("ping and pong carry exactly an 8-byte token") {
  for (std::size_t len : {0u, 7u, 9u}) {
    CAPTURE(len);
    Pair p;
    Bytes frame;
    CHECK(p.a.seal(FrameKind::ping, Bytes(len), frame) == errc::protocol_error);
    Bytes plaintext(1 + len);
    plaintext[0] = static_cast<std::uint8_t>(FrameKind::pong);
    Bytes storage;
    Opened got;
    CHECK(open_copy(p.b, raw_ciphertext(1, 0, plaintext), got, storage) == errc::protocol_error);
  }
}

TEST_CASE("an authenticated close carries its reason and detail, and ends each direction") {
  Pair p;
  Bytes frame;
  REQUIRE(!p.a.seal_close(CloseReason::shutdown, "relay draining", frame));
  CHECK(p.a.close_sent());
  Bytes storage;
  Opened got;
  REQUIRE(!open_copy(p.b, Bytes(frame.begin() + 2, frame.end()), got, storage));
  CHECK(got.kind == FrameKind::close);
  CHECK(got.close_reason == CloseReason::shutdown);
  CHECK(got.close_detail == "relay draining");
  CHECK(p.b.peer_closed());
  // Nothing is sealed after a close, nothing is opened after one.
  CHECK(p.a.seal(FrameKind::data, {}, frame) == errc::channel_closed);
  CHECK(open_copy(p.b, raw_ciphertext(1, 1, {2}), got, storage) == errc::protocol_error);
  // The other direction may still answer with its own close.
  CHECK(!p.b.seal_close(CloseReason::normal, "", frame));
}

TEST_CASE("close details are bounded and UTF-8") {
  Bytes storage;
  Opened got;
  SUBCASE("a long detail is cut to 200 bytes on a character boundary") {
    Pair p;
    std::string detail(199, 'x');
    detail += "\xc3\xa9\xc3\xa9";  // two 2-byte characters straddling the limit
    Bytes frame;
    REQUIRE(!p.a.seal_close(CloseReason::normal, detail, frame));
    REQUIRE(!open_copy(p.b, Bytes(frame.begin() + 2, frame.end()), got, storage));
    CHECK(got.close_detail == std::string(199, 'x'));
  }
  SUBCASE("a detail that is not UTF-8 is dropped, the close still goes out") {
    Pair p;
    Bytes frame;
    REQUIRE(!p.a.seal_close(CloseReason::timeout, "\xff\xfe", frame));
    REQUIRE(!open_copy(p.b, Bytes(frame.begin() + 2, frame.end()), got, storage));
    CHECK(got.close_reason == CloseReason::timeout);
    CHECK(got.close_detail.empty());
  }
  SUBCASE("aborted is local only and never sent") {
    Pair p;
    Bytes frame;
    CHECK(p.a.seal_close(CloseReason::aborted, "", frame) == errc::protocol_error);
    CHECK(p.a.send_nonce() == 0);
  }
  SUBCASE("received: 200 bytes of detail pass, 201 fail") {
    Bytes at_max(1 + 1 + max_close_detail_bytes, 'd');
    at_max[0] = static_cast<std::uint8_t>(FrameKind::close);
    at_max[1] = static_cast<std::uint8_t>(CloseReason::normal);
    Transport ok{cipher(2), cipher(1)};
    CHECK(!open_copy(ok, raw_ciphertext(1, 0, at_max), got, storage));
    at_max.push_back('d');
    Transport over{cipher(2), cipher(1)};
    CHECK(open_copy(over, raw_ciphertext(1, 0, at_max), got, storage) == errc::protocol_error);
  }
  SUBCASE("received: an empty close, the aborted reason, an unknown reason, bad UTF-8 fail") {
    const std::uint8_t close = static_cast<std::uint8_t>(FrameKind::close);
    for (const Bytes& plaintext :
         {Bytes{close}, Bytes{close, 255}, Bytes{close, 12}, Bytes{close, 0, 0xc0, 0x80}}) {
      Transport b{cipher(2), cipher(1)};
      CHECK(open_copy(b, raw_ciphertext(1, 0, plaintext), got, storage) == errc::protocol_error);
    }
  }
}

TEST_CASE("the UTF-8 check accepts text and refuses malformed sequences") {
  CHECK(is_valid_utf8(bytes_of("plain ascii")));
  CHECK(is_valid_utf8(bytes_of("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80")));
  CHECK_FALSE(is_valid_utf8(bytes_of("\xc3")));              // truncated
  CHECK_FALSE(is_valid_utf8(bytes_of("\x80")));              // lone continuation
  CHECK_FALSE(is_valid_utf8(bytes_of("\xc0\xaf")));          // overlong '/'
  CHECK_FALSE(is_valid_utf8(bytes_of("\xed\xa0\x80")));      // surrogate
  CHECK_FALSE(is_valid_utf8(bytes_of("\xf4\x90\x80\x80")));  // past U+10FFFF
  CHECK_FALSE(is_valid_utf8(bytes_of("\xff")));
}

namespace {

Bytes from_hex(std::string_view hex) {
  Bytes out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<std::uint8_t>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

CipherState cipher_from_hex(std::string_view hex) {
  const auto key = from_hex(hex);
  return CipherState(std::span<const std::uint8_t, key_bytes>(key.data(), key_bytes),
                     Cipher::chachapoly);
}

}  // namespace

TEST_CASE("the example frames of docs/protocol.md section 3.7 are reproduced byte for byte") {
  // k1 and k2: init_send_key and resp_send_key of tests/vectors/strelay-xk1sig.json.
  constexpr std::string_view k1 =
      "bd6e3ba38297195feac06ce02d7fa8f0ca93111f664d6460f056bda5b920734e";
  constexpr std::string_view k2 =
      "f4b0133a2a9134ff1f55b8aaacc1a7e590e9935fcb7b0032920ca85a4fd0911f";
  Transport node{cipher_from_hex(k1), cipher_from_hex(k2)};
  Transport relay{cipher_from_hex(k2), cipher_from_hex(k1)};
  const Bytes token{0, 1, 2, 3, 4, 5, 6, 7};
  Bytes frame;
  REQUIRE(!node.seal(FrameKind::ping, token, frame));
  CHECK(frame == from_hex("0019cdb2e743b59b3c7ec2c3dbd5e9e55cc81c0b6e69b854421222"));
  REQUIRE(!relay.seal(FrameKind::pong, token, frame));
  CHECK(frame == from_hex("0019e76564d9062599bf1f18f68c95d0563d2957a319feb289c1bd"));
  REQUIRE(!node.seal(FrameKind::data, bytes_of("hello"), frame));
  CHECK(frame == from_hex("0016d88de1ac22349076af3de1bc2c748bc1483c03bb54a4"));
  REQUIRE(!node.seal_close(CloseReason::normal, "bye", frame));
  CHECK(frame == from_hex("001554fd4bd88eee43436f7918d6e236c5fe227f08bc32"));
  // And the relay opens the node's three frames in order.
  Opened got;
  Bytes storage;
  for (auto hex : {"cdb2e743b59b3c7ec2c3dbd5e9e55cc81c0b6e69b854421222",
                   "d88de1ac22349076af3de1bc2c748bc1483c03bb54a4",
                   "54fd4bd88eee43436f7918d6e236c5fe227f08bc32"}) {
    CHECK(!open_copy(relay, from_hex(hex), got, storage));
  }
  CHECK(got.kind == FrameKind::close);
  CHECK(got.close_detail == "bye");
}
