// Tests for common/address: host:port parsing, its limits and its one-line causes.
#include "common/address.hpp"

#include <doctest/doctest.h>

#include <string>

#include "common/protocol.hpp"

using namespace strelay;

namespace {

// The cause for a refused address; fails the test if the address was accepted.
std::string refusal(std::string_view text) {
  std::string error;
  const auto address = try_parse_address(text, error);
  CHECK_FALSE(address.has_value());
  CHECK(error.find('\n') == std::string::npos);
  return error;
}

bool contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

// A valid DNS name of exactly `size` bytes: labels of 62 bytes joined by dots.
std::string dns_name_of(std::size_t size) {
  std::string name;
  while (name.size() < size) {
    if (!name.empty()) name += '.';
    const std::size_t label = std::min<std::size_t>(62, size - name.size());
    name += std::string(label, 'a');
  }
  return name;
}

}  // namespace

TEST_CASE("a DNS name, an IPv4 address and a bracketed IPv6 address are accepted") {
  std::string error;
  const auto name = try_parse_address("relay0.offsetcredit.org:11051", error);
  REQUIRE(name);
  CHECK(name->host == "relay0.offsetcredit.org");
  CHECK(name->port == 11051);
  CHECK_FALSE(name->is_ipv6());

  const auto v4 = try_parse_address("127.0.0.1:4567", error);
  REQUIRE(v4);
  CHECK(*v4 == Address{"127.0.0.1", 4567});

  const auto v6 = try_parse_address("[::1]:4567", error);
  REQUIRE(v6);
  CHECK(v6->host == "::1");
  CHECK(v6->is_ipv6());
  CHECK(v6->to_string() == "[::1]:4567");

  CHECK(try_parse_address("localhost:1", error));
  CHECK(try_parse_address("xn--bcher-kva.example:65535", error));
}

TEST_CASE("to_string parses back to an equal address") {
  for (const char* text : {"a.b:1", "10.0.0.1:80", "[2001:db8::7]:65535", "relay:4567"}) {
    const Address address = parse_address(text);
    CHECK(address.to_string() == text);
    CHECK(parse_address(address.to_string()) == address);
  }
}

TEST_CASE("ports: 1 and 65535 are accepted; 0, 65536 and huge numbers are refused, never wrapped") {
  CHECK(parse_address("a:1").port == 1);
  CHECK(parse_address("a:65535").port == 65535);
  CHECK(contains(refusal("a:0"), "port 0 is out of range 1..65535"));
  CHECK(contains(refusal("a:65536"), "port 65536 is out of range 1..65535"));
  CHECK(contains(refusal("a:4294971863"), "out of range"));  // 2^32 + 4567
  CHECK(contains(refusal("a:99999999999999999999999"), "out of range"));
}

TEST_CASE("ports must be plain decimal") {
  CHECK(contains(refusal("a:80abc"), "port \"80abc\" is not a decimal number"));
  CHECK(contains(refusal("a:+80"), "port \"+80\" is not a decimal number"));
  CHECK(contains(refusal("a:-1"), "not a decimal number"));
  CHECK(contains(refusal("a: 80"), "not a decimal number"));
  CHECK(contains(refusal("a:0x50"), "not a decimal number"));
  CHECK(contains(refusal("a:080"), "leading zero"));
  CHECK(contains(refusal("a:"), "missing port"));
}

TEST_CASE("an address of 256 bytes is accepted and one of 257 is refused before any parsing") {
  const std::string at_limit = dns_name_of(max_address_bytes - 5) + ":4567";
  REQUIRE(at_limit.size() == 256);
  std::string error;
  CHECK(try_parse_address(at_limit, error));
  const std::string over = dns_name_of(max_address_bytes - 4) + ":4567";
  REQUIRE(over.size() == 257);
  CHECK(refusal(over) == "address is 257 bytes, longer than the 256 allowed");
}

TEST_CASE("host names follow RFC 1123") {
  CHECK(contains(refusal("relay.example.org"), "missing :port"));
  CHECK(contains(refusal(":4567"), "missing host"));
  CHECK(contains(refusal("a_b.org:1"), "character \"_\""));
  CHECK(contains(refusal(" a.org:1"), "character \" \""));
  CHECK(contains(refusal("a..org:1"), "empty label"));
  CHECK(contains(refusal("a.org.:1"), "empty label"));
  CHECK(contains(refusal("-a.org:1"), "starts or ends with '-'"));
  CHECK(contains(refusal(std::string(64, 'a') + ":1"), "label of 64 bytes"));
  std::string error;
  CHECK(try_parse_address(std::string(63, 'a') + ":1", error));
  CHECK(contains(refusal(dns_name_of(254) + ":1"), "254 bytes, longer than the 253"));
  CHECK(contains(refusal("a\nb:1"), "\\x0a"));  // quoted, so the message stays one line
}

TEST_CASE("digits and dots must form a valid IPv4 address") {
  CHECK(contains(refusal("1.2.3:80"), "not a valid IPv4 address"));
  CHECK(contains(refusal("256.1.1.1:80"), "not a valid IPv4 address"));
  CHECK(contains(refusal("01.2.3.4:80"), "not a valid IPv4 address"));
}

TEST_CASE("IPv6 addresses need brackets and must be valid") {
  CHECK(contains(refusal("::1:4567"), "must be written in brackets"));
  CHECK(contains(refusal("[::1:4567"), "missing ']'"));
  CHECK(contains(refusal("[::1]"), "missing :port"));
  CHECK(contains(refusal("[::1]4567"), "missing :port"));
  CHECK(contains(refusal("[::g]:1"), "not a valid IPv6 address"));
  CHECK(contains(refusal("[]:1"), "not a valid IPv6 address"));
  CHECK(contains(refusal("[fe80::1%eth0]:1"), "not a valid IPv6 address"));
  CHECK(contains(refusal("[127.0.0.1]:1"), "not a valid IPv6 address"));
}

TEST_CASE("the empty address is refused and parse_address throws the same cause") {
  CHECK(contains(refusal(""), "empty"));
  CHECK_THROWS_WITH_AS(parse_address("a:0"), "address \"a:0\": port 0 is out of range 1..65535",
                       std::invalid_argument);
}

TEST_CASE("0.0.0.0 and [::] are unspecified addresses") {
  CHECK(parse_address("0.0.0.0:1").is_unspecified());
  CHECK(parse_address("[::]:1").is_unspecified());
  CHECK(parse_address("[0:0::0]:1").is_unspecified());
  CHECK_FALSE(parse_address("127.0.0.1:1").is_unspecified());
  CHECK_FALSE(parse_address("[::1]:1").is_unspecified());
  CHECK_FALSE(parse_address("example.org:1").is_unspecified());
}

TEST_CASE("a URL is refused by its scheme, not as an IPv6 address without brackets") {
  std::string error;
  CHECK_FALSE(try_parse_address("https://relay.example.org:4567", error));
  CHECK(error ==
        "address \"https://relay.example.org:4567\": give host:port without the scheme "
        "\"https://\", e.g. relay.example.org:4567");
  CHECK_FALSE(try_parse_address("tcp://[::1]:4567", error));
  CHECK(error.find("without the scheme \"tcp://\"") != std::string::npos);
  CHECK(try_parse_address("relay.example.org:4567", error).has_value());
}
