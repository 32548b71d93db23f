// Tests for strelay/sources: prefix-aware source keys (IPv6 /64 in /56 in /48, IPv4 /32 in an
// optional /24), the per-level caps, and the counts that find the heaviest site.
#include "strelay/sources.hpp"

#include <doctest/doctest.h>

#include <string>

using namespace strelay;

namespace {

const HashKey fixed_key{1, 2, 3};

Source source(const char* address, std::uint8_t ipv4_bits = 32) {
  return Source::from_address(boost::asio::ip::make_address(address), PrefixPolicy{ipv4_bits});
}

}  // namespace

TEST_CASE("an IPv6 source is its /64 inside its /56 inside its /48") {
  const auto s = source("2001:db8:aa:bbcc:1:2:3:4");
  REQUIRE(s.depth == 3);
  CHECK(s.host().to_string() == "2001:db8:aa:bbcc::/64");
  CHECK(s.levels[1].to_string() == "2001:db8:aa:bb00::/56");
  CHECK(s.site().to_string() == "2001:db8:aa::/48");
  // Another /64 of the same /56 shares the /56 and the /48; another /56 only the /48.
  const auto same_56 = source("2001:db8:aa:bbff::1");
  CHECK_FALSE(same_56.host() == s.host());
  CHECK(same_56.levels[1] == s.levels[1]);
  const auto same_48 = source("2001:db8:aa:cc00::1");
  CHECK_FALSE(same_48.levels[1] == s.levels[1]);
  CHECK(same_48.site() == s.site());
  CHECK_FALSE(source("2001:db8:ab::1").site() == s.site());
}

TEST_CASE("an IPv4 source is its address alone by default, or also its /24 when grouped") {
  const auto alone = source("192.0.2.7");
  CHECK(alone.depth == 1);
  CHECK(alone.site().to_string() == "192.0.2.7");
  const auto grouped = source("192.0.2.7", 24);
  REQUIRE(grouped.depth == 2);
  CHECK(grouped.site().to_string() == "192.0.2.0/24");
  CHECK(source("192.0.2.200", 24).site() == grouped.site());
  CHECK_FALSE(source("192.0.3.7", 24).site() == grouped.site());
  // An IPv4-mapped IPv6 address is its IPv4, grouping included.
  CHECK(source("::ffff:192.0.2.9", 24).site() == grouped.site());
  CHECK(source("::ffff:192.0.2.7") == alone);
}

TEST_CASE("prefix() masks partial bytes and never lengthens a prefix") {
  const auto key = source("255.255.255.255").host();
  CHECK(key.prefix(20).to_string() == "255.255.240.0/20");
  CHECK(key.prefix(0).to_string() == "0.0.0.0/0");
  CHECK(key.prefix(40) == key);
  CHECK(source("2001:db8:ffff:ffff::1").host().prefix(50).to_string() == "2001:db8:ffff:c000::/50");
}

TEST_CASE(
    "caps per level: the source cap at the host, the prefix cap at the site, half of it between") {
  const SourceCaps caps{8, 32};
  CHECK(caps.at(0, 3) == 8);
  CHECK(caps.at(1, 3) == 16);  // the IPv6 /56
  CHECK(caps.at(2, 3) == 32);
  CHECK(caps.at(0, 1) == 8);   // an ungrouped IPv4 address: only the source cap
  CHECK(caps.at(1, 2) == 32);  // an IPv4 /24
  // A prefix cap below the source cap never makes a level tighter than the host's.
  CHECK(SourceCaps{8, 4}.at(2, 3) == 8);
}

TEST_CASE("counts: 8 per /64, 16 per /56 and 32 per /48, each at max admitted and max+1 refused") {
  SourceCounts counts(fixed_key);
  const SourceCaps caps{8, 32};
  // One /64: 8 fit, the 9th is at the cap.
  for (int i = 0; i < 8; ++i) {
    REQUIRE_FALSE(counts.at_cap(source("2001:db8:1:100::1"), caps));
    counts.add(source("2001:db8:1:100::1"));
  }
  CHECK(counts.at_cap(source("2001:db8:1:100::2"), caps));
  // The same /56 (2001:db8:1:1xx): a second /64 takes it to 16, then the /56 is full.
  for (int i = 0; i < 8; ++i) counts.add(source("2001:db8:1:101::1"));
  CHECK(counts.at_cap(source("2001:db8:1:1ff::1"), caps));  // a fresh /64, but the /56 is full
  // Another /56 of the same /48: 16 more, then the /48 is full for every /56 in it.
  for (int i = 0; i < 16; ++i) {
    const auto address = "2001:db8:1:2" + std::to_string(i % 2) + "0::1";
    REQUIRE_FALSE(counts.at_cap(source(address.c_str()), caps));
    counts.add(source(address.c_str()));
  }
  CHECK(counts.count(source("2001:db8:1::1").site()) == 32);
  CHECK(counts.at_cap(source("2001:db8:1:ff00::1"), caps));
  CHECK_FALSE(counts.at_cap(source("2001:db8:2::1"), caps));  // another /48
  // Removing gives the room back at every level.
  counts.remove(source("2001:db8:1:100::1"));
  CHECK_FALSE(counts.at_cap(source("2001:db8:1:100::1"), caps));
  CHECK(counts.total() == 31);
}

TEST_CASE("counts: an IPv4 /24 holds the prefix cap in all, whatever the number of addresses") {
  SourceCounts counts(fixed_key);
  const SourceCaps caps{8, 32};
  for (int i = 0; i < 32; ++i) {
    const auto address = "198.51.100." + std::to_string(i + 1);
    REQUIRE_FALSE(counts.at_cap(source(address.c_str(), 24), caps));
    counts.add(source(address.c_str(), 24));
  }
  CHECK(counts.at_cap(source("198.51.100.200", 24), caps));    // the 33rd in the /24
  CHECK_FALSE(counts.at_cap(source("198.51.100.200"), caps));  // ungrouped: only its /32 counts
}

TEST_CASE(
    "the heaviest site is found, its count follows adds and removes, and all returns to empty") {
  SourceCounts counts(fixed_key);
  for (int i = 0; i < 3; ++i) counts.add(source("192.0.2.1"));
  for (int i = 0; i < 5; ++i) counts.add(source("2001:db8:9:1::1"));
  counts.add(source("2001:db8:9:2::1"));  // same /48: 6 in all
  auto top = counts.heaviest();
  REQUIRE(top);
  CHECK(top->first.to_string() == "2001:db8:9::/48");
  CHECK(top->second == 6);
  const auto two = counts.heaviest(2);
  REQUIRE(two.size() == 2);
  CHECK(two[1].first.to_string() == "192.0.2.1");
  CHECK(two[1].second == 3);
  for (int i = 0; i < 4; ++i) counts.remove(source("2001:db8:9:1::1"));
  CHECK(counts.heaviest()->first.to_string() == "192.0.2.1");
  for (int i = 0; i < 3; ++i) counts.remove(source("192.0.2.1"));
  counts.remove(source("2001:db8:9:1::1"));
  counts.remove(source("2001:db8:9:2::1"));
  counts.remove(source("2001:db8:9:2::1"));  // one too many: ignored, never an underflow
  CHECK_FALSE(counts.heaviest());
  CHECK(counts.entries() == 0);
  CHECK(counts.total() == 0);
}

TEST_CASE("the keyed hash of a source depends on the key, the family and the prefix length") {
  const KeyedHash a(fixed_key);
  const KeyedHash b(HashKey{9});
  const auto host = source("192.0.2.0").host();
  CHECK(a(host) != b(host));
  CHECK(a(host) != a(host.prefix(24)));  // same bytes, another prefix
  CHECK(a(host) == a(source("::ffff:192.0.2.0").host()));
}
