// Adversarial suite, section "Framing and parsing" of ../shared/design/adversarial-tests.md,
// against the real strelay binary with a HostileClient. Each test is named after its case and
// ends with WatchedRelay::check_clean() (canary, gauges and fds, clean exit without sanitizer
// reports, no secret logged). The decoders' own max/max+1 tests are in frame_test.cpp,
// transport_test.cpp and messages_test.cpp.
#include <doctest/doctest.h>
#include <sodium.h>

#include <array>
#include <random>
#include <thread>

#include "support/hostile_client.hpp"
#include "support/relay_probe.hpp"
#include "support/watched_relay.hpp"

using namespace strelay;
using namespace strelay::test;
using namespace std::chrono_literals;
using What = HostileClient::Reply::What;
using Clock = std::chrono::steady_clock;

namespace {

std::array<std::uint8_t, ping_token_bytes> token_bytes(std::uint64_t token) {
  std::array<std::uint8_t, ping_token_bytes> out{};
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::uint8_t>(token >> (8 * i));
  return out;
}

// A listener through the hostile client, ListenOk received.
std::unique_ptr<HostileClient> make_listener(const RelayAddress& relay, Hooks hooks = {},
                                             const std::string& source = "127.0.0.31") {
  auto client = std::make_unique<HostileClient>(relay, hooks, source);
  REQUIRE(client->handshake(Listen{}));
  const auto ok = client->next_message();
  REQUIRE(ok.message);
  REQUIRE(std::holds_alternative<ListenOk>(*ok.message));
  return client;
}

// The listener answers a ping: it is alive and unharmed.
bool answers_ping(HostileClient& client, std::uint64_t token) {
  if (!client.send_ping(token)) return false;
  const auto r = client.receive(3s, true);
  const auto expected = token_bytes(token);
  return r.what == What::frame && r.kind == FrameKind::pong &&
         r.body == std::vector<std::uint8_t>(expected.begin(), expected.end());
}

std::vector<std::uint8_t> with_length(std::size_t length, std::span<const std::uint8_t> body) {
  std::vector<std::uint8_t> out(length_prefix_bytes + body.size());
  out[0] = static_cast<std::uint8_t>(length >> 8);
  out[1] = static_cast<std::uint8_t>(length);
  std::copy(body.begin(), body.end(), out.begin() + length_prefix_bytes);
  return out;
}

}  // namespace

TEST_CASE(
    "Frame lengths: ciphertexts of 0, 1, 15 and 16 bytes are refused; 17, 65534 and 65535 "
    "authenticate and are judged by their content") {
  WatchedRelay relay(adversarial_flags());
  {  // 0, 1, 15 and 16: shorter than a tag and a kind
    for (std::size_t n : {0u, 1u, 15u, 16u}) {
      CAPTURE(n);
      auto client = make_listener(relay.address());
      std::vector<std::uint8_t> body(n, 0x33);
      client->send_raw(with_length(n, body));
      CHECK(ended_with(client->receive(3s, false), CloseReason::protocol_error));
      CHECK(client->wait_closed(2s));
    }
  }
  {  // 17: an empty control message, sealed: authenticated, then refused as a message
    auto client = make_listener(relay.address());
    CHECK(client->send_frame(FrameKind::control, {}));
    CHECK(ended_with(client->receive(3s, false), CloseReason::protocol_error));
  }
  {  // 65534 and 65535: sealed control frames far above the 4 KiB message limit
    for (std::size_t n : {65534u, 65535u}) {
      CAPTURE(n);
      auto client = make_listener(relay.address());
      const std::vector<std::uint8_t> body(n - frame_kind_bytes - aead_tag_bytes, 0);
      const auto frame = client->seal_next(FrameKind::control, body);
      REQUIRE(frame.size() == length_prefix_bytes + n);
      client->send_raw(frame);
      CHECK(ended_with(client->receive(3s, false), CloseReason::protocol_error));
    }
  }
  {  // 65535 bytes of noise: fails to authenticate
    auto client = make_listener(relay.address());
    std::vector<std::uint8_t> noise(65535);
    randombytes_buf(noise.data(), noise.size());
    client->send_raw(with_length(noise.size(), noise));
    CHECK(ended_with(client->receive(3s, false), CloseReason::protocol_error));
  }
  {  // 27: a ping, the smallest frame with a meaning, is answered
    auto client = make_listener(relay.address());
    CHECK(answers_ping(*client, 7));
  }
  relay.check_clean(2s);
}

TEST_CASE(
    "Frame lengths: random splits of a valid stream, down to 1-byte reads, decode identically at "
    "the relay") {
  WatchedRelay relay(adversarial_flags());
  std::mt19937 random(20261122);
  // The handshake one byte per write.
  Hooks hooks;
  hooks.drip = Hooks::Drip{1, 1ms};
  auto client = make_listener(relay.address(), hooks);
  client->hooks().drip.reset();
  // 100 pings in one stream, written in random pieces of 1 to 100 bytes.
  std::vector<std::uint8_t> stream;
  for (std::uint64_t t = 0; t < 100; ++t) {
    const auto f = client->seal_next(FrameKind::ping, token_bytes(1000 + t));
    stream.insert(stream.end(), f.begin(), f.end());
  }
  for (std::size_t at = 0; at < stream.size();) {
    const auto n = std::min<std::size_t>(
        stream.size() - at, std::uniform_int_distribution<std::size_t>(1, 100)(random));
    REQUIRE(client->send_raw(std::span(stream).subspan(at, n)));
    at += n;
    if (random() % 4 == 0) std::this_thread::sleep_for(1ms);  // let some pieces go out alone
  }
  for (std::uint64_t t = 0; t < 100; ++t) {
    const auto r = client->receive(3s, false);
    REQUIRE(r.what == What::frame);
    CHECK(r.kind == FrameKind::pong);
    const auto expected = token_bytes(1000 + t);
    CHECK(r.body == std::vector<std::uint8_t>(expected.begin(), expected.end()));
  }
  client->close();
  relay.check_clean(2s);
}

TEST_CASE(
    "Slow frame body: a header, then 1 byte every 2 s, is cut off by the per-frame deadline") {
  constexpr auto frame_limit = frame_deadline;  // 10 s, not a flag: the one slow test of the file
  WatchedRelay relay(adversarial_flags());
  auto client = make_listener(relay.address());
  const auto frame = client->seal_next(FrameKind::ping, token_bytes(9));
  const auto start = Clock::now();
  std::thread dripper([&] {
    client->send_raw(std::span(frame).first(2));
    for (std::size_t i = 2; i < frame.size(); ++i) {
      std::this_thread::sleep_for(2s);
      if (!client->send_raw(std::span(frame).subspan(i, 1)) ||
          Clock::now() - start > frame_limit + 5s)
        return;
    }
  });
  const auto end = client->receive(frame_limit + 5s, false);
  const auto lived = Clock::now() - start;
  dripper.join();
  CHECK(ended_with(end, CloseReason::timeout, false));
  MESSAGE("a frame dripped at 1 byte per 2 s was cut after "
          << std::chrono::duration<double>(lived).count() << " s");
  CHECK(lived >= frame_limit - 100ms);
  CHECK(lived < frame_limit + 3s);
  relay.check_clean(2s);
}

TEST_CASE(
    "Hostile Cap'n Proto in an authenticated frame: each gets a protocol error and a close, costs "
    "little CPU, and leaves other sessions untouched") {
  WatchedRelay relay(adversarial_flags());
  auto bystander = make_listener(relay.address(), {}, "127.0.0.32");
  const auto cpu_before = relay.probe().cpu_seconds();
  int cases = 0;
  for (const auto& name : hostile_capnp_names()) {
    CAPTURE(name);
    const auto bytes = hostile_capnp(name);
    {  // as the first request, inside msg3
      HostileClient client(relay.address(), {}, "127.0.0.33");
      REQUIRE(client.handshake_with_payload(bytes));
      CHECK(ended_with(client.receive(3s, false), CloseReason::protocol_error, false));
      CHECK(client.wait_closed(2s));
    }
    {  // as a listener's control message
      auto client = make_listener(relay.address(), {}, "127.0.0.33");
      REQUIRE(client->send_frame(FrameKind::control, bytes));
      CHECK(ended_with(client->receive(3s, false), CloseReason::protocol_error, false));
      CHECK(client->wait_closed(2s));
    }
    cases += 2;
  }
  const auto cpu = relay.probe().cpu_seconds() - cpu_before;
  MESSAGE(cases << " hostile messages cost the relay " << cpu
                << " s of CPU in all (handshakes included)");
  CHECK(cpu < 1.0);
  CHECK(answers_ping(*bystander, 77));
  bystander->close();
  relay.check_clean(2s);
}

TEST_CASE(
    "Unknown request kinds and data before pairing: a protocol error, and nothing is forwarded") {
  WatchedRelay relay(adversarial_flags());
  {  // an unknown union member as the first request
    // NodeMessage with discriminant 9, which this version does not know.
    std::vector<std::uint8_t> bytes{0, 0, 0, 0, 3, 0, 0, 0};
    for (std::uint64_t w : {std::uint64_t{1} << 32 | std::uint64_t{1} << 48, std::uint64_t{9},
                            std::uint64_t{0xfffffffc}}) {
      for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<std::uint8_t>(w >> (8 * i)));
    }
    HostileClient client(relay.address(), {}, "127.0.0.34");
    REQUIRE(client.handshake_with_payload(bytes));
    CHECK(ended_with(client.receive(3s, false), CloseReason::protocol_error, false));
  }
  {  // RejectConnection as the first request (it needs a listener)
    HostileClient client(relay.address(), {}, "127.0.0.34");
    REQUIRE(client.handshake(RejectConnection{Identity::generate().public_key()}));
    CHECK(ended_with(client.receive(3s, false), CloseReason::protocol_error, false));
  }
  {  // a data frame from a listener, and a data frame from a pending connector, reach nobody
    auto listener = make_listener(relay.address(), {}, "127.0.0.34");
    const std::vector<std::uint8_t> secret_text{'p', 'l', 'a', 'i', 'n', 't', 'e', 'x', 't', '-',
                                                'm', 'a', 'r', 'k', 'e', 'r', '-', '4', '2'};
    SecretLedger::add("plaintext sent before pairing", secret_text);
    HostileClient connector(relay.address(), {}, "127.0.0.35");
    REQUIRE(connector.handshake(Connect{listener->identity().public_key()}));
    const auto incoming = listener->next_message();
    REQUIRE(incoming.message);
    REQUIRE(std::holds_alternative<IncomingConnection>(*incoming.message));
    connector.send_frame(FrameKind::data, secret_text);
    CHECK(ended_with(connector.receive(3s, false), CloseReason::protocol_error, false));
    // The listener hears nothing of it: no data, at most a control message.
    const auto quiet = listener->receive(500ms, true);
    CHECK((quiet.what == What::timeout ||
           (quiet.what == What::frame && quiet.kind == FrameKind::control)));
    listener->send_frame(FrameKind::data, secret_text);
    CHECK(ended_with(listener->receive(3s, false), CloseReason::protocol_error, false));
  }
  relay.check_clean(2s);
}
