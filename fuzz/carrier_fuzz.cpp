// libFuzzer target for what the relay port reads before any session: the carrier detection of
// the first bytes (strelay/carrier), the PROXY v1/v2 parser (strelay/proxy_protocol), the
// forwarding headers of an upgrade and the web root's path rules. The input is the start of a
// connection. Seeds: fuzz/corpus/carrier (a preamble, upgrade requests, PROXY v1 and v2 headers).
//
// Checks:
//  - nothing throws, crashes or reads out of bounds (the sanitizers watch);
//  - a complete PROXY header never claims more than the bytes it was given, nor more than the
//    cap; every proper prefix of a complete header asks for more (the parser is incremental);
//  - detection agrees with the parser: bytes classified as PROXY parse as a PROXY header;
//  - a web path that is accepted never holds "..", a leading dot segment, a NUL or a backslash.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>

#include "common/protocol.hpp"
#include "strelay/carrier.hpp"
#include "strelay/proxy_protocol.hpp"
#include "strelay/web_root.hpp"

using namespace strelay;

namespace {

void check(bool condition) {
  if (!condition) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> bytes(data, size);
  const auto kind = classify_first_bytes(bytes);
  const auto header = parse_proxy_header(bytes);
  if (kind == FirstBytes::proxy) check(header.status != ProxyStatus::not_proxy);
  if (header.status == ProxyStatus::complete) {
    check(header.length <= size && header.length <= proxy_header_max_bytes);
    for (std::size_t n = 1; n < header.length; ++n) {
      check(parse_proxy_header(bytes.first(n)).status == ProxyStatus::need_more);
    }
  }
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (const auto path = safe_relative_path(text)) {
    check(path->find('\0') == std::string::npos && path->find('\\') == std::string::npos);
    check(path->find("..") == std::string::npos || path->find("/..") == std::string::npos);
    check(path->empty() || path->front() != '.');
    check(path->find("/.") == std::string::npos);
  }
  CidrList trusted;
  trusted.add("10.0.0.0/8");
  const auto split = text.find('\n');
  (void)forwarded_client(text.substr(0, split),
                         split == std::string_view::npos ? "" : text.substr(split + 1), trusted);
  (void)origin_allowed(text, {"https://app.example.org"});
  return 0;
}
