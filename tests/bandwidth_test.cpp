// Tests for strelay/bandwidth: the byte bucket's refill and burst, a direction's grants under
// the per-tunnel and the global limit, reloads, and a greedy reader paced over simulated time
// against the rule "at most rate * T + burst over any T". No real time: `now` is given.
#include "strelay/bandwidth.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>

using namespace strelay;
using namespace std::chrono_literals;

namespace {

const TimePoint t0 = TimePoint{} + 1000h;
constexpr std::size_t KiB = 1024;
constexpr std::size_t MiB = 1024 * KiB;

// A direction that reads `want` bytes whenever it may for `span` of simulated time: it takes a
// grant, waits until it is usable, and counts it. The bytes it moved.
std::uint64_t greedy(Bandwidth& bw, std::optional<ByteBucket>& own, std::size_t want,
                     TimePoint from, Clock::duration span) {
  std::uint64_t moved = 0;
  for (TimePoint now = from;;) {
    const auto g = bw.take(now, want, own);
    REQUIRE(g.bytes > 0);
    REQUIRE(g.usable_at >= now);
    now = g.usable_at;
    if (now > from + span) return moved;
    moved += g.bytes;
  }
}

}  // namespace

TEST_CASE("a byte bucket starts full, refills at its rate and never holds more than its burst") {
  ByteBucket b(1'000'000, t0);  // 1 MB/s: burst max(50 KB, 64 KiB) = 64 KiB
  CHECK(b.burst() == doctest::Approx(64 * KiB));
  CHECK(b.available(t0) == doctest::Approx(64 * KiB));
  b.take(64 * KiB);
  CHECK(b.available(t0) == doctest::Approx(0));
  CHECK(b.available(t0 + 10ms) == doctest::Approx(10'000));
  CHECK(b.available(t0 + 10s) == doctest::Approx(64 * KiB));  // capped at the burst

  ByteBucket fast(100'000'000, t0);  // 100 MB/s: burst 5 MB
  CHECK(fast.burst() == doctest::Approx(5'000'000));
}

TEST_CASE("ready_at: when the bytes asked for will be there, never beyond the burst") {
  ByteBucket b(1'000'000, t0);
  CHECK(b.ready_at(t0, 16 * KiB) == t0);
  b.take(64 * KiB);
  CHECK(b.ready_at(t0, 10'000) == t0 + 10ms);
  // Asking for more than the burst waits for a full bucket, not for ever.
  CHECK(b.ready_at(t0, 10 * MiB) == t0 + std::chrono::microseconds(65'536));
  b.give_back(1000);
  CHECK(b.available(t0) == doctest::Approx(1000));
}

TEST_CASE("set_rate keeps the bytes held, within the new burst") {
  ByteBucket b(100'000'000, t0);  // burst 5 MB, full
  b.set_rate(1'000'000, t0);      // burst 64 KiB
  CHECK(b.available(t0) == doctest::Approx(64 * KiB));
  b.take(64 * KiB);
  b.set_rate(2'000'000, t0);  // an empty bucket stays empty: a reload does not refill
  CHECK(b.available(t0) == doctest::Approx(0));
  CHECK(b.available(t0 + 1ms) == doctest::Approx(2000));
}

TEST_CASE("without limits a direction gets all it asks for and keeps no bucket") {
  Bandwidth bw;
  std::optional<ByteBucket> own;
  CHECK_FALSE(bw.limited());
  const auto g = bw.take(t0, 256 * KiB, own);
  CHECK(g.bytes == 256 * KiB);
  CHECK_FALSE(own.has_value());
}

TEST_CASE("the per-tunnel limit: a grant is what the bucket holds, then a chunk reserved") {
  Bandwidth bw;
  bw.set_limits({0, 1'000'000}, t0);
  CHECK(bw.limited());
  std::optional<ByteBucket> own;
  auto g = bw.take(t0, 256 * KiB, own);
  REQUIRE(own.has_value());
  CHECK(g.bytes == 64 * KiB);  // the burst
  CHECK(g.usable_at == t0);
  g = bw.take(t0, 256 * KiB, own);
  CHECK(g.bytes == min_grant_bytes);
  CHECK(g.scope == BandwidthScope::tunnel);
  CHECK(g.usable_at == t0 + std::chrono::microseconds(16'384));  // 16 KiB at 1 MB/s
  // A second reservation queues behind the first.
  g = bw.take(t0, 256 * KiB, own);
  CHECK(g.usable_at == t0 + std::chrono::microseconds(32'768));
  // Given back (a short read, or a tunnel that ended while it waited), the debt shrinks.
  bw.give_back(2 * min_grant_bytes, own);
  CHECK(own->available(t0) == doctest::Approx(0));
  // A direction asking for less than a chunk (a small pipe) is granted that much.
  std::optional<ByteBucket> small;
  CHECK(bw.take(t0, 4 * KiB, small).bytes == 4 * KiB);
}

TEST_CASE("the global limit is shared by every direction, and says it made them wait") {
  Bandwidth bw;
  bw.set_limits({1'000'000, 0}, t0);
  std::optional<ByteBucket> a, b;
  CHECK(bw.take(t0, 40 * KiB, a).bytes == 40 * KiB);
  CHECK(bw.take(t0, 40 * KiB, b).bytes == 24 * KiB);  // what was left of the 64 KiB burst
  const auto g = bw.take(t0, 40 * KiB, a);
  CHECK(g.bytes == min_grant_bytes);
  CHECK(g.usable_at == t0 + std::chrono::microseconds(16'384));
  CHECK(g.scope == BandwidthScope::global);
  CHECK_FALSE(a.has_value());  // no per-tunnel bucket without a per-tunnel limit
  // b asks next and is served next, after a: first come, first served.
  CHECK(bw.take(t0 + 1ms, 40 * KiB, b).usable_at == t0 + std::chrono::microseconds(32'768));
}

TEST_CASE("both limits: the later payback decides, and names its bucket") {
  Bandwidth bw;
  bw.set_limits({2'000'000, 1'000'000}, t0);  // global burst 100 KB, tunnel 64 KiB
  std::optional<ByteBucket> a;
  CHECK(bw.take(t0, 256 * KiB, a).bytes == 64 * KiB);
  auto g = bw.take(t0, 256 * KiB, a);
  CHECK(g.bytes == min_grant_bytes);
  CHECK(g.scope == BandwidthScope::tunnel);  // 16 KiB at 1 MB/s; the global bucket had enough
  CHECK(g.usable_at == t0 + std::chrono::microseconds(16'384));
  // Another tunnel drains the global bucket: now the global limit is the later one.
  std::optional<ByteBucket> b;
  CHECK(bw.take(t0, 256 * KiB, b).bytes == 100'000 - 64 * KiB - min_grant_bytes);
  std::optional<ByteBucket> c;
  g = bw.take(t0, 256 * KiB, c);
  CHECK(g.scope == BandwidthScope::global);
  CHECK(g.bytes == 20'000);  // a 10 ms slice of 2 MB/s: more than a chunk
  CHECK(g.usable_at == t0 + 10ms);
}

TEST_CASE("a reload takes effect at the next grant of a tunnel already open") {
  Bandwidth bw;
  std::optional<ByteBucket> own;
  CHECK(bw.take(t0, 256 * KiB, own).bytes == 256 * KiB);
  bw.set_limits({0, 1'000'000}, t0);
  CHECK(bw.take(t0, 256 * KiB, own).bytes == 64 * KiB);
  CHECK(own->rate() == doctest::Approx(1'000'000));
  bw.set_limits({0, 4'000'000}, t0 + 1s);
  bw.take(t0 + 1s, 1, own);
  CHECK(own->rate() == doctest::Approx(4'000'000));
  bw.set_limits({}, t0 + 2s);
  CHECK_FALSE(bw.limited());
  CHECK(bw.take(t0 + 2s, 256 * KiB, own).bytes == 256 * KiB);
  CHECK_FALSE(own.has_value());
  CHECK(bw.limits() == BandwidthLimits{});
}

TEST_CASE("a greedy direction moves rate * T + burst over T, to within one reservation") {
  for (const std::uint64_t rate : {20'000ull, 1'000'000ull, 50'000'000ull}) {
    for (const std::size_t want : {16 * KiB, 64 * KiB, 1 * MiB}) {
      CAPTURE(rate);
      CAPTURE(want);
      Bandwidth bw;
      bw.set_limits({0, rate}, t0);
      std::optional<ByteBucket> own;
      const double burst = ByteBucket(static_cast<double>(rate), t0).burst();
      const auto moved = greedy(bw, own, want, t0, 10s);
      const double bound = static_cast<double>(rate) * 10 + burst;
      CHECK(static_cast<double>(moved) <= bound + 1);
      const auto slice = static_cast<double>(rate) * bandwidth_slice_seconds;
      const double reservation = std::max(static_cast<double>(min_grant_bytes),
                                          std::min(static_cast<double>(want), slice));
      CHECK(static_cast<double>(moved) >= bound - reservation - 1);
    }
  }
}

TEST_CASE("directions under one global limit share it evenly, and together keep to it") {
  Bandwidth bw;
  bw.set_limits({1'000'000, 0}, t0);
  constexpr int n = 3;
  std::optional<ByteBucket> own[n];
  std::uint64_t moved[n] = {};
  TimePoint next[n] = {t0, t0, t0};
  const TimePoint end = t0 + 5s;
  // Each direction asks again when its last grant became usable; the earliest goes first.
  for (;;) {
    int who = 0;
    for (int i = 1; i < n; ++i)
      if (next[i] < next[who]) who = i;
    const auto g = bw.take(next[who], 64 * KiB, own[who]);
    if (g.usable_at > end) break;
    moved[who] += g.bytes;
    next[who] = g.usable_at;
  }
  const double total = static_cast<double>(moved[0] + moved[1] + moved[2]);
  CHECK(total <= 5'000'000 + 64 * KiB + 1);
  CHECK(total >= 5'000'000 + 64 * KiB - n * static_cast<double>(min_grant_bytes));
  for (int i = 0; i < n; ++i) {
    CAPTURE(i);
    CHECK(static_cast<double>(moved[i]) >= total / n * 0.9);
  }
}
