#include "strelay/proxy_protocol.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <string>

#include "common/protocol.hpp"

namespace strelay {
namespace {

constexpr std::string_view v1_prefix = "PROXY ";
constexpr std::size_t v1_max_bytes = 107;  // the specification's worst case, CRLF included
constexpr std::size_t v2_fixed_bytes = 16;

ProxyHeader need_more(int version) {
  ProxyHeader h;
  h.version = version;
  return h;
}

ProxyHeader invalid(int version, std::string_view why) {
  ProxyHeader h;
  h.status = ProxyStatus::invalid;
  h.version = version;
  h.error = why;
  return h;
}

// True while `bytes` agree with `expected` on their common length.
bool agrees(std::span<const std::uint8_t> bytes, std::span<const std::uint8_t> expected) {
  const auto n = std::min(bytes.size(), expected.size());
  return std::equal(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n),
                    expected.begin());
}

std::span<const std::uint8_t> as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

bool parse_port(std::string_view text) {
  unsigned value = 0;
  if (text.empty() || text.size() > 5 || (text.size() > 1 && text.front() == '0')) return false;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  return ec == std::errc() && end == text.data() + text.size() && value <= 65535;
}

// "TCP4 192.0.2.1 198.51.100.1 56324 443": the family must match the addresses' version.
ProxyHeader parse_v1_fields(std::string_view line, std::size_t length) {
  std::array<std::string_view, 6> f{};
  std::size_t count = 0;
  while (!line.empty()) {
    const auto space = line.find(' ');
    const auto field = line.substr(0, space);
    if (field.empty() || count == f.size()) return invalid(1, "PROXY v1: malformed fields");
    f[count++] = field;
    if (space == std::string_view::npos) break;
    line.remove_prefix(space + 1);
    if (line.empty()) return invalid(1, "PROXY v1: trailing space");
  }
  ProxyHeader h;
  h.version = 1;
  h.length = length;
  if (count >= 1 && f[0] == "UNKNOWN") {  // the rest is ignored, by the specification
    h.status = ProxyStatus::complete;
    return h;
  }
  if (count != 5 || (f[0] != "TCP4" && f[0] != "TCP6"))
    return invalid(1, "PROXY v1: expected TCP4, TCP6 or UNKNOWN and four fields");
  boost::system::error_code ec1, ec2;
  const auto src = boost::asio::ip::make_address(std::string(f[1]), ec1);
  const auto dst = boost::asio::ip::make_address(std::string(f[2]), ec2);
  if (ec1 || ec2) return invalid(1, "PROXY v1: an address is not an IP address");
  const bool v4 = f[0] == "TCP4";
  if (src.is_v4() != v4 || dst.is_v4() != v4)
    return invalid(1, "PROXY v1: address family mismatch");
  if (!parse_port(f[3]) || !parse_port(f[4])) return invalid(1, "PROXY v1: a port is not 0..65535");
  h.status = ProxyStatus::complete;
  h.source = src;
  return h;
}

ProxyHeader parse_v1(std::span<const std::uint8_t> bytes) {
  const std::string_view text(reinterpret_cast<const char*>(bytes.data()),
                              std::min(bytes.size(), v1_max_bytes));
  const auto cr = text.find('\r');
  // The line is printable ASCII: an LF or a NUL inside it would cut an address short where it
  // is parsed (and a prefix of the header would be refused that the whole header passed).
  const auto line = text.substr(0, cr);
  if (line.find('\n') != std::string_view::npos) return invalid(1, "PROXY v1: LF without CR");
  if (std::any_of(line.begin(), line.end(), [](char c) { return c < 0x20 || c > 0x7e; }))
    return invalid(1, "PROXY v1: a byte that is not printable ASCII");
  if (cr == std::string_view::npos) {
    if (bytes.size() >= v1_max_bytes) return invalid(1, "PROXY v1: no CRLF within 107 bytes");
    ProxyHeader h;
    h.version = 1;
    return h;  // need_more
  }
  if (cr + 1 >= text.size()) {
    if (bytes.size() >= v1_max_bytes) return invalid(1, "PROXY v1: no CRLF within 107 bytes");
    ProxyHeader h;
    h.version = 1;
    return h;
  }
  if (text[cr + 1] != '\n') return invalid(1, "PROXY v1: CR without LF");
  return parse_v1_fields(text.substr(v1_prefix.size(), cr - v1_prefix.size()), cr + 2);
}

ProxyHeader parse_v2(std::span<const std::uint8_t> bytes) {
  ProxyHeader h;
  h.version = 2;
  if (bytes.size() < v2_fixed_bytes) return h;  // need_more
  const std::uint8_t ver_cmd = bytes[12];
  const std::uint8_t family = bytes[13];
  const std::size_t rest = (std::size_t{bytes[14]} << 8) | bytes[15];
  if ((ver_cmd >> 4) != 2) return invalid(2, "PROXY v2: version is not 2");
  const int command = ver_cmd & 0x0F;
  if (command > 1) return invalid(2, "PROXY v2: command is neither LOCAL nor PROXY");
  if (v2_fixed_bytes + rest > proxy_header_max_bytes)
    return invalid(2, "PROXY v2: header longer than the relay accepts");
  // Addresses the family needs: TCP over IPv4 12 bytes, over IPv6 36, AF_UNIX 216.
  std::size_t needed = 0;
  switch (family) {
    case 0x00: break;                // UNSPEC
    case 0x11: needed = 12; break;   // TCP over IPv4
    case 0x21: needed = 36; break;   // TCP over IPv6
    case 0x31: needed = 216; break;  // stream over AF_UNIX
    default:
      if (command == 1) return invalid(2, "PROXY v2: not a stream transport");
  }
  if (rest < needed) return invalid(2, "PROXY v2: length shorter than its addresses");
  if (bytes.size() < v2_fixed_bytes + rest) return h;  // need_more
  h.status = ProxyStatus::complete;
  h.length = v2_fixed_bytes + rest;
  if (command == 0) return h;  // LOCAL: the proxy's own connection
  const auto* a = bytes.data() + v2_fixed_bytes;
  if (family == 0x11) {
    boost::asio::ip::address_v4::bytes_type b{};
    std::copy(a, a + 4, b.begin());
    h.source = boost::asio::ip::address_v4(b);
  } else if (family == 0x21) {
    boost::asio::ip::address_v6::bytes_type b{};
    std::copy(a, a + 16, b.begin());
    h.source = boost::asio::ip::address_v6(b);
  }
  return h;  // UNSPEC and AF_UNIX: no client address, as LOCAL
}

}  // namespace

ProxyHeader parse_proxy_header(std::span<const std::uint8_t> bytes) {
  if (bytes.empty()) return {};
  if (agrees(bytes, as_bytes(v1_prefix))) {
    if (bytes.size() < v1_prefix.size()) return need_more(1);
    return parse_v1(bytes);
  }
  if (agrees(bytes, proxy_v2_signature)) {
    if (bytes.size() < sizeof proxy_v2_signature) return need_more(2);
    return parse_v2(bytes);
  }
  ProxyHeader h;
  h.status = ProxyStatus::not_proxy;
  return h;
}

}  // namespace strelay
