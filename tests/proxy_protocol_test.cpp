// The PROXY protocol parser (sans-io): v1 and v2 headers, every prefix, and the lies.
#include "strelay/proxy_protocol.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "common/protocol.hpp"

using namespace strelay;

namespace {

std::vector<std::uint8_t> bytes(std::string_view s) {
  return {s.begin(), s.end()};
}

std::vector<std::uint8_t> v2(std::uint8_t ver_cmd, std::uint8_t family,
                             std::vector<std::uint8_t> rest,
                             std::optional<std::size_t> claimed = std::nullopt) {
  std::vector<std::uint8_t> out(std::begin(proxy_v2_signature), std::end(proxy_v2_signature));
  const auto length = claimed.value_or(rest.size());
  out.push_back(ver_cmd);
  out.push_back(family);
  out.push_back(static_cast<std::uint8_t>(length >> 8));
  out.push_back(static_cast<std::uint8_t>(length & 0xFF));
  out.insert(out.end(), rest.begin(), rest.end());
  return out;
}

std::vector<std::uint8_t> tcp4(std::array<std::uint8_t, 4> src) {
  std::vector<std::uint8_t> a(src.begin(), src.end());
  a.insert(a.end(), {std::uint8_t{198}, std::uint8_t{51}, std::uint8_t{100}, std::uint8_t{1}});
  a.insert(a.end(), {std::uint8_t{0xDC}, std::uint8_t{0x04}, std::uint8_t{0x01},
                     std::uint8_t{0xBB}});  // 56324, 443
  return a;
}

}  // namespace

TEST_CASE("a PROXY v1 header names the client and consumes exactly up to its CRLF") {
  const auto header = bytes("PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n");
  auto stream = header;
  for (char c : std::string("strelay\x01")) stream.push_back(static_cast<std::uint8_t>(c));
  const auto h = parse_proxy_header(stream);
  REQUIRE(h.status == ProxyStatus::complete);
  CHECK(h.version == 1);
  CHECK(h.length == header.size());
  REQUIRE(h.source);
  CHECK(h.source->to_string() == "192.0.2.7");

  SUBCASE("TCP6") {
    const auto h6 = parse_proxy_header(bytes("PROXY TCP6 2001:db8::7 2001:db8::1 1 2\r\n"));
    REQUIRE(h6.status == ProxyStatus::complete);
    CHECK(h6.source->to_string() == "2001:db8::7");
  }
  SUBCASE("UNKNOWN carries no client") {
    const auto hu = parse_proxy_header(bytes("PROXY UNKNOWN\r\n"));
    REQUIRE(hu.status == ProxyStatus::complete);
    CHECK_FALSE(hu.source);
  }
  SUBCASE("every proper prefix asks for more") {
    for (std::size_t n = 1; n < header.size(); ++n) {
      const auto p = parse_proxy_header(std::span(header).first(n));
      CHECK_MESSAGE(p.status == ProxyStatus::need_more, "prefix " << n);
    }
  }
}

TEST_CASE("malformed PROXY v1 headers are invalid, with a reason") {
  for (const char* text : {
           "PROXY TCP4 192.0.2.7 198.51.100.1 56324\r\n",        // a field missing
           "PROXY TCP4 192.0.2.7 198.51.100.1 56324 443 9\r\n",  // one too many
           "PROXY TCP4 2001:db8::1 198.51.100.1 1 2\r\n",        // family mismatch
           "PROXY TCP4 192.0.2.7 198.51.100.1 65536 443\r\n",    // port out of range
           "PROXY TCP4 192.0.2.7 198.51.100.1 056 443\r\n",      // leading zero
           "PROXY UDP4 192.0.2.7 198.51.100.1 1 2\r\n",          // not TCP
           "PROXY TCP4 192.0.2.7  198.51.100.1 1 2\r\n",         // double space
           "PROXY TCP4 example.org 198.51.100.1 1 2\r\n",        // a name
           "PROXY TCP4 192.0.2.7 198.51.100.1 1 2\n",            // LF without CR
           "PROXY TCP4 192.0.2.7 198.51.100.1 1 2\rX",           // CR without LF
       }) {
    const auto h = parse_proxy_header(bytes(text));
    CHECK_MESSAGE(h.status == ProxyStatus::invalid, text);
    CHECK(!h.error.empty());
  }
  // Found by carrier_fuzz: NULs and an LF inside the line, where an address parser stops at
  // the NUL and took "18.5.0.1" (and a prefix of the header was refused for its LF).
  const std::string nuls("PROXY TCP4 9.0.2.7 18.5.0.1\0\0\3T\0T\n 34 3\r\n", 41);
  CHECK(parse_proxy_header(bytes(nuls)).status == ProxyStatus::invalid);
  CHECK(parse_proxy_header(bytes("PROXY TCP4 192.0.2.7 198.51.100.1 1 2\x7f\r\n")).status ==
        ProxyStatus::invalid);
}

TEST_CASE("a PROXY v1 header is at most 107 bytes: 107 with its CRLF parses, 108 is refused") {
  // "PROXY UNKNOWN" + padding: UNKNOWN ignores the rest of the line.
  std::string line = "PROXY UNKNOWN ";
  line.append(107 - 2 - line.size(), 'x');
  line += "\r\n";
  REQUIRE(line.size() == 107);
  CHECK(parse_proxy_header(bytes(line)).status == ProxyStatus::complete);
  std::string longer = "PROXY UNKNOWN ";
  longer.append(108 - 2 - longer.size(), 'x');
  longer += "\r\n";
  CHECK(parse_proxy_header(bytes(longer)).status == ProxyStatus::invalid);
  // And without any CRLF, 107 bytes are enough to give up.
  CHECK(parse_proxy_header(bytes(std::string("PROXY ") + std::string(101, 'x'))).status ==
        ProxyStatus::invalid);
  CHECK(parse_proxy_header(bytes(std::string("PROXY ") + std::string(100, 'x'))).status ==
        ProxyStatus::need_more);
}

TEST_CASE("a PROXY v2 header names the client, skips its TLVs and consumes exactly its length") {
  auto rest = tcp4({192, 0, 2, 9});
  rest.insert(rest.end(), {0x04, 0x00, 0x02, 'h', 'i'});  // one TLV (type 4, 2 bytes)
  const auto header = v2(0x21, 0x11, rest);
  auto stream = header;
  stream.push_back('s');
  const auto h = parse_proxy_header(stream);
  REQUIRE(h.status == ProxyStatus::complete);
  CHECK(h.version == 2);
  CHECK(h.length == header.size());
  REQUIRE(h.source);
  CHECK(h.source->to_string() == "192.0.2.9");
  for (std::size_t n = 1; n < header.size(); ++n) {
    CHECK_MESSAGE(parse_proxy_header(std::span(header).first(n)).status == ProxyStatus::need_more,
                  n);
  }

  SUBCASE("IPv6") {
    std::vector<std::uint8_t> a(36, 0);
    a[0] = 0x20;
    a[1] = 0x01;
    a[2] = 0x0d;
    a[3] = 0xb8;
    a[15] = 0x07;
    const auto h6 = parse_proxy_header(v2(0x21, 0x21, a));
    REQUIRE(h6.status == ProxyStatus::complete);
    CHECK(h6.source->to_string() == "2001:db8::7");
  }
  SUBCASE("LOCAL carries no client, whatever its family") {
    const auto hl = parse_proxy_header(v2(0x20, 0x11, tcp4({192, 0, 2, 9})));
    REQUIRE(hl.status == ProxyStatus::complete);
    CHECK_FALSE(hl.source);
  }
}

TEST_CASE("PROXY v2 headers that lie are invalid, before any byte past the fixed part is awaited") {
  SUBCASE("a length shorter than its addresses") {
    CHECK(parse_proxy_header(v2(0x21, 0x11, {1, 2, 3, 4}, 4)).status == ProxyStatus::invalid);
    CHECK(parse_proxy_header(v2(0x21, 0x21, std::vector<std::uint8_t>(12, 0), 12)).status ==
          ProxyStatus::invalid);
  }
  SUBCASE("a length beyond the cap, at max and max+1") {
    const std::size_t max_rest = proxy_header_max_bytes - 16;
    CHECK(parse_proxy_header(v2(0x21, 0x11, {}, max_rest)).status == ProxyStatus::need_more);
    CHECK(parse_proxy_header(v2(0x21, 0x11, {}, max_rest + 1)).status == ProxyStatus::invalid);
    CHECK(parse_proxy_header(v2(0x21, 0x11, {}, 65535)).status == ProxyStatus::invalid);
  }
  SUBCASE("another version, another command, a datagram transport") {
    CHECK(parse_proxy_header(v2(0x11, 0x11, tcp4({1, 2, 3, 4}))).status == ProxyStatus::invalid);
    CHECK(parse_proxy_header(v2(0x22, 0x11, tcp4({1, 2, 3, 4}))).status == ProxyStatus::invalid);
    CHECK(parse_proxy_header(v2(0x21, 0x12, tcp4({1, 2, 3, 4}))).status == ProxyStatus::invalid);
  }
  SUBCASE("a length that claims more than was sent waits for it (the deadline ends the wait)") {
    const auto h = parse_proxy_header(v2(0x21, 0x11, tcp4({1, 2, 3, 4}), 100));
    CHECK(h.status == ProxyStatus::need_more);
  }
}

TEST_CASE("bytes that are not a PROXY header say so") {
  for (const char* text : {"strelay\x01", "GET / HTTP/1.1\r\n", "POST", "PROXX", "\r\n\r\nX"}) {
    CHECK_MESSAGE(parse_proxy_header(bytes(text)).status == ProxyStatus::not_proxy, text);
  }
  CHECK(parse_proxy_header(bytes("PROX")).status == ProxyStatus::need_more);
  CHECK(parse_proxy_header({}).status == ProxyStatus::need_more);
}
