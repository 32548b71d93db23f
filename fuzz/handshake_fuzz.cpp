// libFuzzer target for the readers of untrusted handshake bytes. The first input byte picks the
// reader; the rest is what a hostile peer sends:
//   0  the preamble parser (the first 8 bytes)
//   1  ResponderHandshake::consume_msg1 on a fresh relay
//   2  InitiatorHandshake::consume_msg2 on a node that sent msg1
//   3  ResponderHandshake::consume_msg3 on a relay that sent msg2
//   4  a whole handshake with the input as msg3's payload (must always succeed)
// Parties and ephemerals are the fixed ones of tests/vectors/strelay-xk1sig.json, so runs are
// deterministic, and success can be checked against the genuine messages: without the keys, no
// other msg2, and no other msg3 prefix, may ever authenticate.
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "common/handshake.hpp"
#include "common/preamble.hpp"

using namespace strelay;

namespace {

using Key = std::array<std::uint8_t, key_bytes>;

Key sha256_of(std::string_view text) {
  return sha256(std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
}

struct Fixture {
  Identity node = Identity::from_seed([] {
    Key seed{};
    for (std::size_t i = 0; i < seed.size(); ++i) seed[i] = static_cast<std::uint8_t>(i);
    return seed;
  }());
  Identity relay = Identity::from_seed(sha256_of("relay example seed"));
  Key node_e = sha256_of("strelay vector: initiator ephemeral");
  Key relay_e = sha256_of("strelay vector: responder ephemeral");
  std::vector<std::uint8_t> msg1, msg2, msg3;

  InitiatorHandshake initiator() const {
    return InitiatorHandshake::with_ephemeral_for_testing(node, relay.public_key(),
                                                          HandshakeLayer::hop, node_e);
  }
  ResponderHandshake responder() const {
    return ResponderHandshake::with_ephemeral_for_testing(relay, HandshakeLayer::hop, relay_e);
  }

  Fixture() {
    auto i = initiator();
    auto r = responder();
    msg1 = i.create_msg1();
    if (r.consume_msg1(msg1)) __builtin_trap();
    msg2 = r.create_msg2();
    if (i.consume_msg2(msg2)) __builtin_trap();
    msg3 = i.create_msg3({});
  }
};

const Fixture& fixture() {
  static const Fixture f = [] {
    init_crypto();
    return Fixture();
  }();
  return f;
}

void check(bool condition) {
  if (!condition) __builtin_trap();
}

void fuzz_preamble(std::span<const std::uint8_t> data) {
  if (data.size() < preamble_bytes) return;
  const auto result = parse_preamble(data.first<preamble_bytes>());
  const bool ours = std::equal(current_preamble.begin(), current_preamble.end(), data.begin());
  check((result.status == PreambleStatus::ok) == ours);
  check((relay_reply_to(result) == PreambleReply::proceed) == ours);
}

void fuzz_msg1(std::span<const std::uint8_t> data) {
  auto responder = fixture().responder();
  if (!responder.consume_msg1(data)) {
    check(data.size() == handshake_msg1_bytes);
    check(responder.create_msg2().size() == handshake_msg2_bytes);
  } else {
    check(responder.create_msg2().empty());
  }
}

void fuzz_msg2(std::span<const std::uint8_t> data) {
  auto initiator = fixture().initiator();
  initiator.create_msg1();
  const auto& genuine = fixture().msg2;
  if (!initiator.consume_msg2(data)) {
    check(std::equal(data.begin(), data.end(), genuine.begin(), genuine.end()));
  } else {
    check(initiator.create_msg3({}).empty());
  }
}

void fuzz_msg3(std::span<const std::uint8_t> data) {
  auto responder = fixture().responder();
  check(!responder.consume_msg1(fixture().msg1));
  check(responder.create_msg2() == fixture().msg2);
  std::vector<std::uint8_t> payload;
  if (!responder.consume_msg3(data, payload)) {
    // Enc(s) || Enc(sig) are fixed by the keys: only the genuine ones can authenticate.
    const std::size_t fixed = handshake_msg3_min_bytes - aead_tag_bytes;
    check(std::equal(data.begin(), data.begin() + static_cast<std::ptrdiff_t>(fixed),
                     fixture().msg3.begin()));
    check(payload.size() == data.size() - handshake_msg3_min_bytes);
    check(responder.finish().peer == fixture().node.public_key());
  } else {
    check(payload.empty());
  }
}

void fuzz_round_trip(std::span<const std::uint8_t> data) {
  const auto payload = data.first(std::min(data.size(), max_handshake_payload_bytes));
  auto initiator = fixture().initiator();
  auto responder = fixture().responder();
  check(!responder.consume_msg1(initiator.create_msg1()));
  check(!initiator.consume_msg2(responder.create_msg2()));
  std::vector<std::uint8_t> received;
  check(!responder.consume_msg3(initiator.create_msg3(payload), received));
  check(std::equal(received.begin(), received.end(), payload.begin(), payload.end()));
  check(initiator.finish().session_id == responder.finish().session_id);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const auto input = std::span(data + 1, size - 1);
  switch (data[0] % 5) {
    case 0: fuzz_preamble(input); break;
    case 1: fuzz_msg1(input); break;
    case 2: fuzz_msg2(input); break;
    case 3: fuzz_msg3(input); break;
    default: fuzz_round_trip(input); break;
  }
  return 0;
}
