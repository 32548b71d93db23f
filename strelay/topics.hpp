// strelay/topics: which listening connections joined which topic ids (docs/protocol.md 4.9),
// and who is introduced to whom. Sans-io, owned by RelayState (which checks the role, the
// allowlist and the churn rate first, and turns the answers into messages).
//
// A topic id is 32 opaque bytes that a node chose: the table only compares and hashes them
// (keyed, like every table indexed by client-chosen bytes). A topic's members are kept in join
// order, so a newcomer is introduced to the newest ones first.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <unordered_map>
#include <variant>
#include <vector>

#include "common/keys.hpp"
#include "common/messages.hpp"
#include "common/protocol.hpp"
#include "strelay/sources.hpp"

namespace strelay {

struct TopicLimits {
  std::size_t topics_per_node = max_topics_per_node;                // beyond: overloaded
  std::size_t members_per_topic = max_members_per_topic;            // beyond: overloaded
  std::size_t introductions_per_join = max_introductions_per_join;  // the newest members
};

class TopicTable {
 public:
  using Conn = std::uint64_t;
  struct Member {
    Conn conn = 0;
    PublicKey key;
    friend bool operator==(const Member&, const Member&) = default;
  };
  struct Joined {
    std::uint32_t members = 0;       // others in the topic before this join
    std::vector<Member> introduced;  // the newest of them, newest first
    bool already = false;            // a member before: nothing changed, nobody introduced
  };
  enum class Refusal { topics_per_node, members_per_topic };

  explicit TopicTable(const HashKey& hash_key, const TopicLimits& limits = {});

  std::variant<Joined, Refusal> join(Conn conn, const PublicKey& key, const TopicId& topic);
  void leave(Conn conn, const TopicId& topic);  // idempotent
  void drop(Conn conn);                         // leaves every topic of `conn`

  void set_limits(const TopicLimits& limits) { limits_ = limits; }
  const TopicLimits& limits() const { return limits_; }
  std::size_t topics() const { return members_.size(); }
  std::size_t memberships() const { return memberships_; }
  std::size_t topics_of(Conn conn) const;
  // Every entry of every index, for tests that check nothing is left behind.
  std::size_t index_entries() const;

 private:
  struct TopicHash {
    KeyedHash hash;
    std::size_t operator()(const TopicId& topic) const {
      return hash(std::span<const std::uint8_t>(topic));
    }
  };
  using Members = std::map<std::uint64_t, Member>;  // join order -> member

  TopicLimits limits_;
  std::uint64_t next_seq_ = 0;
  std::size_t memberships_ = 0;
  std::unordered_map<TopicId, Members, TopicHash> members_;
  // conn -> (topic -> its join order in that topic)
  std::unordered_map<Conn, std::unordered_map<TopicId, std::uint64_t, TopicHash>> by_conn_;
  HashKey hash_key_;
};

}  // namespace strelay
