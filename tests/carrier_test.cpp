// The carrier layer's sans-io rules: telling carriers apart by their first bytes, trusted
// proxy ranges, the client a forwarding header names, origins, and the web root's paths.
#include "strelay/carrier.hpp"

#include <doctest/doctest.h>
#include <stdlib.h>

#include <fstream>
#include <string>

#include "strelay/web_root.hpp"

using namespace strelay;
namespace fs = std::filesystem;

namespace {

FirstBytes classify(std::string_view s) {
  return classify_first_bytes({reinterpret_cast<const std::uint8_t*>(s.data()), s.size()});
}

boost::asio::ip::address ip(const char* text) {
  return boost::asio::ip::make_address(text);
}

fs::path make_temp_dir(const std::string& name) {
  std::string pattern = (fs::temp_directory_path() / ("strelay-" + name + "-XXXXXX")).string();
  REQUIRE(::mkdtemp(pattern.data()) != nullptr);
  return pattern;
}

CidrList list(std::initializer_list<const char*> ranges) {
  CidrList out;
  for (const char* r : ranges) out.add(r);
  return out;
}

}  // namespace

TEST_CASE("the first bytes tell strelay, HTTP and PROXY apart") {
  CHECK(classify("s") == FirstBytes::strelay);
  CHECK(classify("strelay\x01") == FirstBytes::strelay);
  CHECK(classify("\x16\x03\x01") ==
        FirstBytes::strelay);  // TLS: the session refuses it (bad magic)
  CHECK(classify("G") == FirstBytes::http);
  CHECK(classify("GET /strelay HTTP/1.1") == FirstBytes::http);
  CHECK(classify("HEAD") == FirstBytes::http);
  CHECK(classify("P") == FirstBytes::need_more);  // PROXY or POST: more bytes decide
  CHECK(classify("PROXY") == FirstBytes::need_more);
  CHECK(classify("PROXY ") == FirstBytes::proxy);
  CHECK(classify("POST") == FirstBytes::http);
  CHECK(classify("\r\n\r\n") == FirstBytes::need_more);
  CHECK(classify(std::string_view("\r\n\r\n\0\r\nQUIT\n", 12)) == FirstBytes::proxy);
  CHECK(classify("\r\nX") == FirstBytes::strelay);
  CHECK(classify("") == FirstBytes::need_more);
}

TEST_CASE("trusted proxy ranges: addresses, CIDR, IPv4-mapped IPv6, and bad text") {
  const auto trusted = list({"127.0.0.1", "10.0.0.0/8", "2001:db8::/32", "192.0.2.128/25"});
  CHECK(trusted.contains(ip("127.0.0.1")));
  CHECK_FALSE(trusted.contains(ip("127.0.0.2")));
  CHECK(trusted.contains(ip("10.255.1.2")));
  CHECK_FALSE(trusted.contains(ip("11.0.0.1")));
  CHECK(trusted.contains(ip("::ffff:10.1.2.3")));  // a dual-stack socket's view of IPv4
  CHECK(trusted.contains(ip("2001:db8:ffff::1")));
  CHECK_FALSE(trusted.contains(ip("2001:db9::1")));
  CHECK(trusted.contains(ip("192.0.2.128")));
  CHECK(trusted.contains(ip("192.0.2.255")));
  CHECK_FALSE(trusted.contains(ip("192.0.2.127")));
  CHECK(list({"0.0.0.0/0"}).contains(ip("203.0.113.9")));
  CHECK_FALSE(CidrList{}.contains(ip("127.0.0.1")));
  // Prefix lengths at max and max+1.
  CHECK(CidrList::check("10.0.0.0/32").empty());
  CHECK_FALSE(CidrList::check("10.0.0.0/33").empty());
  CHECK(CidrList::check("::/128").empty());
  CHECK_FALSE(CidrList::check("::/129").empty());
  for (const char* bad :
       {"", "10.0.0.0/", "10.0.0.0/-1", "10.0.0/8", "example.org", "10.0.0.0/8x", "[::1]"}) {
    CHECK_MESSAGE(!CidrList::check(bad).empty(), bad);
    CHECK_THROWS_AS(CidrList{}.add(bad), std::invalid_argument);
  }
}

TEST_CASE(
    "the client of a forwarding header is the rightmost address that is not a trusted proxy") {
  const auto trusted = list({"10.0.0.0/8"});
  SUBCASE("X-Forwarded-For") {
    CHECK(forwarded_client("", "192.0.2.7", trusted).address == ip("192.0.2.7"));
    // The client wrote "1.2.3.4" itself; the proxy appended what it saw.
    CHECK(forwarded_client("", "1.2.3.4, 192.0.2.7", trusted).address == ip("192.0.2.7"));
    // A chain of trusted proxies is skipped.
    CHECK(forwarded_client("", "192.0.2.7, 10.0.0.2", trusted).address == ip("192.0.2.7"));
    CHECK(forwarded_client("", "2001:db8::7", trusted).address == ip("2001:db8::7"));
    CHECK(forwarded_client("", "192.0.2.7:4711", trusted).address == ip("192.0.2.7"));
    CHECK_FALSE(forwarded_client("", "10.0.0.3", trusted).address);  // only proxies
    CHECK(forwarded_client("", "junk", trusted).malformed);
    CHECK(forwarded_client("", "192.0.2.7, junk", trusted).malformed);
    CHECK_FALSE(forwarded_client("", "", trusted).address);
  }
  SUBCASE("Forwarded (RFC 7239) wins over X-Forwarded-For") {
    CHECK(forwarded_client("for=192.0.2.60;proto=http;by=203.0.113.43", "198.51.100.1", trusted)
              .address == ip("192.0.2.60"));
    CHECK(forwarded_client("for=1.1.1.1, For=\"[2001:db8:cafe::17]:4711\"", "", trusted).address ==
          ip("2001:db8:cafe::17"));
    CHECK(forwarded_client("proto=https", "", trusted).malformed);
    CHECK(forwarded_client("for=_hidden", "", trusted).malformed);
  }
}

TEST_CASE(
    "origins: any by default, an exact match when restricted, none needed from non-browsers") {
  CHECK(origin_allowed("https://evil.example", {}));
  const std::vector<std::string> allowed{"https://app.example.org", "http://127.0.0.1:8080"};
  CHECK(origin_allowed("https://app.example.org", allowed));
  CHECK(origin_allowed("HTTPS://APP.EXAMPLE.ORG", allowed));
  CHECK(origin_allowed("http://127.0.0.1:8080", allowed));
  CHECK_FALSE(origin_allowed("http://127.0.0.1:8081", allowed));
  CHECK_FALSE(origin_allowed("https://app.example.org.evil.example", allowed));
  CHECK_FALSE(origin_allowed("null", allowed));
  CHECK(origin_allowed("", allowed));
}

TEST_CASE("web root paths: decoded once, never out of the root, never hidden files") {
  CHECK(safe_relative_path("/") == "");
  CHECK(safe_relative_path("/index.html?v=2") == "index.html");
  CHECK(safe_relative_path("/app/main.mjs#x") == "app/main.mjs");
  CHECK(safe_relative_path("/app/") == "app/");
  CHECK(safe_relative_path("/a%20b.txt") == "a b.txt");
  for (const char* bad :
       {"", "index.html", "/../etc/passwd", "/app/../../x", "/%2e%2e/x", "/.git/config", "/a//b",
        "/a%2fb", "/a%5cb", "/a%00b", "/a%zz", "/a%4", "/a\\b", "/./x", "/app/.env"}) {
    CHECK_MESSAGE(!safe_relative_path(bad), bad);
  }
}

TEST_CASE(
    "web root files: content types, index.html, no listings, no symlink escape, the size cap") {
  const auto root = make_temp_dir("web-root");
  fs::create_directories(root / "app");
  auto write = [](const fs::path& p, std::size_t n) { std::ofstream(p) << std::string(n, 'x'); };
  write(root / "index.html", 10);
  write(root / "app" / "main.mjs", 10);
  write(root / "app" / "sodium.wasm", 10);
  write(root / "manifest.webmanifest", 10);
  write(root / "icon.svg", 10);
  write(root / "icon.png", 10);
  write(root / "big.bin", 101);
  write(root / "max.bin", 100);
  const auto outside = make_temp_dir("web-outside");
  write(outside / "secret.txt", 5);
  fs::create_symlink(outside / "secret.txt", root / "link.txt");

  auto find = [&](std::string_view target) { return find_web_file(root, target, 100); };
  CHECK(find("/").status == WebLookup::found);
  CHECK(find("/").content_type == "text/html; charset=utf-8");
  CHECK(find("/app/main.mjs").content_type == "text/javascript; charset=utf-8");
  CHECK(find("/app/sodium.wasm").content_type == "application/wasm");
  CHECK(find("/manifest.webmanifest").content_type == "application/manifest+json");
  CHECK(find("/icon.svg").content_type == "image/svg+xml");
  CHECK(find("/icon.png").content_type == "image/png");
  CHECK(content_type_for("x.js") == "text/javascript; charset=utf-8");
  CHECK(find("/app").status == WebLookup::not_found);  // a directory without index.html: no listing
  CHECK(find("/app/").status == WebLookup::not_found);
  CHECK(find("/missing").status == WebLookup::not_found);
  CHECK(find("/link.txt").status == WebLookup::bad_path);
  CHECK(find("/../web-outside/secret.txt").status == WebLookup::bad_path);
  CHECK(find("/max.bin").status == WebLookup::found);
  CHECK(find("/big.bin").status == WebLookup::too_large);
  fs::remove_all(root);
  fs::remove_all(outside);
}
