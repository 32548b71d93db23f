// A wake-up call for ONE waiting coroutine, on one executor (the node side's condition
// variable).
//
// The waiter checks its condition, and only if it does not hold calls wait(); notify() ends a
// wait in progress and is a no-op otherwise. On a single-threaded executor nothing can run
// between the check and the wait, so no notification is lost as long as the waiter re-checks
// its condition after every wait (the usual `while (!condition) co_await wake.wait(until);`).
// Not thread-safe: notify() and wait() run on the executor that owns the state.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>

namespace strelay {

class Wakeup {
 public:
  explicit Wakeup(const boost::asio::any_io_executor& executor) : timer_(executor) {}

  void notify() { timer_.cancel(); }

  // Returns at `until`, on notify(), or when the executor shuts down.
  boost::asio::awaitable<void> wait(
      std::chrono::steady_clock::time_point until = std::chrono::steady_clock::time_point::max()) {
    timer_.expires_at(until);
    co_await timer_.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
  }

 private:
  boost::asio::steady_timer timer_;
};

}  // namespace strelay
