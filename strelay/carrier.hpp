// Carriers (sans-io): how the relay port tells its visitors apart, and the rules about who may
// say where a connection comes from. docs/protocol.md, "Carriers"; docs/operations.md, proxies.
//
// One protocol, two carriers. A TCP connection carries the protocol's byte stream directly; a
// WebSocket (RFC 6455, binary messages) carries exactly the same bytes. The relay port serves
// both, told apart by the first bytes (peeked, not read, so a TCP session gets its socket
// untouched):
//   "s"                 the strelay preamble: a TCP session (Session checks the rest)
//   "PROXY " / "\r\n\r\n\0\r\nQUIT\n"   a PROXY header, honoured only from a trusted proxy
//   an upper-case letter  an HTTP request: a WebSocket upgrade at --websocket-path, a static
//                         file under --web-root, or a short plain answer
//   anything else       handed to a TCP session, which refuses it as today (bad magic)
//   nothing, then EOF   a TCP health check: counted as such, not as a failed handshake
#pragma once

#include <array>
#include <boost/asio/ip/address.hpp>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/protocol.hpp"

namespace strelay {

enum class Carrier : std::uint8_t { tcp, websocket };

// What the first bytes of a connection announce.
enum class FirstBytes : std::uint8_t {
  need_more,  // a proper prefix of "PROXY " or of the v2 signature
  strelay,    // a TCP session (the preamble, or bytes it will refuse)
  http,       // an HTTP request line
  proxy,      // a PROXY header, v1 or v2
};
FirstBytes classify_first_bytes(std::span<const std::uint8_t> bytes);

// A list of address ranges: "192.0.2.0/24", "2001:db8::/32", or one address ("127.0.0.1",
// "::1"). An IPv4-mapped IPv6 address matches as its IPv4 address.
class CidrList {
 public:
  // Throws std::invalid_argument with a one-line message quoting `text`.
  void add(std::string_view text);
  // One line naming the problem, or empty when `text` is a valid range.
  static std::string check(std::string_view text);
  bool contains(const boost::asio::ip::address& address) const;
  bool empty() const { return ranges_.empty(); }
  std::size_t size() const { return ranges_.size(); }
  friend bool operator==(const CidrList&, const CidrList&) = default;

 private:
  struct Range {
    bool v4 = true;
    std::array<std::uint8_t, 16> bytes{};
    unsigned prefix = 0;
    friend bool operator==(const Range&, const Range&) = default;
  };
  std::vector<Range> ranges_;
};

// The client address a trusted proxy reports in an upgrade request. `forwarded` is the
// Forwarded header (RFC 7239), `x_forwarded_for` X-Forwarded-For; either may be empty. Each
// lists addresses left to right, each proxy appending the address it saw; the client is the
// rightmost one that is not itself a trusted proxy (a client can write anything to the left).
// Forwarded wins over X-Forwarded-For when both are present.
struct ForwardedClient {
  std::optional<boost::asio::ip::address> address;  // nullopt: no header, or only proxies
  bool malformed = false;  // a header was present but an element is not an address
};
ForwardedClient forwarded_client(std::string_view forwarded, std::string_view x_forwarded_for,
                                 const CidrList& trusted);

// Whether a browser page from `origin` may open a WebSocket: any origin when `allowed` is
// empty; otherwise an exact match (scheme://host[:port], case-insensitive). A request without
// an Origin header is not from a browser page and is always allowed.
bool origin_allowed(std::string_view origin, const std::vector<std::string>& allowed);

// The carrier options, in the server's settings (reloaded on SIGHUP, except the addresses).
struct CarrierSettings {
  std::string websocket_path{websocket_default_path};
  std::vector<std::string> allowed_origins;  // empty: any origin
  CidrList trusted_proxies;                  // empty: no one may speak for a client
  std::filesystem::path web_root;            // empty: no static files
  std::size_t max_request_bytes = upgrade_max_request_bytes;
  std::size_t max_message_bytes = websocket_max_message_bytes;
  std::size_t bridge_buffer_bytes = websocket_bridge_buffer_bytes;
};

}  // namespace strelay
