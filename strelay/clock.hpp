// The relay's clock: steady time that tests can move forward. One per Server, never global.
//
// Every deadline the relay keeps itself (handshake watchdog, keepalive, half-tunnel TTL, tunnel
// stall and idle, admission and connect-rate buckets) reads a Clock and waits on a RelayTimer
// on it. The Server owns the clock and hands it down (Relay, SessionContext, Tunnel); the
// sans-io cores (Keepalive, RelayState, TokenBucket, Admission) take `now` and never read one.
// In production nothing moves it: now() is steady_clock::now() plus one relaxed atomic load.
//
// The in-process socket tests (tests/strelay_server_test.cpp) call advance() to make, say,
// 30 s of half-tunnel TTL pass at once: every RelayTimer on the clock is then re-aimed on its
// own executor, so a timer that is due by the new time fires at once, with no sleep.
//
// A RelayTimer waits on real steady time for the instant its clock will reach its expiry
// (expiry minus the offset), and waits again when advance() has changed the offset. Its time
// points are steady_clock's (the clock shares steady_clock's epoch), so sans-io code that takes
// steady time points takes ours unchanged.
//
// Limits of the design: the clock only moves forward, and the deadlines the relay hands to
// common/ (Channel sends and receives) run on real steady time; each of those is backed by a
// RelayTimer where a test needs to move it (the handshake's absolute deadline).
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <mutex>

namespace strelay {

class RelayTimer;

class Clock {
 public:
  using base = std::chrono::steady_clock;
  using duration = base::duration;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = base::time_point;
  static constexpr bool is_steady = true;

  Clock() = default;
  Clock(const Clock&) = delete;
  Clock& operator=(const Clock&) = delete;

  time_point now() const noexcept { return base::now() + offset(); }
  // How far tests have moved the clock (zero in production).
  duration offset() const noexcept { return duration(offset_.load(std::memory_order_relaxed)); }

  // Tests: moves the clock forward by `by` (negative values are ignored) and re-aims every
  // RelayTimer on it, each on its own executor (posted; the executors must be running, or be
  // destroyed before the clock).
  void advance(duration by);

 private:
  friend class RelayTimer;
  void enlist(RelayTimer* timer);
  void delist(RelayTimer* timer);
  void reaim(const boost::asio::any_io_executor& executor);

  std::atomic<rep> offset_{0};
  std::mutex mutex_;              // guards the list of timers
  RelayTimer* timers_ = nullptr;  // an intrusive list, so a timer costs no allocation
};

using TimePoint = Clock::time_point;

// A timer on a Clock, used like Asio's steady_timer: expires_at(), async_wait(), cancel(), with
// one wait at a time. Setting the expiry or cancelling ends the wait in progress with
// operation_aborted. Waits support per-operation cancellation (terminal), so a wait can race
// another operation with awaitable_operators' ||.
class RelayTimer {
 public:
  using executor_type = boost::asio::any_io_executor;

  // `clock` must outlive the timer.
  RelayTimer(executor_type executor, Clock& clock);
  RelayTimer(executor_type executor, Clock& clock, TimePoint expiry);
  ~RelayTimer();
  RelayTimer(const RelayTimer&) = delete;
  RelayTimer& operator=(const RelayTimer&) = delete;

  executor_type get_executor() { return timer_.get_executor(); }
  TimePoint expiry() const { return expiry_; }
  void expires_at(TimePoint expiry);
  void cancel();

  // Completes with no error once the clock has reached the expiry; operation_aborted when
  // cancelled, or when the expiry was set again.
  template <class Token>
  auto async_wait(Token&& token) {
    return boost::asio::async_compose<Token, void(boost::system::error_code)>(
        [this, cancels = cancels_, started = false](auto& self,
                                                    boost::system::error_code ec = {}) mutable {
          if (started) {
            if (cancels != cancels_ || self.cancelled() != boost::asio::cancellation_type::none) {
              self.complete(boost::asio::error::operation_aborted);
              return;
            }
            if (ec && ec != boost::asio::error::operation_aborted) {
              self.complete(ec);
              return;
            }
            if (clock_.now() >= expiry_) {
              self.complete({});
              return;
            }
            // Woken by Clock::advance (or early): wait again, from the moved clock.
          }
          started = true;
          timer_.expires_at(steady_expiry());
          timer_.async_wait(std::move(self));
        },
        token, timer_);
  }

 private:
  friend class Clock;
  // The instant of real steady time at which the clock reaches the expiry.
  Clock::base::time_point steady_expiry() const;

  Clock& clock_;
  boost::asio::steady_timer timer_;
  TimePoint expiry_ = TimePoint::max();
  std::uint64_t cancels_ = 0;  // a wait that started before the last cancel() is over
  // In clock_'s list, under its mutex.
  RelayTimer* prev_ = nullptr;
  RelayTimer* next_ = nullptr;
};

}  // namespace strelay
