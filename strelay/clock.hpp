// The relay's clock: steady time, which tests can move forward.
//
// Every deadline the relay itself keeps (handshake watchdog, keepalive, half-tunnel TTL, tunnel
// stall and idle, admission and connect-rate buckets) reads strelay::Clock and waits on a
// RelayTimer. In production the offset is zero and never changes, so Clock::now() is
// steady_clock::now() plus one relaxed atomic load.
//
// The in-process socket tests (tests/strelay_server_test.cpp) call advance_for_testing() to
// make, say, 30 s of half-tunnel TTL pass at once, then Server::recheck_timers() so the event
// loops re-read the clock: a timer that is due by the new time fires at once, with no sleep.
//
// Clock::time_point is steady_clock's time_point (the standard allows a clock to share another
// clock's epoch and time_point type), so sans-io code that takes steady time points (Keepalive,
// RelayState, the admission buckets, Channel deadlines) takes ours unchanged.
//
// Limits of the design: the offset is one per process (every Server in it shares it), it only
// grows (a steady clock never goes back), and the deadlines the relay hands to common/ (Channel
// sends and receives) still run on real steady time; each of those is backed by a RelayTimer
// where a test needs to move it (the handshake's absolute deadline).
#pragma once

#include <atomic>
#include <chrono>

#include <boost/asio/basic_waitable_timer.hpp>

namespace strelay {

class RelayClock {
 public:
  using base = std::chrono::steady_clock;
  using duration = base::duration;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = base::time_point;
  static constexpr bool is_steady = true;

  static time_point now() noexcept { return base::now() + duration(offset_.load(std::memory_order_relaxed)); }

  // Tests only: moves the clock forward by `by` (negative values are ignored).
  static void advance_for_testing(duration by) noexcept {
    if (by > duration::zero()) offset_.fetch_add(by.count(), std::memory_order_relaxed);
  }
  // How far tests have moved the clock (zero in production).
  static duration offset() noexcept { return duration(offset_.load(std::memory_order_relaxed)); }

 private:
  static inline std::atomic<rep> offset_{0};
};

using Clock = RelayClock;
using TimePoint = Clock::time_point;
// A timer on the relay's clock; Asio computes each wait from Clock::now().
using RelayTimer = boost::asio::basic_waitable_timer<Clock>;

}  // namespace strelay
