// The node side's clock: steady time, injectable. The sans-io cores (Keepalive, StreamState,
// Backoff) take `now` as an argument; the coroutine shells (Stream, RelayLink, Node) and the
// Logger read it through a SteadyNow, which tests replace with a clock they move by hand.
//
// Asio's timers run on std::chrono::steady_clock itself, so a shell converts a point on its
// clock into a timer deadline (timer_deadline) at the moment it starts a wait, and re-reads the
// clock after every wake-up: a test that moves its clock and wakes the shell is obeyed at once.
// Socket deadlines (Channel sends and receives) stay on steady_clock: they bound real I/O.
#pragma once

#include <chrono>
#include <functional>

namespace strelay {

using SteadyNow = std::function<std::chrono::steady_clock::time_point()>;

// The time on `clock` (steady_clock when it is empty).
inline std::chrono::steady_clock::time_point now_on(const SteadyNow& clock) {
  return clock ? clock() : std::chrono::steady_clock::now();
}

// The steady_clock deadline of a wait until `until` on `clock` that starts now.
inline std::chrono::steady_clock::time_point timer_deadline(
    const SteadyNow& clock, std::chrono::steady_clock::time_point until) {
  using time_point = std::chrono::steady_clock::time_point;
  if (!clock || until == time_point::max()) return until;
  const auto now = clock();
  if (until <= now) return std::chrono::steady_clock::now();
  const auto left = until - now;
  const auto real = std::chrono::steady_clock::now();
  return left >= time_point::max() - real ? time_point::max() : real + left;
}

}  // namespace strelay
