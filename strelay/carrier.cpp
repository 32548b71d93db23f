#include "strelay/carrier.hpp"

#include <algorithm>
#include <charconv>
#include <stdexcept>

#include "strelay/proxy_protocol.hpp"

namespace strelay {
namespace {

namespace ip = boost::asio::ip;

constexpr std::string_view proxy_v1_prefix = "PROXY ";

bool upper(std::uint8_t c) {
  return c >= 'A' && c <= 'Z';
}

// 1: all of `bytes` agree with `pattern` and are shorter; 2: `bytes` start with `pattern`.
int match(std::span<const std::uint8_t> bytes, std::span<const std::uint8_t> pattern) {
  const auto n = std::min(bytes.size(), pattern.size());
  if (!std::equal(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n), pattern.begin()))
    return 0;
  return bytes.size() < pattern.size() ? 1 : 2;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string quote(std::string_view s) {
  return "\"" + std::string(s.substr(0, 80)) + "\"";
}

// An address as proxies write it: "192.0.2.1", "2001:db8::1", "[2001:db8::1]", "[::1]:4711",
// "192.0.2.1:4711", or quoted (Forwarded). Obfuscated names ("_hidden", "unknown") are nullopt.
std::optional<ip::address> parse_node(std::string_view s) {
  s = trim(s);
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
  if (!s.empty() && s.front() == '[') {
    const auto close = s.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    s = s.substr(1, close - 1);
  } else if (std::count(s.begin(), s.end(), ':') == 1) {
    s = s.substr(0, s.find(':'));  // IPv4 with a port
  }
  boost::system::error_code ec;
  const auto address = ip::make_address(std::string(s), ec);
  if (ec) return std::nullopt;
  return address;
}

ip::address unmapped(const ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped()) return ip::make_address_v4(ip::v4_mapped, a.to_v6());
  return a;
}

// The rightmost element that is not a trusted proxy; malformed when an element is no address.
ForwardedClient pick(const std::vector<std::string_view>& nodes, const CidrList& trusted) {
  ForwardedClient out;
  for (auto it = nodes.rbegin(); it != nodes.rend(); ++it) {
    const auto address = parse_node(*it);
    if (!address) {
      out.malformed = true;
      return out;
    }
    if (!trusted.contains(*address)) {
      out.address = unmapped(*address);
      return out;
    }
  }
  return out;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  for (;;) {
    const auto at = s.find(sep);
    out.push_back(s.substr(0, at));
    if (at == std::string_view::npos) return out;
    s.remove_prefix(at + 1);
  }
}

bool iequal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

}  // namespace

FirstBytes classify_first_bytes(std::span<const std::uint8_t> bytes) {
  if (bytes.empty()) return FirstBytes::need_more;
  const std::span<const std::uint8_t> v1(
      reinterpret_cast<const std::uint8_t*>(proxy_v1_prefix.data()), proxy_v1_prefix.size());
  if (const int m = match(bytes, v1)) return m == 1 ? FirstBytes::need_more : FirstBytes::proxy;
  if (const int m = match(bytes, proxy_v2_signature))
    return m == 1 ? FirstBytes::need_more : FirstBytes::proxy;
  if (upper(bytes[0])) return FirstBytes::http;
  return FirstBytes::strelay;
}

std::string CidrList::check(std::string_view text) {
  const auto slash = text.find('/');
  boost::system::error_code ec;
  const auto address = ip::make_address(std::string(text.substr(0, slash)), ec);
  if (ec)
    return "trusted proxy " + quote(text) +
           ": not an IP address or CIDR range (e.g. 10.0.0.0/8, ::1)";
  if (slash == std::string_view::npos) return {};
  const auto bits = text.substr(slash + 1);
  unsigned prefix = 0;
  const auto [end, pec] = std::from_chars(bits.data(), bits.data() + bits.size(), prefix);
  const unsigned max = address.is_v4() ? 32 : 128;
  if (bits.empty() || pec != std::errc() || end != bits.data() + bits.size() || prefix > max) {
    return "trusted proxy " + quote(text) + ": the prefix length must be 0 to " +
           std::to_string(max);
  }
  return {};
}

void CidrList::add(std::string_view text) {
  if (auto error = check(text); !error.empty()) throw std::invalid_argument(error);
  const auto slash = text.find('/');
  const auto address = unmapped(ip::make_address(std::string(text.substr(0, slash))));
  Range r;
  r.v4 = address.is_v4();
  if (r.v4) {
    const auto b = address.to_v4().to_bytes();
    std::copy(b.begin(), b.end(), r.bytes.begin());
  } else {
    r.bytes = address.to_v6().to_bytes();
  }
  r.prefix = slash == std::string_view::npos ? (r.v4 ? 32 : 128) : 0;
  if (slash != std::string_view::npos) {
    std::from_chars(text.data() + slash + 1, text.data() + text.size(), r.prefix);
    // An IPv4-mapped range given as IPv6 ("::ffff:10.0.0.0/104") is kept as IPv4.
    if (r.v4 && ip::make_address(std::string(text.substr(0, slash))).is_v6())
      r.prefix = r.prefix >= 96 ? r.prefix - 96 : 0;
  }
  ranges_.push_back(r);
}

bool CidrList::contains(const ip::address& raw) const {
  const auto address = unmapped(raw);
  std::array<std::uint8_t, 16> bytes{};
  if (address.is_v4()) {
    const auto b = address.to_v4().to_bytes();
    std::copy(b.begin(), b.end(), bytes.begin());
  } else {
    bytes = address.to_v6().to_bytes();
  }
  for (const auto& r : ranges_) {
    if (r.v4 != address.is_v4()) continue;
    const unsigned whole = r.prefix / 8;
    const unsigned rest = r.prefix % 8;
    if (!std::equal(r.bytes.begin(), r.bytes.begin() + whole, bytes.begin())) continue;
    if (rest != 0) {
      const auto mask = static_cast<std::uint8_t>(0xFF << (8 - rest));
      if ((r.bytes[whole] & mask) != (bytes[whole] & mask)) continue;
    }
    return true;
  }
  return false;
}

ForwardedClient forwarded_client(std::string_view forwarded, std::string_view x_forwarded_for,
                                 const CidrList& trusted) {
  forwarded = trim(forwarded);
  if (!forwarded.empty()) {
    // Forwarded: for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8::1]:4711"
    std::vector<std::string_view> nodes;
    for (auto element : split(forwarded, ',')) {
      std::optional<std::string_view> node;
      for (auto pair : split(element, ';')) {
        pair = trim(pair);
        const auto eq = pair.find('=');
        if (eq != std::string_view::npos && iequal(trim(pair.substr(0, eq)), "for"))
          node = pair.substr(eq + 1);
      }
      if (!node) return ForwardedClient{std::nullopt, true};
      nodes.push_back(*node);
    }
    return pick(nodes, trusted);
  }
  x_forwarded_for = trim(x_forwarded_for);
  if (x_forwarded_for.empty()) return {};
  return pick(split(x_forwarded_for, ','), trusted);
}

bool origin_allowed(std::string_view origin, const std::vector<std::string>& allowed) {
  if (allowed.empty() || origin.empty()) return true;
  return std::any_of(allowed.begin(), allowed.end(),
                     [&](const std::string& a) { return iequal(a, origin); });
}

}  // namespace strelay
