#include "common/address.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <stdexcept>

#include "common/protocol.hpp"

namespace strelay {

// Quotes text for a one-line message: control and non-ASCII bytes become \xNN.
std::string quote_for_message(std::string_view text) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out = "\"";
  for (const char c : text) {
    const auto b = static_cast<unsigned char>(c);
    if (b >= 0x20 && b < 0x7f && c != '"' && c != '\\') {
      out += c;
    } else {
      out += "\\x";
      out += hex[b >> 4];
      out += hex[b & 0xf];
    }
  }
  return out + "\"";
}

namespace {

constexpr std::size_t max_dns_name_bytes = 253;  // RFC 1035 limit, without the final dot
constexpr std::size_t max_dns_label_bytes = 63;

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

bool is_ldh(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '-';
}

// Returns the cause when `host` is not an RFC 1123 host name, or "" when it is one.
std::string dns_name_problem(std::string_view host) {
  if (host.size() > max_dns_name_bytes) {
    return "host is " + std::to_string(host.size()) + " bytes, longer than the " +
           std::to_string(max_dns_name_bytes) + " a DNS name may have";
  }
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = host.find('.', start);
    const std::string_view label =
        host.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (label.empty()) return "host " + quote_for_message(host) + " has an empty label";
    if (label.size() > max_dns_label_bytes) {
      return "host label of " + std::to_string(label.size()) + " bytes is longer than " +
             std::to_string(max_dns_label_bytes);
    }
    for (const char c : label) {
      if (!is_ldh(c)) {
        return "host " + quote_for_message(host) + " has character " +
               quote_for_message(std::string_view(&c, 1)) +
               ", which a DNS name may not contain (letters, digits, '-' and '.')";
      }
    }
    if (label.front() == '-' || label.back() == '-') {
      return "host " + quote_for_message(host) + " has a label that starts or ends with '-'";
    }
    if (dot == std::string_view::npos) return "";
    start = dot + 1;
  }
}

// Returns the cause when `host` (not bracketed) is not a name or IPv4 address, or "".
std::string host_problem(std::string_view host) {
  if (host.empty()) return "missing host before ':'";
  if (host.find(':') != std::string_view::npos) {
    return "an IPv6 address must be written in brackets, e.g. [::1]:4567";
  }
  // A host of only digits and dots is an IPv4 address or a mistake, never a name.
  if (host.find_first_not_of("0123456789.") == std::string_view::npos) {
    in_addr v4{};
    if (inet_pton(AF_INET, std::string(host).c_str(), &v4) != 1) {
      return quote_for_message(host) + " is not a valid IPv4 address";
    }
    return "";
  }
  return dns_name_problem(host);
}

std::optional<std::uint16_t> parse_port(std::string_view text, std::string& error) {
  if (text.empty()) {
    error = "missing port after ':'";
    return std::nullopt;
  }
  for (const char c : text) {
    if (!is_digit(c)) {
      error = "port " + quote_for_message(text) + " is not a decimal number";
      return std::nullopt;
    }
  }
  if (text.size() > 1 && text.front() == '0') {
    error = "port " + quote_for_message(text) + " has a leading zero";
    return std::nullopt;
  }
  // At most 5 digits are converted, so the value can never wrap.
  std::uint32_t value = 0;
  if (text.size() <= 5) {
    for (const char c : text) value = value * 10 + static_cast<std::uint32_t>(c - '0');
  }
  if (text.size() > 5 || value < 1 || value > 65535) {
    error = "port " + std::string(text) + " is out of range 1..65535";
    return std::nullopt;
  }
  return static_cast<std::uint16_t>(value);
}

// Splits text into host (brackets removed) and port text, or sets error.
bool split_host_port(std::string_view text, Address& out, std::string_view& port,
                     std::string& error) {
  if (text.front() == '[') {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos) {
      error = "missing ']' after the IPv6 address";
      return false;
    }
    out.host = std::string(text.substr(1, close - 1));
    in6_addr v6{};
    if (inet_pton(AF_INET6, out.host.c_str(), &v6) != 1) {
      error = quote_for_message(out.host) + " is not a valid IPv6 address";
      return false;
    }
    if (close + 1 >= text.size() || text[close + 1] != ':') {
      error = "missing :port after ']'";
      return false;
    }
    port = text.substr(close + 2);
    return true;
  }
  const std::size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    error = "missing :port (expected host:port)";
    return false;
  }
  const std::string_view host = text.substr(0, colon);
  if (error = host_problem(host); !error.empty()) return false;
  out.host = std::string(host);
  port = text.substr(colon + 1);
  return true;
}

}  // namespace

bool Address::is_unspecified() const {
  if (!is_ipv6()) return host == "0.0.0.0";
  in6_addr v6{};
  return inet_pton(AF_INET6, host.c_str(), &v6) == 1 && IN6_IS_ADDR_UNSPECIFIED(&v6);
}

std::string Address::to_string() const {
  const std::string port_text = std::to_string(port);
  return is_ipv6() ? "[" + host + "]:" + port_text : host + ":" + port_text;
}

std::optional<Address> try_parse_address(std::string_view text, std::string& error) {
  // The length check comes first, so an over-long address is never quoted back.
  if (text.size() > max_address_bytes) {
    error = "address is " + std::to_string(text.size()) + " bytes, longer than the " +
            std::to_string(max_address_bytes) + " allowed";
    return std::nullopt;
  }
  if (text.empty()) {
    error = "address is empty (expected host:port)";
    return std::nullopt;
  }
  Address out;
  std::string_view port_text;
  std::string cause;
  // "https://relay.example.org:4567" would otherwise read as an IPv6 address without brackets.
  if (const auto scheme = text.find("://"); scheme != std::string_view::npos) {
    error = "address " + quote_for_message(text) + ": give host:port without the scheme " +
            quote_for_message(text.substr(0, scheme + 3)) + ", e.g. relay.example.org:4567";
    return std::nullopt;
  }
  if (!split_host_port(text, out, port_text, cause)) {
    error = "address " + quote_for_message(text) + ": " + cause;
    return std::nullopt;
  }
  const auto port = parse_port(port_text, cause);
  if (!port) {
    error = "address " + quote_for_message(text) + ": " + cause;
    return std::nullopt;
  }
  out.port = *port;
  return out;
}

Address parse_address(std::string_view text) {
  std::string error;
  auto address = try_parse_address(text, error);
  if (!address) throw std::invalid_argument(error);
  return std::move(*address);
}

}  // namespace strelay
