// Reconnection delays (sans-io): exponential backoff with full jitter and a cap.
//
//   ceiling(n) = min(cap, initial * 2^n)          n = failed attempts since the last reset
//   delay(n)   = uniform in [0, ceiling(n)]       ("full jitter")
//
// Full jitter spreads the retries of many nodes that lost the same relay at the same moment
// (a restart) over the whole window, so the relay is not hit by a synchronised wave; the cap
// bounds how long a node stays away from a relay that is back. The driver reports how long
// each connection lasted: one that stayed up for `stable_after` resets the count, so a relay
// restart after a long quiet spell is retried within `initial`, while a connection that keeps
// failing right after it is made (two devices of one identity replacing each other's listen)
// keeps backing off towards the cap.
//
// No clocks and no sockets here: the random source is injected (tests pass a fixed sequence),
// and the driver sleeps for the returned delay.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>

#include "common/protocol.hpp"

namespace strelay {

struct BackoffOptions {
  std::chrono::milliseconds initial = node_backoff_initial;
  std::chrono::milliseconds cap = node_backoff_cap;
  std::chrono::milliseconds stable_after = node_backoff_stable_after;
};

class Backoff {
 public:
  // Uniformly distributed 64-bit numbers. Empty: libsodium's randombytes (init_crypto() first).
  using Random = std::function<std::uint64_t()>;

  // Throws std::invalid_argument unless 0 < initial <= cap.
  explicit Backoff(BackoffOptions options = {}, Random random = {});

  // The delay before the next attempt, and counts the attempt.
  std::chrono::milliseconds next_delay();
  // The upper bound of the next delay.
  std::chrono::milliseconds ceiling() const;
  // A connection that lasted `up_for` ended: it resets the count if it was stable.
  void connection_ended(std::chrono::steady_clock::duration up_for);
  void reset() { attempts_ = 0; }
  unsigned attempts() const { return attempts_; }
  const BackoffOptions& options() const { return options_; }

 private:
  BackoffOptions options_;
  Random random_;
  unsigned attempts_ = 0;
};

}  // namespace strelay
