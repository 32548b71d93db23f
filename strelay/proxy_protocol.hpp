// The PROXY protocol, versions 1 and 2 (HAProxy's specification, proxy-protocol.txt), as a
// sans-io parser: bytes in, a decision out. A TCP load balancer in front of the relay prefixes
// each connection with one header naming the client; the relay reads exactly that header and
// nothing more, then treats the rest of the stream as if the client had connected directly.
//
// The relay honours a header only from a --trusted-proxy address (strelay/front); from anyone
// else the first bytes "PROXY " or the v2 signature are a refusal, never parsed.
//
//   v1: "PROXY TCP4 <src> <dst> <sport> <dport>\r\n" (or TCP6, or "PROXY UNKNOWN ...\r\n"),
//       at most 107 bytes in all.
//   v2: a 12-byte signature, version/command, family/transport, a 16-bit big-endian length of
//       what follows (addresses, then TLVs, which are skipped), at most proxy_header_max_bytes.
// LOCAL (v2) and UNKNOWN (v1) headers carry no client: the connection is the proxy's own (a
// health check), and the proxy's address is used.
#pragma once

#include <boost/asio/ip/address.hpp>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace strelay {

enum class ProxyStatus : std::uint8_t {
  need_more,  // a valid prefix: read more bytes (at most up to proxy_header_max_bytes)
  complete,   // a whole header: `length` bytes belong to it
  not_proxy,  // the bytes do not start a PROXY header
  invalid,    // a PROXY header, but malformed (see `error`)
};

struct ProxyHeader {
  ProxyStatus status = ProxyStatus::need_more;
  std::size_t length = 0;  // when complete: the header's bytes, to consume exactly
  // When complete: the client's address, or nullopt for LOCAL / UNKNOWN (no client).
  std::optional<boost::asio::ip::address> source;
  int version = 0;         // 1 or 2 once recognised
  std::string_view error;  // when invalid: one line for the log (a literal)
};

// Parses the start of a stream. `bytes` is everything received so far; a header longer than
// proxy_header_max_bytes, or a v2 length that lies (shorter than its addresses), is invalid.
ProxyHeader parse_proxy_header(std::span<const std::uint8_t> bytes);

// The v2 signature: "\r\n\r\n\0\r\nQUIT\n".
inline constexpr std::uint8_t proxy_v2_signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                        0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

}  // namespace strelay
