// Adversarial suite, section "Handshake and crypto" of ../shared/design/adversarial-tests.md,
// against the real strelay binary: each test is named after its case, drives the relay with a
// HostileClient (tests/support/hostile_client.hpp) and ends with WatchedRelay::check_clean()
// (the canary unaffected, gauges and open fds back to baseline, a clean exit with no sanitizer
// report, no secret in the log). The same cases in memory, bit by bit, are in
// handshake_test.cpp, noise_test.cpp and transport_test.cpp.
#include <doctest/doctest.h>
#include <sodium.h>
#include <sys/socket.h>

#include <array>
#include <thread>

#include "support/hostile_client.hpp"
#include "support/relay_probe.hpp"
#include "support/watched_relay.hpp"

using namespace strelay;
using namespace strelay::test;
using namespace std::chrono_literals;
using What = HostileClient::Reply::What;

namespace {

constexpr std::size_t preamble_and_msg1_bytes =
    preamble_bytes + length_prefix_bytes + handshake_msg1_bytes;

// Handshakes the relay completed so far.
std::uint64_t handshakes_ok(const WatchedRelay& relay) {
  return relay.probe().counter("handshakes_total", "ok");
}

// After a failed handshake the relay must close without a word, and promptly.
void check_closed_silently(HostileClient& client, std::size_t received_before) {
  CHECK(client.wait_closed(3s));
  CHECK(client.received() == received_before);
}

// A client that sends msg3 built as `options` says, then EOF; the relay must say nothing.
void send_forged_msg3(const RelayAddress& relay, const Msg3Options& options,
                      std::optional<std::array<std::uint8_t, key_bytes>> msg1 = {}) {
  HostileClient client(relay, {}, "127.0.0.21");
  REQUIRE(client.ok());
  client.send_preamble_and_msg1(msg1);
  const auto msg2 = client.read_msg2();
  REQUIRE(msg2);
  REQUIRE_FALSE(client.consume_msg2(*msg2));
  REQUIRE_FALSE(client.send_msg3(listen_payload(), options).empty());
  const auto before = client.received();
  client.fin();
  check_closed_silently(client, before);
}

}  // namespace

TEST_CASE(
    "Noise vectors: reproduced byte for byte (unit tests), and a real relay completes the "
    "written-out handshake") {
  // The vectors themselves are checked in noise_test.cpp ("the Noise core reproduces every
  // official vector byte for byte") and handshake_test.cpp ("the signed handshake reproduces its
  // frozen vectors"). Here the hostile client's own step-by-step handshake, written on the Noise
  // core alone, is accepted by strelay: the suite's client speaks the protocol exactly.
  WatchedRelay relay(adversarial_flags());
  HostileClient client(relay.address());
  REQUIRE(client.handshake(Listen{}));
  const auto reply = client.next_message();
  REQUIRE(reply.what == What::frame);
  REQUIRE(reply.message);
  CHECK(std::holds_alternative<ListenOk>(*reply.message));
  client.close();
  relay.check_clean(2s);
}

TEST_CASE(
    "Wrong relay key in the ticket: the node aborts at msg2 with relay identity mismatch and never "
    "sends msg3") {
  WatchedRelay relay(adversarial_flags({"--handshake-timeout", "2"}));
  const auto ok_before = handshakes_ok(relay);
  RelayAddress wrong = relay.address();
  wrong.key = Identity::generate().public_key();
  HostileClient client(wrong);
  REQUIRE(client.ok());
  client.send_preamble_and_msg1();
  const auto msg2 = client.read_msg2();
  REQUIRE(msg2);
  CHECK(client.consume_msg2(*msg2) == errc::relay_identity_mismatch);
  CHECK(client.bytes_sent() == preamble_and_msg1_bytes);  // msg3, and so our identity, never left
  // The relay learns nothing: it gives up at its handshake deadline.
  CHECK(client.wait_closed(4s));
  CHECK(handshakes_ok(relay) == ok_before);
  // The node library proper stops at msg2 with the same error.
  run_task(
      [&]() -> boost::asio::awaitable<void> {
        auto c = co_await open_connection(wrong, Identity::generate(), Listen{});
        CHECK(c.error == errc::relay_identity_mismatch);
      }(),
      10s);
  CHECK(handshakes_ok(relay) == ok_before);
  relay.check_clean(2s + 1s);
}

TEST_CASE(
    "Bit flips: each bit of msg1, msg2 and msg3 flipped against a real relay fails the handshake "
    "and creates no session") {
  WatchedRelay relay(adversarial_flags({"--handshake-timeout", "2"}));
  const auto ok_before = handshakes_ok(relay);
  std::size_t flips = 0;

  {  // msg1: every bit of the preamble, the length and the ephemeral key
    for (std::size_t bit = 0; bit < 8 * preamble_and_msg1_bytes; ++bit) {
      const bool in_preamble = bit / 8 < preamble_bytes;
      Hooks hooks;
      hooks.corrupt =
          Hooks::Corrupt{in_preamble ? 0 : 1, in_preamble ? bit / 8 : bit / 8 - preamble_bytes,
                         static_cast<std::uint8_t>(1u << (bit % 8))};
      HostileClient client(relay.address(), hooks, "127.0.0.21");
      REQUIRE(client.ok());
      client.send_preamble_and_msg1();
      client.fin();  // a flipped length would otherwise wait for more
      if (const auto msg2 = client.read_msg2(3s)) CHECK(client.consume_msg2(*msg2));
      CHECK(client.wait_closed(3s));
      ++flips;
    }
  }
  {  // msg2: every bit, as received
    for (std::size_t bit = 0; bit < 8 * handshake_msg2_bytes; ++bit) {
      Hooks hooks;
      hooks.corrupt = Hooks::Corrupt{2, 2 + bit / 8, static_cast<std::uint8_t>(1u << (bit % 8))};
      HostileClient client(relay.address(), hooks, "127.0.0.22");
      REQUIRE(client.ok());
      client.send_preamble_and_msg1();
      const auto msg2 = client.read_msg2();
      REQUIRE(msg2);
      CHECK(client.consume_msg2(*msg2));
      ++flips;
    }
  }
  {  // msg3: every bit of the length and the body
    const std::size_t msg3_bytes =
        length_prefix_bytes + handshake_msg3_min_bytes + listen_payload().size();
    for (std::size_t bit = 0; bit < 8 * msg3_bytes; ++bit) {
      Hooks hooks;
      hooks.corrupt = Hooks::Corrupt{3, bit / 8, static_cast<std::uint8_t>(1u << (bit % 8))};
      HostileClient client(relay.address(), hooks, "127.0.0.23");
      REQUIRE(client.ok());
      client.send_preamble_and_msg1();
      const auto msg2 = client.read_msg2();
      REQUIRE(msg2);
      REQUIRE_FALSE(client.consume_msg2(*msg2));
      REQUIRE_FALSE(client.send_msg3(listen_payload()).empty());
      const auto before = client.received();
      client.fin();
      check_closed_silently(client, before);
      ++flips;
    }
  }
  MESSAGE(flips << " flipped handshakes against the relay");
  CHECK(handshakes_ok(relay) == ok_before);
  CHECK(relay.probe().gauge("listeners") == relay.baseline().listeners);
  relay.check_clean(2s + 1s);
}

TEST_CASE(
    "Truncation and extension: every prefix then EOF, trailing bytes, and 65535 announced with 10 "
    "sent, end in a close without a large allocation") {
  WatchedRelay relay(adversarial_flags({"--handshake-timeout", "3"}));
  const auto ok_before = handshakes_ok(relay);

  {  // every prefix of the preamble and msg1, then EOF
    const auto whole = preamble_and_msg1();
    for (std::size_t n = 0; n < whole.size(); ++n) {
      RawSocket s("127.0.0.24", relay.address().endpoint);
      REQUIRE(s.ok());
      REQUIRE(s.send_some(std::span(whole).first(n)) == static_cast<std::int64_t>(n));
      ::shutdown(s.fd(), SHUT_WR);
      CHECK(s.wait_peer_closed(2s));
      CHECK(s.received() == 0);
    }
  }
  {  // every prefix of msg3, then EOF
    const std::size_t msg3_bytes =
        length_prefix_bytes + handshake_msg3_min_bytes + listen_payload().size();
    for (std::size_t n = 0; n < msg3_bytes; ++n) {
      Hooks hooks;
      hooks.stall_after = preamble_and_msg1_bytes + n;
      HostileClient client(relay.address(), hooks, "127.0.0.24");
      REQUIRE(client.ok());
      client.send_preamble_and_msg1();
      const auto msg2 = client.read_msg2();
      REQUIRE(msg2);
      REQUIRE_FALSE(client.consume_msg2(*msg2));
      client.send_msg3(listen_payload());
      const auto before = client.received();
      client.fin();
      check_closed_silently(client, before);
    }
  }
  {// trailing bytes: msg1 announced and sent one byte longer; msg3 one byte longer
   {auto bytes = preamble_and_msg1();
  bytes[preamble_bytes + 1] = static_cast<std::uint8_t>(handshake_msg1_bytes + 1);
  bytes.push_back(0x42);
  RawSocket s("127.0.0.24", relay.address().endpoint);
  REQUIRE(s.send_some(bytes) == static_cast<std::int64_t>(bytes.size()));
  CHECK(s.wait_peer_closed(2s));
  CHECK(s.received() == 0);
}
{
  HostileClient client(relay.address(), {}, "127.0.0.24");
  client.send_preamble_and_msg1();
  const auto msg2 = client.read_msg2();
  REQUIRE(msg2);
  REQUIRE_FALSE(client.consume_msg2(*msg2));
  // Withhold msg3 (stall), then send it with one more byte, the length bumped to match.
  client.hooks().stall_after = client.bytes_sent();
  auto body = client.send_msg3(listen_payload());
  REQUIRE_FALSE(body.empty());
  body.push_back(0x42);
  std::vector<std::uint8_t> wire{static_cast<std::uint8_t>(body.size() >> 8),
                                 static_cast<std::uint8_t>(body.size())};
  wire.insert(wire.end(), body.begin(), body.end());
  client.hooks().stall_after.reset();
  client.send_raw(wire);
  const auto before = client.received();
  check_closed_silently(client, before);
}
}
{  // 65535 announced with 10 bytes sent, 200 at once: the relay's memory does not grow by the
   // announced lengths
  constexpr int count = 200;
  const auto rss_before = relay.probe().rss_bytes();
  std::vector<std::unique_ptr<HostileClient>> clients;
  for (int i = 0; i < count; ++i) {
    // From 25 sources, 8 each: the per-source pending cap is not what is tested here.
    auto& c = clients.emplace_back(std::make_unique<HostileClient>(
        relay.address(), Hooks{}, "127.0.1." + std::to_string(1 + i % 25)));
    REQUIRE(c->ok());
    c->send_preamble_and_msg1();
    const auto msg2 = c->read_msg2();
    REQUIRE(msg2);
    REQUIRE_FALSE(c->consume_msg2(*msg2));
    std::vector<std::uint8_t> announced{0xff, 0xff};
    announced.resize(2 + 10, 0x5a);
    c->send_raw(announced);
  }
  std::this_thread::sleep_for(300ms);
  const auto grown = relay.probe().rss_bytes() - rss_before;
  MESSAGE("relay RSS grew " << grown / 1024 << " KiB for " << count
                            << " msg3s announcing 65535 bytes (all of it would be "
                            << count * 65535 / 1024 << " KiB)");
  CHECK(grown < count * 65535 / 4);
  CHECK(relay.probe().gauge("pending_handshakes") == relay.baseline().pending_handshakes + count);
  for (auto& c : clients) {
    const auto before = c->received();
    c->fin();
    check_closed_silently(*c, before);
  }
}
CHECK(handshakes_ok(relay) == ok_before);
relay.check_clean(3s + 1s);
}

TEST_CASE(
    "Bad keys: all-zero and low-order X25519 ephemerals, invalid Ed25519 identities and malleated "
    "or all-zero signatures are rejected by the relay") {
  WatchedRelay relay(adversarial_flags({"--handshake-timeout", "2"}));
  const auto ok_before = handshakes_ok(relay);

  {  // X25519 ephemerals of small order in msg1: no msg2 comes back
    const std::vector<std::array<std::uint8_t, key_bytes>> small_order{
        {},   // 0
        {1},  // 1
        {0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3,
         0xfa, 0xf1, 0x9f, 0xc4, 0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32,
         0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00},  // order 8
        {0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
         0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
         0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},  // p - 1
    };
    for (const auto& e : small_order) {
      HostileClient client(relay.address(), {}, "127.0.0.25");
      REQUIRE(client.ok());
      client.send_preamble_and_msg1(e);
      check_closed_silently(client, 0);
    }
  }
  {  // Ed25519 identities in msg3: all-zero, the neutral point, non-canonical, small order, not on
     // the curve
    const std::vector<std::array<std::uint8_t, key_bytes>> invalid{
        {},
        {1},
        {0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
         0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
         0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
        {0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b,
         0x76, 0x0d, 0x10, 0x67, 0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39,
         0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a},
        {2},
    };
    for (const auto& s : invalid) {
      Msg3Options options;
      options.identity_bytes = s;
      send_forged_msg3(relay.address(), options);
    }
  }
  {  // signatures: malleated (S + L) and all-zero
    for (auto forgery : {SignatureForgery::malleated, SignatureForgery::all_zero}) {
      Msg3Options options;
      options.forgery = forgery;
      send_forged_msg3(relay.address(), options);
    }
  }
  CHECK(handshakes_ok(relay) == ok_before);
  relay.check_clean(2s + 1s);
}

TEST_CASE(
    "Replay and splice: a replayed msg1 and msg3, a man in the middle's identity at msg3, and "
    "signatures for another role or version fail") {
  WatchedRelay relay(adversarial_flags({"--handshake-timeout", "2"}));

  {  // a recorded msg1 and msg3 replayed on a new connection
    std::vector<std::uint8_t> first;
    std::vector<std::uint8_t> msg3;
    {
      HostileClient victim(relay.address(), {}, "127.0.0.26");
      first = victim.send_preamble_and_msg1();
      const auto msg2 = victim.read_msg2();
      REQUIRE(msg2);
      REQUIRE_FALSE(victim.consume_msg2(*msg2));
      const auto body = victim.send_msg3(listen_payload());
      msg3 = {static_cast<std::uint8_t>(body.size() >> 8), static_cast<std::uint8_t>(body.size())};
      msg3.insert(msg3.end(), body.begin(), body.end());
      const auto reply = victim.next_message();
      REQUIRE(reply.message);
      CHECK(std::holds_alternative<ListenOk>(*reply.message));  // the original was genuine
    }
    const auto ok_before = handshakes_ok(relay);
    RawSocket replay("127.0.0.26", relay.address().endpoint);
    REQUIRE(replay.send_some(first) == static_cast<std::int64_t>(first.size()));
    REQUIRE(eventually(
        [&] {
          replay.peer_closed();
          return replay.received() >= length_prefix_bytes + handshake_msg2_bytes;
        },
        3s));
    REQUIRE(replay.send_some(msg3) == static_cast<std::int64_t>(msg3.size()));
    CHECK(replay.wait_peer_closed(3s));
    CHECK(replay.received() ==
          length_prefix_bytes + handshake_msg2_bytes);  // msg2 only, then nothing
    CHECK(handshakes_ok(relay) == ok_before);
  }
  const auto ok_before = handshakes_ok(relay);
  {  // a man in the middle signs with its own key over the victim's identity
    const auto mitm = Identity::generate();
    const auto victim = Identity::generate();
    Msg3Options options;
    options.identity_bytes = victim.public_key().bytes();
    options.signer = &mitm;
    send_forged_msg3(relay.address(), options);
    CHECK(handshakes_ok(relay) == ok_before);
  }
  {  // a man in the middle splices the encrypted identity of its own session into the victim's msg3
    HostileClient mitm(relay.address(), {}, "127.0.0.27");
    mitm.send_preamble_and_msg1();
    auto mitm_msg2 = mitm.read_msg2();
    REQUIRE(mitm_msg2);
    REQUIRE_FALSE(mitm.consume_msg2(*mitm_msg2));
    mitm.hooks().stall_after = mitm.bytes_sent();  // its own msg3 is only built, never sent
    const auto mitm_msg3 = mitm.send_msg3(listen_payload());

    HostileClient victim(relay.address(), {}, "127.0.0.27");
    victim.send_preamble_and_msg1();
    auto msg2 = victim.read_msg2();
    REQUIRE(msg2);
    REQUIRE_FALSE(victim.consume_msg2(*msg2));
    victim.hooks().stall_after = victim.bytes_sent();
    auto body = victim.send_msg3(listen_payload());
    std::copy_n(mitm_msg3.begin(), key_bytes + aead_tag_bytes, body.begin());  // Enc(s) swapped
    std::vector<std::uint8_t> wire{static_cast<std::uint8_t>(body.size() >> 8),
                                   static_cast<std::uint8_t>(body.size())};
    wire.insert(wire.end(), body.begin(), body.end());
    victim.hooks().stall_after.reset();
    victim.send_raw(wire);
    const auto before = victim.received();
    check_closed_silently(victim, before);
    CHECK(handshakes_ok(relay) == ok_before);
  }
  {  // a signature made for the responder's role, or for protocol version 2
    for (auto forgery : {SignatureForgery::responder_role, SignatureForgery::other_version}) {
      Msg3Options options;
      options.forgery = forgery;
      send_forged_msg3(relay.address(), options);
    }
    CHECK(handshakes_ok(relay) == ok_before);
  }
  relay.check_clean(2s + 1s);
}

TEST_CASE(
    "Failed decrypt: a frame that fails to authenticate closes the session at the real relay") {
  // The nonce side (a failed decrypt never advances it; at 2^64-2 one more frame, then refused)
  // needs counters no network test can reach: noise_test.cpp ("a failed decrypt does not advance
  // the nonce and leaves no plaintext", "the reserved nonce 2^64-1 is never used") and
  // transport_test.cpp ("a corrupted frame is refused without advancing the counter", "at a send
  // counter of 2^64-2 one more frame succeeds and the next is refused").
  WatchedRelay relay(adversarial_flags());
  const auto errors_before = relay.probe().counter("closes_total", "protocol_error");
  for (std::size_t byte :
       {std::size_t{2}, std::size_t{10}, std::size_t{2 + 1 + 8 + 15}}) {  // kind, body, tag
    CAPTURE(byte);
    Hooks hooks;
    hooks.corrupt = Hooks::Corrupt{4, byte, 0x80};
    HostileClient client(relay.address(), hooks, "127.0.0.28");
    REQUIRE(client.handshake(Listen{}));
    const auto ok = client.next_message();
    REQUIRE(ok.message);
    REQUIRE(std::holds_alternative<ListenOk>(*ok.message));
    client.send_ping(42);
    const auto end = client.receive(3s, false);
    CHECK(ended_with(end, CloseReason::protocol_error));
    CHECK(client.wait_closed(2s));
  }
  CHECK(relay.probe().counter("closes_total", "protocol_error") == errors_before + 3);
  relay.check_clean(2s);
}

TEST_CASE(
    "Tampered transport stream: swapped, duplicated, dropped or truncated frames close the "
    "session, a truncation as aborted") {
  WatchedRelay relay(adversarial_flags());
  const auto errors_before = relay.probe().counter("closes_total", "protocol_error");
  const auto aborted_before = relay.probe().counter("closes_total", "aborted");
  const auto normal_before = relay.probe().counter("closes_total", "normal");
  auto listener = [&] {
    auto client = std::make_unique<HostileClient>(relay.address(), Hooks{}, "127.0.0.29");
    REQUIRE(client->handshake(Listen{}));
    const auto ok = client->next_message();
    REQUIRE(ok.message);
    return client;
  };
  auto ping = [](std::uint64_t token) {
    std::array<std::uint8_t, ping_token_bytes> body{};
    body[0] = static_cast<std::uint8_t>(token);
    return body;
  };
  std::vector<std::vector<std::uint8_t>> sent;
  for (std::string how : {"swapped", "duplicated", "dropped"}) {
    CAPTURE(how);
    auto client = listener();
    const auto a = client->seal_next(FrameKind::ping, ping(1));
    const auto b = client->seal_next(FrameKind::ping, ping(2));
    if (how == "swapped") sent = {b, a};
    if (how == "duplicated") sent = {a, a};
    if (how == "dropped") sent = {b};
    for (const auto& f : sent) client->send_raw(f);
    auto r = client->receive(3s, false);
    if (how == "duplicated") {  // the first copy is genuine and answered
      CHECK(r.what == What::frame);
      CHECK(r.kind == FrameKind::pong);
      r = client->receive(3s, false);
    }
    CHECK(ended_with(r, CloseReason::protocol_error));
    CHECK(client->wait_closed(2s));
  }
  CHECK(eventually(
      [&] { return relay.probe().counter("closes_total", "protocol_error") == errors_before + 3; },
      2s));
  {
    auto client = listener();
    const auto frame = client->seal_next(FrameKind::ping, ping(3));
    client->send_raw(std::span(frame).first(frame.size() / 2));
    client->fin();
    CHECK(client->wait_closed(2s));
  }
  CHECK(eventually(
      [&] { return relay.probe().counter("closes_total", "aborted") == aborted_before + 1; }, 2s));
  CHECK(relay.probe().counter("closes_total", "normal") == normal_before);  // never a completion
  relay.check_clean(2s);
}
