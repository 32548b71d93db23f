// Tests for common/preamble: the 8 bytes before the handshake.
#include "common/preamble.hpp"

#include <doctest/doctest.h>

#include <string_view>

#include "common/errors.hpp"

using namespace strelay;

TEST_CASE("the preamble is \"strelay\" then the version byte") {
  constexpr std::string_view expected("strelay\x01", 8);
  REQUIRE(current_preamble.size() == 8);
  CHECK(std::string_view(reinterpret_cast<const char*>(current_preamble.data()), 8) == expected);
  CHECK(make_preamble(7)[7] == 7);
}

TEST_CASE("our own preamble parses as ok") {
  const auto result = parse_preamble(current_preamble);
  CHECK(result.status == PreambleStatus::ok);
  CHECK(result.version == protocol_version);
  CHECK_FALSE(result.error());
  CHECK(relay_reply_to(result) == PreambleReply::proceed);
}

TEST_CASE("another version is reported with the version seen, and answered with ours") {
  for (const int version : {0, 2, 3, 128, 255}) {
    CAPTURE(version);
    const auto result = parse_preamble(make_preamble(static_cast<std::uint8_t>(version)));
    CHECK(result.status == PreambleStatus::unsupported_version);
    CHECK(result.version == version);
    CHECK(result.error() == errc::unsupported_version);
    CHECK(relay_reply_to(result) == PreambleReply::send_preamble_and_close);
  }
}

TEST_CASE("any change to the magic is a bad magic, closed silently") {
  for (std::size_t i = 0; i < preamble_magic.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      auto bytes = current_preamble;
      bytes[i] = static_cast<std::uint8_t>(bytes[i] ^ (1 << bit));
      CAPTURE(i);
      CAPTURE(bit);
      const auto result = parse_preamble(bytes);
      CHECK(result.status == PreambleStatus::bad_magic);
      CHECK(result.error() == errc::bad_magic);
      CHECK(relay_reply_to(result) == PreambleReply::close_silently);
    }
  }
  // Not strelay at all: a TLS ClientHello and an HTTP request.
  const Preamble tls{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01};
  CHECK(parse_preamble(tls).status == PreambleStatus::bad_magic);
  const Preamble http{'G', 'E', 'T', ' ', '/', ' ', 'H', 'T'};
  CHECK(parse_preamble(http).status == PreambleStatus::bad_magic);
}

TEST_CASE("a client tells a preamble reply from msg2's length prefix") {
  const std::array<std::uint8_t, 2> reply_start{current_preamble[0], current_preamble[1]};
  CHECK(starts_preamble_reply(reply_start));
  const std::array<std::uint8_t, 2> msg2_prefix{0x00,
                                                static_cast<std::uint8_t>(handshake_msg2_bytes)};
  CHECK_FALSE(starts_preamble_reply(msg2_prefix));
}

TEST_CASE("what answers instead of a relay is named from its first bytes, never as tampering") {
  const auto classify = [](std::string_view text) {
    return classify_foreign_reply(
        std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
  };
  CHECK(classify("HTTP/1.1 400 Bad Request\r\n") == errc::not_a_relay_http);
  CHECK(classify("HT") == errc::not_a_relay_http);  // the two bytes a client reads first
  CHECK(classify("SSH-2.0-OpenSSH_9.2p1\r\n") == errc::not_a_relay_ssh);
  CHECK(classify("SS") == errc::not_a_relay_ssh);
  CHECK(classify(std::string_view("\x15\x03\x01\x00\x02", 5)) == errc::not_a_relay_tls);
  CHECK(classify(std::string_view("\x16\x03", 2)) == errc::not_a_relay_tls);
  CHECK(classify("220 smtp.example.org ESMTP") == errc::not_a_relay);
  CHECK(classify("HTTX") == errc::not_a_relay);
  CHECK(classify("H") == errc::not_a_relay);  // one byte tells nothing
  CHECK(classify("") == errc::not_a_relay);
  for (const auto e :
       {errc::not_a_relay, errc::not_a_relay_http, errc::not_a_relay_ssh, errc::not_a_relay_tls}) {
    CHECK(is_not_a_relay(e));
    CHECK(is_permanent_refusal(e));
    CHECK(std::error_code(e).message().starts_with("not a strelay relay"));
  }
  CHECK_FALSE(is_not_a_relay(errc::handshake_failed));
  CHECK_FALSE(is_permanent_refusal(errc::relay_unreachable));
  CHECK_FALSE(is_permanent_refusal(errc::relay_shutting_down));
  CHECK(is_permanent_refusal(errc::not_allowed));
  CHECK(is_permanent_refusal(errc::relay_identity_mismatch));
}
