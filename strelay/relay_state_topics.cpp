// RelayState's topics (docs/protocol.md 4.9): join and leave on a listening connection, and the
// introductions a join makes. The table itself is strelay/topics.*.
#include "strelay/relay_state.hpp"

namespace strelay {

namespace {

RefuseReason refusal_reason(TopicTable::Refusal) {
  return RefuseReason::overloaded;  // both caps: the node's topics, the topic's members
}

}  // namespace

RelayState::TopicBuckets& RelayState::topic_buckets(ConnId conn) {
  auto found = topic_buckets_.find(conn);
  if (found == topic_buckets_.end()) {
    found = topic_buckets_
                .emplace(conn,
                         TopicBuckets{
                             TokenBucket(limits_.topic_churn_rate, limits_.topic_churn_burst),
                             TokenBucket(limits_.introduction_rate, limits_.introduction_burst)})
                .first;
  }
  return found->second;
}

// A join or leave costs a token of the listener's own bucket; a refusal is answered, counted
// and changes nothing.
bool RelayState::take_topic_token(ConnId conn, TimePoint now) {
  if (topic_buckets(conn).churn.try_take(now)) return true;
  hit(PairingLimit::topic_churn);
  return false;
}

Actions RelayState::join_topic(ConnId conn, const TopicId& topic, TimePoint now) {
  Actions out = expire(now);
  const auto listener = listener_keys_.find(conn);
  if (listener == listener_keys_.end()) {
    protocol_error(out, conn);  // only a listening connection has topics
    return out;
  }
  if (!take_topic_token(conn, now)) {
    out.push_back(SendTo{conn, TopicRefused{topic, RefuseReason::rate_limited}});
    return out;
  }
  const auto result = topics_.join(conn, listener->second, topic);
  if (const auto* refusal = std::get_if<TopicTable::Refusal>(&result)) {
    hit(*refusal == TopicTable::Refusal::topics_per_node ? PairingLimit::topics_per_node
                                                         : PairingLimit::members_per_topic);
    out.push_back(SendTo{conn, TopicRefused{topic, refusal_reason(*refusal)}});
    return out;
  }
  // Each pair costs an introduction token at both ends (the newcomer's and the member's); a
  // pair one of them cannot pay for is not introduced to either, and is counted.
  const auto& joined = std::get<TopicTable::Joined>(result);
  auto& newcomer = topic_buckets(conn).introductions;
  std::vector<const TopicTable::Member*> introduced;
  for (const auto& member : joined.introduced) {
    auto& theirs = topic_buckets(member.conn).introductions;
    if (newcomer.tokens(now) >= 1.0 && theirs.tokens(now) >= 1.0) {
      newcomer.try_take(now);
      theirs.try_take(now);
      introduced.push_back(&member);
    } else {
      hit(PairingLimit::introductions);
    }
  }
  out.push_back(SendTo{
      conn, TopicJoined{topic, joined.members, static_cast<std::uint32_t>(introduced.size())}});
  for (const auto* member : introduced) {
    out.push_back(SendTo{conn, Introduction{topic, member->key}});
    out.push_back(SendTo{member->conn, Introduction{topic, listener->second}});
  }
  return out;
}

Actions RelayState::leave_topic(ConnId conn, const TopicId& topic, TimePoint now) {
  Actions out = expire(now);
  if (!listener_keys_.contains(conn)) {
    protocol_error(out, conn);
    return out;
  }
  // A leave is never refused: leaving takes a token when there is one, and happens anyway.
  (void)take_topic_token(conn, now);
  topics_.leave(conn, topic);
  out.push_back(SendTo{conn, TopicLeft{topic}});
  return out;
}

void RelayState::forget_listener_topics(ConnId conn) {
  topics_.drop(conn);
  topic_buckets_.erase(conn);
}

}  // namespace strelay
