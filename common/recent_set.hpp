// RecentSet: a set that remembers at most `cap` values and forgets the oldest first.
//
// The node library keeps what relays tell it in numbers it does not choose (the peers introduced
// on a topic: common/node.cpp, node_max_topic_peers) in these, so a relay cannot grow a node's
// memory without bound: past the cap the newest are kept. Sans-io and header-only.
//
// erase_if() forgets values at once, from the order too (O(cap)), so a value erased and
// inserted again is as new as any other.
#pragma once

#include <cstddef>
#include <deque>
#include <set>

namespace strelay {

template <class T>
class RecentSet {
 public:
  explicit RecentSet(std::size_t cap) : cap_(cap) {}

  // False when the value is known already (its age is then unchanged).
  bool insert(const T& value) {
    if (!set_.insert(value).second) return false;
    order_.push_back(value);
    if (order_.size() > cap_) {
      set_.erase(order_.front());
      order_.pop_front();
    }
    return true;
  }
  bool contains(const T& value) const { return set_.contains(value); }
  std::size_t size() const { return set_.size(); }
  template <class Predicate>
  void erase_if(Predicate predicate) {
    std::erase_if(set_, predicate);
    std::erase_if(order_, predicate);
  }

 private:
  std::size_t cap_;
  std::set<T> set_;
  std::deque<T> order_;
};

}  // namespace strelay
