// Where connections come from, for per-source limits (sans-io): the address as a chain of
// prefixes, per-level caps, and the counts that find the heaviest source.
//
// Identities cost nothing and addresses little, so the relay counts by address prefix, at
// every level an operator would hand out (docs/operations.md, "Per-source limits"):
//
//   IPv4   /32 (the host)  [inside /24 when --ipv4-prefix 24]
//   IPv6   /64 (the host)  inside /56 (a home's delegation)  inside /48 (a site)
//   an IPv4-mapped IPv6 address is its IPv4
//
// A cap is given for the finest level ("per source") and for the coarsest ("per prefix"); a
// level between (the IPv6 /56) gets half of the prefix cap, at least the source cap. With
// the pending-handshake defaults (8 and 32) one /64 holds 8 slots, one /56 16 and one /48
// 32, where a /56 of 256 independent /64s would otherwise hold 2,048: more than the table.
//
// "The heaviest source" is always the coarsest level (the site): that is the share that
// fair-share eviction cuts first.
#pragma once

#include <array>
#include <boost/asio/ip/address.hpp>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/keys.hpp"

namespace strelay {

// A SipHash-2-4 key (crypto_shorthash). Tables keyed by what clients choose (public keys,
// source addresses) use a random per-process key, so clients cannot aim at one hash bucket.
using HashKey = std::array<std::uint8_t, 16>;
HashKey random_hash_key();  // needs init_crypto()

// One prefix of a source address: the family, the prefix length and the masked bytes.
struct SourceKey {
  std::uint8_t family = 4;               // 4 or 6
  std::uint8_t bits = 32;                // prefix length
  std::array<std::uint8_t, 16> bytes{};  // the address's first `bits` bits, rest zero

  // The finest level: an IPv4 address (/32) or an IPv6 /64.
  static SourceKey from_address(const boost::asio::ip::address& address);
  // The same prefix cut shorter (bits <= this->bits).
  SourceKey prefix(std::uint8_t shorter_bits) const;
  // "192.0.2.7", "192.0.2.0/24", "2001:db8:1:2::/64", for logs and /status.
  std::string to_string() const;
  friend bool operator==(const SourceKey&, const SourceKey&) = default;
  friend auto operator<=>(const SourceKey&, const SourceKey&) = default;
};

class KeyedHash {
 public:
  explicit KeyedHash(const HashKey& key) : key_(key) {}
  std::size_t operator()(std::span<const std::uint8_t> bytes) const;
  std::size_t operator()(const PublicKey& key) const { return (*this)(key.bytes()); }
  std::size_t operator()(const SourceKey& key) const;

 private:
  HashKey key_;
};

// How IPv4 addresses are grouped: 32 counts each address alone (the default: an IPv4 /24
// often holds unrelated users); 24 also caps each /24 as a whole.
struct PrefixPolicy {
  std::uint8_t ipv4_bits = 32;  // 8..32
  friend bool operator==(const PrefixPolicy&, const PrefixPolicy&) = default;
};

// A connection's source at each level, finest first. The accept path builds it from the
// address it trusts: the socket's peer, or the client address a trusted proxy announced.
struct Source {
  std::array<SourceKey, 3> levels{};
  std::size_t depth = 1;

  static Source from_address(const boost::asio::ip::address& address,
                             const PrefixPolicy& policy = {});
  const SourceKey& host() const { return levels[0]; }
  const SourceKey& site() const { return levels[depth - 1]; }
  std::span<const SourceKey> keys() const { return {levels.data(), depth}; }
  friend bool operator==(const Source&, const Source&) = default;
};

// Caps for one resource: per_source at the finest level, per_prefix at the coarsest.
struct SourceCaps {
  std::size_t per_source = SIZE_MAX;
  std::size_t per_prefix = SIZE_MAX;
  // The cap at `level` of a source `depth` levels deep.
  std::size_t at(std::size_t level, std::size_t depth) const;
  friend bool operator==(const SourceCaps&, const SourceCaps&) = default;
};

// How many of one resource each prefix holds. Not locked: its owner locks.
class SourceCounts {
 public:
  explicit SourceCounts(const HashKey& key) : counts_(0, KeyedHash(key)) {}

  std::size_t count(const SourceKey& key) const;
  // True when one more for `source` would pass `caps` at some level.
  bool at_cap(const Source& source, const SourceCaps& caps) const;
  void add(const Source& source);
  void remove(const Source& source);
  // The site holding the most (ties: the largest key), with its count; nullopt when empty.
  std::optional<std::pair<SourceKey, std::size_t>> heaviest() const;
  // Up to `n` sites, heaviest first, for /status.
  std::vector<std::pair<SourceKey, std::size_t>> heaviest(std::size_t n) const;
  std::size_t entries() const { return counts_.size(); }
  std::size_t total() const { return total_; }

 private:
  std::unordered_map<SourceKey, std::size_t, KeyedHash> counts_;  // every level
  std::set<std::pair<std::size_t, SourceKey>, std::greater<>>
      sites_;  // (count, site), heaviest first
  std::size_t total_ = 0;
};

}  // namespace strelay
