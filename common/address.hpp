// "host:port" addresses, as written in relay tickets and given to strelay --laddr.
//
// A host is a DNS name (letters, digits and hyphens, dot-separated labels of 1..63 bytes,
// at most 253 bytes), a dotted-quad IPv4 address, or an IPv6 address in brackets
// ("[::1]:4567"). The port is plain decimal, 1..65535, without sign or leading zeros.
// The whole text is at most max_address_bytes (256). Parsing never guesses: anything else
// is refused with a one-line cause.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace strelay {

struct Address {
  std::string host;  // as written, without the brackets of an IPv6 address
  std::uint16_t port = 0;

  bool is_ipv6() const { return host.find(':') != std::string::npos; }
  // 0.0.0.0 or [::]: fine to listen on, useless in a ticket.
  bool is_unspecified() const;
  // "host:port", with brackets around an IPv6 host; parses back to an equal Address.
  std::string to_string() const;

  friend bool operator==(const Address&, const Address&) = default;
};

// On failure returns nullopt and sets `error` to a one-line cause that quotes the address
// (unless it is too long to quote), e.g. `address "a.org:0": port 0 is out of range 1..65535`.
std::optional<Address> try_parse_address(std::string_view text, std::string& error);

// Throws std::invalid_argument with the same one-line cause.
Address parse_address(std::string_view text);

// Quotes text for a one-line message: control and non-ASCII bytes become \xNN. Shared by
// every parser of files and flags, so a hostile value can never break an error line.
std::string quote_for_message(std::string_view text);

}  // namespace strelay
