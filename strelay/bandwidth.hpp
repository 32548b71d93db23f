// Bandwidth limits on the tunnels' data path (issue 20.2): a global rate for the whole relay
// and a rate for each direction of each tunnel, both in bytes per second, 0 for none.
//
// Pacing, not dropping: a direction that has no tokens does not read from its sender until it
// has (Tunnel waits on a timer), so TCP backpressure slows the sender; no byte is ever lost,
// and splice(2) keeps moving whole chunks. A direction asks for up to its pipe's capacity and
// takes what both buckets hold, but never less than a chunk (min_grant_bytes, or its pipe's
// capacity when that is smaller): a relay limited to a slow rate makes a few large splices a
// second, not many small ones. A bucket short of a chunk lends a slice of its rate (goes into
// debt) and tells the direction when the loan is paid back, so waiting directions are served
// in order.
//
// Burst: each bucket holds burst_seconds of its rate, and at least min_burst_bytes, so a
// limited tunnel starts at once and then settles to the rate. Over any interval T a direction
// moves at most rate * T + burst bytes.
//
// Sans-io: every call takes `now`. ByteBucket is for one owner (a tunnel direction, on its
// executor); Bandwidth is shared by every tunnel on every worker and locks its global bucket.
// A reload (SIGHUP) calls Bandwidth::set_limits: tunnels that are open take the new rates at
// their next chunk.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>

#include "strelay/clock.hpp"

namespace strelay {

inline constexpr double bandwidth_burst_seconds = 0.05;
inline constexpr std::size_t min_burst_bytes = 64 * 1024;
inline constexpr std::size_t min_grant_bytes = 16 * 1024;
// A direction short of tokens reserves this much of the rate at once (within its chunk and its
// pipe): at 256 MiB/s, 2.7 MB (so a pipe's worth) per wait, not 16 KiB. Measured: reserving a
// chunk alone cost 2-5x CPU per GiB at 256 MiB/s (a timer wait per 16 KiB).
inline constexpr double bandwidth_slice_seconds = 0.01;

// A token bucket whose tokens are bytes.
class ByteBucket {
 public:
  // rate > 0 bytes per second; the bucket starts full.
  ByteBucket(double rate, TimePoint now);

  double rate() const { return rate_; }
  double burst() const { return burst_; }
  // Bytes available at `now` (refills first).
  double available(TimePoint now);
  // Takes `n` bytes; below zero is a debt that the refill pays back first.
  void take(std::size_t n) { tokens_ -= static_cast<double>(n); }
  // Returns the unused part of a take.
  void give_back(std::size_t n) { tokens_ = std::min(burst_, tokens_ + static_cast<double>(n)); }
  // When `n` bytes (at most burst()) will be available, if nothing else takes any; with n = 0,
  // when a debt is paid back.
  TimePoint ready_at(TimePoint now, std::size_t n);
  // A new rate; the bytes held are kept, within the new burst.
  void set_rate(double rate, TimePoint now);

 private:
  void refill(TimePoint now);
  double rate_;
  double burst_;
  double tokens_;
  TimePoint at_;
};

struct BandwidthLimits {
  std::uint64_t global_bytes_per_s = 0;  // the whole relay, both directions of every tunnel
  std::uint64_t tunnel_bytes_per_s = 0;  // each direction of each tunnel
  bool operator==(const BandwidthLimits&) const = default;
};

enum class BandwidthScope : std::uint8_t { global, tunnel };

// The relay's limits, shared by its tunnels. Thread-safe.
class Bandwidth {
 public:
  void set_limits(const BandwidthLimits& limits, TimePoint now);
  BandwidthLimits limits() const;
  bool limited() const { return limited_.load(std::memory_order_relaxed); }

  // A direction's request for up to `want` bytes. `own` is its per-tunnel bucket, made, re-rated
  // or dropped here as the per-tunnel limit says. The grant is taken from both buckets at once:
  // what they hold (at most `want`), or, when one holds less than a chunk, a reservation of one
  // chunk that puts it in debt, usable at `usable_at` when the debt is paid back. Directions
  // short of tokens so queue in the order they asked (first come, first served), where
  // retrying at a wake-up would favour whichever timer fires first. `scope` names the bucket
  // that set `usable_at` when it is later than `now`.
  struct Grant {
    std::size_t bytes = 0;
    TimePoint usable_at{};
    BandwidthScope scope = BandwidthScope::tunnel;
  };
  Grant take(TimePoint now, std::size_t want, std::optional<ByteBucket>& own);
  // The part of a grant that was not moved (a short splice).
  void give_back(std::size_t n, std::optional<ByteBucket>& own);

 private:
  std::atomic<bool> limited_{false};
  std::atomic<std::uint64_t> tunnel_rate_{0};
  mutable std::mutex mutex_;  // guards global_ and global_rate_
  std::optional<ByteBucket> global_;
  std::uint64_t global_rate_ = 0;
};

}  // namespace strelay
