#include "strelay/sources.hpp"

#include <sodium.h>

#include <algorithm>
#include <cstring>

namespace strelay {

static_assert(std::tuple_size_v<HashKey> == crypto_shorthash_KEYBYTES);
static_assert(crypto_shorthash_BYTES == 8);

HashKey random_hash_key() {
  HashKey key;
  crypto_shorthash_keygen(key.data());
  return key;
}

std::size_t KeyedHash::operator()(std::span<const std::uint8_t> bytes) const {
  std::array<std::uint8_t, crypto_shorthash_BYTES> out{};
  crypto_shorthash(out.data(), bytes.data(), bytes.size(), key_.data());
  std::uint64_t h = 0;
  std::memcpy(&h, out.data(), sizeof h);
  return static_cast<std::size_t>(h);
}

std::size_t KeyedHash::operator()(const SourceKey& key) const {
  std::array<std::uint8_t, 18> bytes{};
  bytes[0] = key.family;
  bytes[1] = key.bits;
  std::copy(key.bytes.begin(), key.bytes.end(), bytes.begin() + 2);
  return (*this)(std::span<const std::uint8_t>(bytes));
}

// ---------------------------------------------------------------- keys

SourceKey SourceKey::from_address(const boost::asio::ip::address& address) {
  SourceKey key;
  auto v4 = [&key](const boost::asio::ip::address_v4& a) {
    const auto b = a.to_bytes();
    key.family = 4;
    key.bits = 32;
    std::copy(b.begin(), b.end(), key.bytes.begin());
  };
  if (address.is_v4()) {
    v4(address.to_v4());
  } else if (const auto a = address.to_v6(); a.is_v4_mapped()) {
    v4(boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, a));
  } else {
    // One /64 is what a single host or customer is typically given: counting per address
    // would let one host use 2^64 of them.
    const auto b = a.to_bytes();
    key.family = 6;
    key.bits = 64;
    std::copy(b.begin(), b.begin() + 8, key.bytes.begin());
  }
  return key;
}

SourceKey SourceKey::prefix(std::uint8_t shorter_bits) const {
  SourceKey out = *this;
  out.bits = std::min(bits, shorter_bits);
  for (std::size_t i = 0; i < out.bytes.size(); ++i) {
    const std::size_t first_bit = i * 8;
    if (first_bit >= out.bits) {
      out.bytes[i] = 0;
    } else if (first_bit + 8 > out.bits) {
      out.bytes[i] &= static_cast<std::uint8_t>(0xFF << (8 - (out.bits - first_bit)));
    }
  }
  return out;
}

std::string SourceKey::to_string() const {
  std::string text;
  if (family == 4) {
    text = boost::asio::ip::address_v4({bytes[0], bytes[1], bytes[2], bytes[3]}).to_string();
    if (bits == 32) return text;
  } else {
    text = boost::asio::ip::address_v6(bytes).to_string();
  }
  return text + "/" + std::to_string(bits);
}

Source Source::from_address(const boost::asio::ip::address& address, const PrefixPolicy& policy) {
  Source s;
  s.levels[0] = SourceKey::from_address(address);
  if (s.levels[0].family == 6) {
    s.levels[1] = s.levels[0].prefix(56);
    s.levels[2] = s.levels[0].prefix(48);
    s.depth = 3;
  } else if (policy.ipv4_bits < 32) {
    s.levels[1] = s.levels[0].prefix(policy.ipv4_bits);
    s.depth = 2;
  }
  return s;
}

// ---------------------------------------------------------------- caps and counts

std::size_t SourceCaps::at(std::size_t level, std::size_t depth) const {
  if (level == 0) return per_source;
  if (level + 1 == depth) return std::max(per_prefix, per_source);
  return std::max(per_prefix / 2, per_source);  // a level between: the IPv6 /56
}

std::size_t SourceCounts::count(const SourceKey& key) const {
  const auto it = counts_.find(key);
  return it == counts_.end() ? 0 : it->second;
}

bool SourceCounts::at_cap(const Source& source, const SourceCaps& caps) const {
  for (std::size_t level = 0; level < source.depth; ++level) {
    if (count(source.levels[level]) >= caps.at(level, source.depth)) return true;
  }
  return false;
}

void SourceCounts::add(const Source& source) {
  const std::size_t before = count(source.site());
  for (const auto& key : source.keys()) ++counts_[key];
  if (before > 0) sites_.erase({before, source.site()});
  sites_.emplace(before + 1, source.site());
  ++total_;
}

void SourceCounts::remove(const Source& source) {
  const std::size_t before = count(source.site());
  if (before == 0) return;  // not counted: a caller's bug, but never an underflow
  for (const auto& key : source.keys()) {
    auto it = counts_.find(key);
    if (--it->second == 0) counts_.erase(it);
  }
  sites_.erase({before, source.site()});
  if (before > 1) sites_.emplace(before - 1, source.site());
  --total_;
}

std::optional<std::pair<SourceKey, std::size_t>> SourceCounts::heaviest() const {
  if (sites_.empty()) return std::nullopt;
  return std::pair{sites_.begin()->second, sites_.begin()->first};
}

std::vector<std::pair<SourceKey, std::size_t>> SourceCounts::heaviest(std::size_t n) const {
  std::vector<std::pair<SourceKey, std::size_t>> out;
  for (auto it = sites_.begin(); it != sites_.end() && out.size() < n; ++it)
    out.emplace_back(it->second, it->first);
  return out;
}

}  // namespace strelay
