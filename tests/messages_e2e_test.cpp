// Tests for common/messages: the optional fields of the end-to-end msg1 with Connect
// (docs/protocol.md 4.4, "The end-to-end msg1 with connect"): round trips, the old messages
// byte for byte, the msg1's exact size (32, or absent), and the seeds of fuzz/corpus/messages
// written by `capnp encode` for the new fields.
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string_view>
#include <vector>

#include "common/errors.hpp"
#include "common/keys.hpp"
#include "common/messages.hpp"
#include "relay.capnp.h"

using namespace strelay;

namespace {

std::vector<std::uint8_t> from_hex(std::string_view hex) {
  std::vector<std::uint8_t> out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<std::uint8_t>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

}  // namespace

namespace {

E2eMsg1 test_msg1() {
  E2eMsg1 m{};
  for (std::size_t i = 0; i < m.size(); ++i) m[i] = static_cast<std::uint8_t>(0xe0 + i);
  return m;
}

// Connect, Accept or IncomingConnection with an e2eMsg1 of `size` bytes, by the capnp builder.
template <class Root, class Set>
std::vector<std::uint8_t> with_msg1_of(std::size_t size, Set set) {
  capnp::MallocMessageBuilder builder;
  const std::vector<std::uint8_t> msg1(size, 0x42);
  const auto key = Identity::generate().public_key();
  set(builder.initRoot<Root>(), capnp::Data::Reader(key.bytes().data(), key_bytes),
      capnp::Data::Reader(msg1.data(), msg1.size()));
  const auto words = capnp::messageToFlatArray(builder);
  return {words.asBytes().begin(), words.asBytes().end()};
}

}  // namespace

TEST_CASE("the end-to-end msg1 fields round-trip, and a message without them is the old bytes") {
  const auto k = Identity::generate().public_key();
  const auto m = test_msg1();
  for (const NodeMessage& n :
       {NodeMessage{Listen{true}}, NodeMessage{Connect{k, m}}, NodeMessage{Accept{k, m}}}) {
    const auto back = try_decode_node_message(encode(n));
    REQUIRE(back.has_value());
    CHECK(*back == n);
  }
  for (const RelayMessage& r :
       {RelayMessage{IncomingConnection{k, m}}, RelayMessage{Connected{k, true}}}) {
    const auto back = try_decode_relay_message(encode(r));
    REQUIRE(back.has_value());
    CHECK(*back == r);
  }
  CHECK(encode(NodeMessage{Connect{k, std::nullopt}}).size() == 72);  // the old layout
  CHECK(encode(NodeMessage{Connect{k, m}}).size() == 112);
  CHECK(encode(NodeMessage{Listen{false}}).size() == 32);
  CHECK(encode(RelayMessage{Connected{k, false}}).size() == 72);
}

TEST_CASE("an e2eMsg1 is exactly 32 bytes (or absent): 31 and 33 are protocol errors") {
  auto connect = [](std::size_t n) {
    return with_msg1_of<schema::NodeMessage>(n, [](auto root, auto key, auto msg1) {
      auto c = root.initConnect();
      c.setTarget(key);
      c.setE2eMsg1(msg1);
    });
  };
  auto accept = [](std::size_t n) {
    return with_msg1_of<schema::NodeMessage>(n, [](auto root, auto key, auto msg1) {
      auto a = root.initAccept();
      a.setFrom(key);
      a.setE2eMsg1(msg1);
    });
  };
  auto incoming = [](std::size_t n) {
    return with_msg1_of<schema::RelayMessage>(n, [](auto root, auto key, auto msg1) {
      auto i = root.initIncomingConnection();
      i.setFrom(key);
      i.setE2eMsg1(msg1);
    });
  };
  CHECK(std::get<Connect>(*try_decode_node_message(connect(32))).e2e_msg1.has_value());
  CHECK_FALSE(std::get<Connect>(*try_decode_node_message(connect(0))).e2e_msg1.has_value());
  CHECK(std::get<Accept>(*try_decode_node_message(accept(32))).e2e_msg1.has_value());
  CHECK(std::get<IncomingConnection>(*try_decode_relay_message(incoming(32))).e2e_msg1);
  for (std::size_t n : {std::size_t{31}, std::size_t{33}, std::size_t{1}, std::size_t{64}}) {
    INFO(n);
    CHECK(try_decode_node_message(connect(n)).error() == errc::protocol_error);
    CHECK(try_decode_node_message(accept(n)).error() == errc::protocol_error);
    CHECK(try_decode_relay_message(incoming(n)).error() == errc::protocol_error);
  }
}

TEST_CASE("the e2e seeds (capnp encode of the documented text forms) hold the documented values") {
  const std::filesystem::path dir =
      std::filesystem::path(STRELAY_TESTS_DIR) / ".." / "fuzz" / "corpus" / "messages";
  auto read = [&](const char* name) {
    std::ifstream in(dir / name, std::ios::binary);
    return std::vector<std::uint8_t>{std::istreambuf_iterator<char>(in), {}};
  };
  const auto k = *PublicKey::from_bytes(
      from_hex("03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"));
  E2eMsg1 m{};
  const auto mh = from_hex("e4078032cb3aa4bacfb8cd302bc47905b6770a48e77a59e926b14a741d68d404");
  std::copy(mh.begin(), mh.end(), m.begin());
  CHECK(*try_decode_node_message(read("node-listen-early-e2e")) == NodeMessage{Listen{true}});
  CHECK(*try_decode_node_message(read("node-connect-e2e-msg1")) == NodeMessage{Connect{k, m}});
  CHECK(*try_decode_node_message(read("node-accept-e2e-msg1")) == NodeMessage{Accept{k, m}});
  CHECK(*try_decode_relay_message(read("relay-incoming-connection-e2e-msg1")) ==
        RelayMessage{IncomingConnection{k, m}});
  CHECK(*try_decode_relay_message(read("relay-connected-early-e2e")) ==
        RelayMessage{Connected{k, true}});
}
