#include "strelay/clock.hpp"

#include <boost/asio/post.hpp>
#include <vector>

namespace strelay {

void Clock::advance(duration by) {
  if (by <= duration::zero()) return;
  offset_.fetch_add(by.count(), std::memory_order_relaxed);
  // Each timer is touched only on its own executor: post one re-aim to each executor in use.
  std::vector<boost::asio::any_io_executor> executors;
  {
    std::lock_guard lock(mutex_);
    for (auto* timer = timers_; timer != nullptr; timer = timer->next_) {
      const auto executor = timer->timer_.get_executor();
      bool known = false;
      for (const auto& seen : executors) known = known || seen == executor;
      if (!known) executors.push_back(executor);
    }
  }
  for (auto& executor : executors) {
    boost::asio::post(executor, [this, executor] { reaim(executor); });
  }
}

void Clock::reaim(const boost::asio::any_io_executor& executor) {
  std::lock_guard lock(mutex_);
  for (auto* timer = timers_; timer != nullptr; timer = timer->next_) {
    // Not a cancel() of the timer's user: its wait wakes, sees the expiry not reached (or
    // reached), and waits again from the moved clock (or completes).
    if (timer->timer_.get_executor() == executor) timer->timer_.cancel();
  }
}

void Clock::enlist(RelayTimer* timer) {
  std::lock_guard lock(mutex_);
  timer->next_ = timers_;
  if (timers_ != nullptr) timers_->prev_ = timer;
  timers_ = timer;
}

void Clock::delist(RelayTimer* timer) {
  std::lock_guard lock(mutex_);
  if (timer->prev_ != nullptr) {
    timer->prev_->next_ = timer->next_;
  } else {
    timers_ = timer->next_;
  }
  if (timer->next_ != nullptr) timer->next_->prev_ = timer->prev_;
}

RelayTimer::RelayTimer(executor_type executor, Clock& clock)
    : clock_(clock), timer_(std::move(executor)) {
  clock_.enlist(this);
}

RelayTimer::RelayTimer(executor_type executor, Clock& clock, TimePoint expiry)
    : RelayTimer(std::move(executor), clock) {
  expiry_ = expiry;
}

RelayTimer::~RelayTimer() {
  clock_.delist(this);
}

void RelayTimer::expires_at(TimePoint expiry) {
  expiry_ = expiry;
  cancel();
}

void RelayTimer::cancel() {
  ++cancels_;
  timer_.cancel();
}

Clock::base::time_point RelayTimer::steady_expiry() const {
  const auto offset = clock_.offset();
  if (expiry_ == TimePoint::max()) return Clock::base::time_point::max();
  if (expiry_ < TimePoint::min() + offset) return Clock::base::time_point::min();
  return expiry_ - offset;
}

}  // namespace strelay
