#include "strelay/bandwidth.hpp"

#include <algorithm>
#include <chrono>

namespace strelay {
namespace {

double burst_for(double rate) {
  return std::max(rate * bandwidth_burst_seconds, static_cast<double>(min_burst_bytes));
}

}  // namespace

ByteBucket::ByteBucket(double rate, TimePoint now)
    : rate_(rate), burst_(burst_for(rate)), tokens_(burst_), at_(now) {}

void ByteBucket::refill(TimePoint now) {
  if (now <= at_) return;
  const double elapsed = std::chrono::duration<double>(now - at_).count();
  tokens_ = std::min(burst_, tokens_ + elapsed * rate_);
  at_ = now;
}

double ByteBucket::available(TimePoint now) {
  refill(now);
  return tokens_;
}

TimePoint ByteBucket::ready_at(TimePoint now, std::size_t n) {
  refill(now);
  const double missing = std::min(static_cast<double>(n), burst_) - tokens_;
  if (missing <= 0) return now;
  // Rounded up, and at least one tick: a retry never comes before the bytes are there.
  const auto wait =
      std::chrono::ceil<Clock::duration>(std::chrono::duration<double>(missing / rate_));
  return now + std::max(wait, Clock::duration(1));
}

void ByteBucket::set_rate(double rate, TimePoint now) {
  refill(now);
  rate_ = rate;
  burst_ = burst_for(rate);
  tokens_ = std::min(tokens_, burst_);
}

void Bandwidth::set_limits(const BandwidthLimits& limits, TimePoint now) {
  {
    std::lock_guard lock(mutex_);
    global_rate_ = limits.global_bytes_per_s;
    if (global_rate_ == 0) {
      global_.reset();
    } else if (!global_) {
      global_.emplace(static_cast<double>(global_rate_), now);
    } else {
      global_->set_rate(static_cast<double>(global_rate_), now);
    }
  }
  tunnel_rate_.store(limits.tunnel_bytes_per_s, std::memory_order_relaxed);
  limited_.store(limits.global_bytes_per_s != 0 || limits.tunnel_bytes_per_s != 0,
                 std::memory_order_relaxed);
}

BandwidthLimits Bandwidth::limits() const {
  std::lock_guard lock(mutex_);
  return {global_rate_, tunnel_rate_.load(std::memory_order_relaxed)};
}

Bandwidth::Grant Bandwidth::take(TimePoint now, std::size_t want, std::optional<ByteBucket>& own) {
  const auto tunnel_rate = static_cast<double>(tunnel_rate_.load(std::memory_order_relaxed));
  if (tunnel_rate == 0) {
    own.reset();
  } else if (!own) {
    own.emplace(tunnel_rate, now);
  } else if (own->rate() != tunnel_rate) {
    own->set_rate(tunnel_rate, now);
  }
  const std::size_t chunk = std::min(want, min_grant_bytes);  // buckets hold >= 64 KiB
  Grant grant{want, now, BandwidthScope::tunnel};
  // What a bucket holds caps the grant; a bucket short of a chunk makes it a reservation of a
  // slice of its rate (at least a chunk, at most `want`).
  std::size_t reservation = 0;
  const auto consider = [&](ByteBucket& bucket) {
    const double have = bucket.available(now);
    if (have < static_cast<double>(chunk)) {
      const auto slice = static_cast<std::size_t>(bucket.rate() * bandwidth_slice_seconds);
      reservation = std::max({reservation, chunk, std::min(want, slice)});
    } else {
      grant.bytes = std::min(grant.bytes, static_cast<std::size_t>(have));
    }
  };
  if (own) consider(*own);
  {
    std::lock_guard lock(mutex_);
    if (global_) consider(*global_);
    if (reservation != 0) grant.bytes = reservation;
    if (global_) {
      global_->take(grant.bytes);
      grant.usable_at = global_->ready_at(now, 0);
      if (grant.usable_at > now) grant.scope = BandwidthScope::global;
    }
  }
  if (own) {
    own->take(grant.bytes);
    const auto own_at = own->ready_at(now, 0);
    if (own_at >= grant.usable_at) {
      grant.usable_at = own_at;
      grant.scope = BandwidthScope::tunnel;
    }
  }
  return grant;
}

void Bandwidth::give_back(std::size_t n, std::optional<ByteBucket>& own) {
  if (n == 0) return;
  if (own) own->give_back(n);
  std::lock_guard lock(mutex_);
  if (global_) global_->give_back(n);
}

}  // namespace strelay
