#include "strelay/topics.hpp"

namespace strelay {

TopicTable::TopicTable(const HashKey& hash_key, const TopicLimits& limits)
    : limits_(limits), members_(0, TopicHash{KeyedHash(hash_key)}), hash_key_(hash_key) {}

std::variant<TopicTable::Joined, TopicTable::Refusal> TopicTable::join(Conn conn,
                                                                       const PublicKey& key,
                                                                       const TopicId& topic) {
  auto mine = by_conn_.find(conn);
  if (mine != by_conn_.end() && mine->second.contains(topic)) {
    const auto others = members_.at(topic).size() - 1;
    return Joined{static_cast<std::uint32_t>(others), {}, true};
  }
  if (mine != by_conn_.end() && mine->second.size() >= limits_.topics_per_node) {
    return Refusal::topics_per_node;
  }
  auto members = members_.find(topic);
  const std::size_t before = members == members_.end() ? 0 : members->second.size();
  if (before >= limits_.members_per_topic) return Refusal::members_per_topic;

  Joined joined{static_cast<std::uint32_t>(before), {}, false};
  if (members != members_.end()) {
    for (auto it = members->second.rbegin();
         it != members->second.rend() && joined.introduced.size() < limits_.introductions_per_join;
         ++it) {
      joined.introduced.push_back(it->second);
    }
  } else {
    members = members_.emplace(topic, Members{}).first;
  }
  const auto seq = next_seq_++;
  members->second.emplace(seq, Member{conn, key});
  if (mine == by_conn_.end()) {
    mine = by_conn_
               .emplace(conn, std::unordered_map<TopicId, std::uint64_t, TopicHash>(
                                  0, TopicHash{KeyedHash(hash_key_)}))
               .first;
  }
  mine->second.emplace(topic, seq);
  ++memberships_;
  return joined;
}

void TopicTable::leave(Conn conn, const TopicId& topic) {
  const auto mine = by_conn_.find(conn);
  if (mine == by_conn_.end()) return;
  const auto entry = mine->second.find(topic);
  if (entry == mine->second.end()) return;
  const auto members = members_.find(topic);
  members->second.erase(entry->second);
  if (members->second.empty()) members_.erase(members);
  mine->second.erase(entry);
  if (mine->second.empty()) by_conn_.erase(mine);
  --memberships_;
}

void TopicTable::drop(Conn conn) {
  const auto mine = by_conn_.find(conn);
  if (mine == by_conn_.end()) return;
  std::vector<TopicId> topics;
  topics.reserve(mine->second.size());
  for (const auto& [topic, seq] : mine->second) topics.push_back(topic);
  for (const auto& topic : topics) leave(conn, topic);
}

std::size_t TopicTable::topics_of(Conn conn) const {
  const auto mine = by_conn_.find(conn);
  return mine == by_conn_.end() ? 0 : mine->second.size();
}

std::size_t TopicTable::index_entries() const {
  std::size_t n = members_.size() + by_conn_.size();
  for (const auto& [topic, members] : members_) n += members.size();
  for (const auto& [conn, topics] : by_conn_) n += topics.size();
  return n;
}

}  // namespace strelay
