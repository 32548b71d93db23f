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
