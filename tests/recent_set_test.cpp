// RecentSet (sans-io): at most `cap` values, the oldest forgotten first; the node library's cap
// on introduced peers per topic (node_max_topic_peers) at max and max + 1.
#include "common/recent_set.hpp"

#include <doctest/doctest.h>

#include <array>
#include <cstdint>
#include <utility>

#include "common/keys.hpp"
#include "common/node.hpp"

using namespace strelay;

namespace {

// A distinct public key for each n (the bytes of n; never used for cryptography).
PublicKey key_of(std::size_t n) {
  std::array<std::uint8_t, key_bytes> bytes{};
  for (std::size_t i = 0; i < sizeof n; ++i) bytes[i] = static_cast<std::uint8_t>(n >> (8 * i));
  return PublicKey(bytes);
}

}  // namespace

TEST_CASE("a value is new once: a second insert is refused and changes nothing") {
  RecentSet<int> set(3);
  CHECK(set.insert(1));
  CHECK_FALSE(set.insert(1));
  CHECK(set.contains(1));
  CHECK_FALSE(set.contains(2));
  CHECK(set.size() == 1);
}

TEST_CASE("the node's cap on introduced peers: all kept at max, the oldest forgotten at max + 1") {
  RecentSet<PublicKey> peers(node_max_topic_peers);
  for (std::size_t n = 0; n < node_max_topic_peers; ++n) REQUIRE(peers.insert(key_of(n)));
  CHECK(peers.size() == node_max_topic_peers);
  CHECK(peers.contains(key_of(0)));
  CHECK(peers.contains(key_of(node_max_topic_peers - 1)));
  CHECK_FALSE(peers.insert(key_of(0)));  // known: its age is unchanged

  CHECK(peers.insert(key_of(node_max_topic_peers)));  // max + 1
  CHECK(peers.size() == node_max_topic_peers);
  CHECK_FALSE(peers.contains(key_of(0)));  // the oldest is forgotten ...
  CHECK(peers.contains(key_of(1)));        // ... and only it
  CHECK(peers.contains(key_of(node_max_topic_peers)));
  // Forgotten, it counts as new again, and pushes out the next oldest.
  CHECK(peers.insert(key_of(0)));
  CHECK_FALSE(peers.contains(key_of(1)));
  CHECK(peers.size() == node_max_topic_peers);
}

TEST_CASE("erase_if forgets at once; an erased value inserted again is new") {
  RecentSet<std::pair<int, int>> delivered(4);
  CHECK(delivered.insert({1, 10}));
  CHECK(delivered.insert({2, 20}));
  CHECK(delivered.insert({1, 11}));
  delivered.erase_if([](const auto& entry) { return entry.first == 1; });  // relay 1 lost
  CHECK_FALSE(delivered.contains({1, 10}));
  CHECK_FALSE(delivered.contains({1, 11}));
  CHECK(delivered.contains({2, 20}));
  CHECK(delivered.size() == 1);
  CHECK(delivered.insert({1, 10}));
  // Inserted again, it is the newest: two more fill the set, and the next forgets the oldest,
  // {2, 20}, not it (an erased value's old place in the order is gone too).
  CHECK(delivered.insert({3, 0}));
  CHECK(delivered.insert({3, 1}));
  CHECK(delivered.size() == 4);
  CHECK(delivered.insert({3, 2}));
  CHECK(delivered.size() == 4);
  CHECK_FALSE(delivered.contains({2, 20}));
  CHECK(delivered.contains({1, 10}));
  CHECK(delivered.contains({3, 0}));
  for (int n = 3; n < 10; ++n) delivered.insert({3, n});
  CHECK(delivered.size() == 4);
  CHECK_FALSE(delivered.contains({1, 10}));
  CHECK(delivered.contains({3, 9}));
}
