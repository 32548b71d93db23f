// Tests for strelay/limits: token bucket math, source keys, admission limits at max and max+1.
#include "strelay/limits.hpp"

#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace strelay;
using namespace std::chrono_literals;

namespace {

const TimePoint t0 = TimePoint{} + 1000h;
const HashKey fixed_key{1, 2, 3};

SourceKey source(const char* address) {
  return SourceKey::from_address(boost::asio::ip::make_address(address));
}

bool admitted(const std::variant<Admission::Admitted, AdmissionRefusal>& r) {
  return std::holds_alternative<Admission::Admitted>(r);
}

std::optional<AdmissionRefusal> refusal(
    const std::variant<Admission::Admitted, AdmissionRefusal>& r) {
  if (const auto* x = std::get_if<AdmissionRefusal>(&r)) return *x;
  return std::nullopt;
}

// Limits with only the one under test in reach.
AdmissionLimits roomy() {
  AdmissionLimits l;
  l.connections_total = 100000;
  l.pending_total = 100000;
  l.pending_per_source = 100000;
  l.rate_per_source = 1e6;
  l.burst_per_source = 1e6;
  l.sources_total = 100000;
  return l;
}

}  // namespace

TEST_CASE("a token bucket allows its burst at once, then one token per interval") {
  TokenBucket bucket(20.0, 5.0);  // the handshake default: one token every 50 ms
  CHECK(bucket.is_full(t0));
  for (int i = 0; i < 5; ++i) CHECK(bucket.try_take(t0));
  CHECK_FALSE(bucket.try_take(t0));  // burst + 1
  CHECK(bucket.tokens(t0) == doctest::Approx(0.0));
  CHECK_FALSE(bucket.try_take(t0 + 50ms - 1ns));
  CHECK(bucket.try_take(t0 + 50ms));
  CHECK_FALSE(bucket.try_take(t0 + 50ms));
  CHECK(bucket.tokens(t0 + 125ms) == doctest::Approx(1.5));
  CHECK_FALSE(bucket.is_full(t0 + 300ms - 1ns));
  CHECK(bucket.is_full(t0 + 300ms));
  CHECK(bucket.tokens(t0 + 10s) == doctest::Approx(5.0));  // never above the burst
  for (int i = 0; i < 5; ++i) CHECK(bucket.try_take(t0 + 10s));
  CHECK_FALSE(bucket.try_take(t0 + 10s));
}

TEST_CASE("a token bucket refuses a zero rate, a burst below one, and NaN") {
  CHECK_THROWS_AS(TokenBucket(0.0, 5.0), std::invalid_argument);
  CHECK_THROWS_AS(TokenBucket(1.0, 0.5), std::invalid_argument);
  CHECK_THROWS_AS(TokenBucket(std::nan(""), 5.0), std::invalid_argument);
  CHECK_THROWS_AS(TokenBucket(1.0, std::nan("")), std::invalid_argument);
}

TEST_CASE("a reloaded rate keeps the time until full") {
  TokenBucket bucket(1.0, 20.0);  // the connect default: 60/min, burst 20
  for (int i = 0; i < 20; ++i) REQUIRE(bucket.try_take(t0));
  bucket.set_rate(2.0, 10.0);  // 20 s of debt against a 5 s capacity: nothing to take
  CHECK_FALSE(bucket.try_take(t0 + 15s - 1ns));
  CHECK(bucket.try_take(t0 + 15s + 500ms));
}

TEST_CASE("source keys: IPv4 /32, IPv6 /64, and IPv4-mapped IPv6 counts as its IPv4") {
  CHECK(source("192.0.2.7") == source("::ffff:192.0.2.7"));
  CHECK_FALSE(source("192.0.2.7") == source("192.0.2.8"));
  CHECK(source("2001:db8:1:2::1") == source("2001:db8:1:2:ffff:ffff:ffff:ffff"));
  CHECK_FALSE(source("2001:db8:1:2::1") == source("2001:db8:1:3::1"));
  CHECK_FALSE(source("::1") == source("0.0.0.1"));
  CHECK(source("192.0.2.7").to_string() == "192.0.2.7");
  CHECK(source("2001:db8:1:2:3:4:5:6").to_string() == "2001:db8:1:2::/64");
  const KeyedHash a(fixed_key);
  const KeyedHash b(HashKey{9});
  CHECK(a(source("192.0.2.7")) == a(source("::ffff:192.0.2.7")));
  CHECK(a(source("192.0.2.7")) != b(source("192.0.2.7")));  // the key matters
}

TEST_CASE(
    "pending handshakes per source: the 8th is admitted, the 9th refused, also in the same /64") {
  AdmissionLimits limits = roomy();
  limits.pending_per_source = max_pending_per_source;
  Admission admission(limits, fixed_key);
  std::vector<Admission::Admitted> held;

  SUBCASE("IPv4") {
    for (std::size_t i = 0; i < 8; ++i) {
      auto r = admission.try_admit(source("198.51.100.1"), t0);
      REQUIRE(admitted(r));
      held.push_back(std::move(std::get<Admission::Admitted>(r)));
    }
    CHECK(refusal(admission.try_admit(source("198.51.100.1"), t0)) ==
          AdmissionRefusal::pending_per_source);
    CHECK(refusal(admission.try_admit(source("::ffff:198.51.100.1"), t0)) ==
          AdmissionRefusal::pending_per_source);
    CHECK(admitted(admission.try_admit(source("198.51.100.2"), t0)));
    held.pop_back();  // one handshake ends: a slot is free again
    CHECK(admitted(admission.try_admit(source("198.51.100.1"), t0)));
  }
  SUBCASE("IPv6") {
    for (std::size_t i = 0; i < 8; ++i) {
      const auto address = "2001:db8:5:6::" + std::to_string(i + 1);
      auto r = admission.try_admit(source(address.c_str()), t0);
      REQUIRE(admitted(r));
      held.push_back(std::move(std::get<Admission::Admitted>(r)));
    }
    CHECK(refusal(admission.try_admit(source("2001:db8:5:6:abcd::9"), t0)) ==
          AdmissionRefusal::pending_per_source);
    CHECK(admitted(admission.try_admit(source("2001:db8:5:7::1"), t0)));
  }
}

TEST_CASE("pending handshakes in total: the 1024th is admitted, the 1025th refused") {
  AdmissionLimits limits = roomy();
  limits.pending_total = max_pending_handshakes;
  Admission admission(limits, fixed_key);
  std::vector<Admission::Admitted> held;
  for (std::uint32_t i = 0; i < max_pending_handshakes; ++i) {
    const auto address = boost::asio::ip::make_address_v4(0x0A000000u + i);  // 10.0.x.y
    auto r = admission.try_admit(SourceKey::from_address(boost::asio::ip::address(address)), t0);
    REQUIRE(admitted(r));
    held.push_back(std::move(std::get<Admission::Admitted>(r)));
  }
  CHECK(admission.pending_total() == max_pending_handshakes);
  CHECK(refusal(admission.try_admit(source("192.0.2.1"), t0)) == AdmissionRefusal::pending_total);
  // Finished handshakes free their pending slot but keep their connection slot.
  for (auto& h : held) h.handshake_done();
  CHECK(admission.pending_total() == 0);
  CHECK(admission.connections() == max_pending_handshakes);
  CHECK(admitted(admission.try_admit(source("192.0.2.1"), t0)));
}

TEST_CASE("connections in total: at the limit admitted, one more refused, a close frees one") {
  AdmissionLimits limits = roomy();
  limits.connections_total = 50;
  Admission admission(limits, fixed_key);
  std::vector<Admission::Admitted> held;
  for (int i = 0; i < 50; ++i) {
    const auto address = "192.0.2." + std::to_string(i + 1);
    auto r = admission.try_admit(source(address.c_str()), t0);
    REQUIRE(admitted(r));
    held.push_back(std::move(std::get<Admission::Admitted>(r)));
    held.back().handshake_done();
  }
  CHECK(refusal(admission.try_admit(source("203.0.113.1"), t0)) ==
        AdmissionRefusal::connections_total);
  held.erase(held.begin());
  CHECK(admission.connections() == 49);
  CHECK(admitted(admission.try_admit(source("203.0.113.1"), t0)));
}

TEST_CASE("handshake rate per source: the burst is admitted, burst + 1 refused, refilled at 20/s") {
  AdmissionLimits limits = roomy();
  limits.rate_per_source = handshake_rate_per_source;
  limits.burst_per_source = handshake_burst_per_source;
  Admission admission(limits, fixed_key);
  for (int i = 0; i < 5; ++i) CHECK(admitted(admission.try_admit(source("192.0.2.1"), t0)));
  CHECK(refusal(admission.try_admit(source("192.0.2.1"), t0)) == AdmissionRefusal::rate_per_source);
  CHECK(admitted(admission.try_admit(source("192.0.2.2"), t0)));
  CHECK(admitted(admission.try_admit(source("192.0.2.1"), t0 + 50ms)));
  CHECK(refusal(admission.try_admit(source("192.0.2.1"), t0 + 50ms)) ==
        AdmissionRefusal::rate_per_source);
  CHECK(admission.pending_total() == 0);  // every guard above was a temporary
}

TEST_CASE("guards release their slots once, on handshake_done, destruction, or move") {
  Admission admission(roomy(), fixed_key);
  {
    auto r = admission.try_admit(source("192.0.2.1"), t0);
    auto guard = std::move(std::get<Admission::Admitted>(r));
    CHECK(guard.handshake_pending());
    CHECK(admission.pending_total() == 1);
    CHECK(admission.connections() == 1);
    guard.handshake_done();
    guard.handshake_done();  // idempotent
    CHECK(admission.pending_total() == 0);
    CHECK(admission.connections() == 1);
    auto moved = std::move(guard);
    CHECK(admission.connections() == 1);
    auto other = std::get<Admission::Admitted>(admission.try_admit(source("192.0.2.2"), t0));
    CHECK(admission.connections() == 2);
    other = std::move(moved);  // releases other's slots, takes moved's
    CHECK(admission.connections() == 1);
    CHECK(admission.pending_total() == 0);
  }
  CHECK(admission.connections() == 0);
  CHECK(admission.pending_total() == 0);
}

TEST_CASE("the source table stays bounded under many sources") {
  AdmissionLimits limits = roomy();
  limits.rate_per_source = handshake_rate_per_source;
  limits.burst_per_source = handshake_burst_per_source;
  limits.sources_total = 1000;
  Admission admission(limits, fixed_key);

  // 1000 sources in one instant fill the table; the 1001st new source is refused.
  for (std::uint32_t i = 0; i < 1000; ++i) {
    const auto a = boost::asio::ip::address(boost::asio::ip::make_address_v4(0x0A000000u + i));
    REQUIRE(admitted(admission.try_admit(SourceKey::from_address(a), t0)));
  }
  CHECK(admission.sources() == 1000);
  CHECK(refusal(admission.try_admit(source("192.0.2.1"), t0)) == AdmissionRefusal::sources_total);
  // Their buckets are full again 50 ms later; their entries are dropped as new sources arrive.
  TimePoint now = t0 + 50ms;
  for (std::uint32_t i = 0; i < 100000; ++i) {
    const auto a = boost::asio::ip::address(boost::asio::ip::make_address_v4(0x0B000000u + i));
    if (i % 500 == 0) now += 50ms;
    CHECK(admitted(admission.try_admit(SourceKey::from_address(a), now)));
    REQUIRE(admission.sources() <= 1000);
  }
  CHECK(admission.pending_total() == 0);
}

TEST_CASE("a source with a pending handshake is never evicted, and comes back idle") {
  AdmissionLimits limits = roomy();
  limits.rate_per_source = handshake_rate_per_source;
  limits.burst_per_source = handshake_burst_per_source;
  limits.pending_per_source = 2;
  Admission admission(limits, fixed_key);
  auto held1 = std::get<Admission::Admitted>(admission.try_admit(source("192.0.2.1"), t0));
  auto held2 = std::get<Admission::Admitted>(admission.try_admit(source("192.0.2.1"), t0));
  CHECK(admitted(admission.try_admit(source("192.0.2.2"), t0 + 1h)));  // runs eviction
  CHECK(refusal(admission.try_admit(source("192.0.2.1"), t0 + 1h)) ==
        AdmissionRefusal::pending_per_source);  // still counted: the entry was kept
  held1.handshake_done();
  held2.handshake_done();
  CHECK(admission.sources() == 2);
  CHECK(admitted(admission.try_admit(source("192.0.2.3"), t0 + 2h)));
  CHECK(admission.sources() == 1);  // both idle, full sources dropped
}

TEST_CASE("limits can be changed at run time") {
  Admission admission(roomy(), fixed_key);
  auto held = std::get<Admission::Admitted>(admission.try_admit(source("192.0.2.1"), t0));
  AdmissionLimits tight = roomy();
  tight.pending_total = 1;
  admission.set_limits(tight);
  CHECK(admission.limits().pending_total == 1);
  CHECK(refusal(admission.try_admit(source("192.0.2.2"), t0)) == AdmissionRefusal::pending_total);
  CHECK(admission.pending_total() == 1);  // nothing admitted was revoked
  tight.rate_per_source = 0;
  CHECK_THROWS_AS(admission.set_limits(tight), std::invalid_argument);
  CHECK(admission.limits().rate_per_source > 0);
}

TEST_CASE("admission is safe from several threads and balances to zero") {
  Admission admission(roomy(), fixed_key);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&admission, t] {
      for (int i = 0; i < 2000; ++i) {
        const auto address = "10.0." + std::to_string(t) + "." + std::to_string(i % 50);
        auto r = admission.try_admit(source(address.c_str()), t0 + std::chrono::milliseconds(i));
        if (auto* g = std::get_if<Admission::Admitted>(&r); g && i % 2 == 0) g->handshake_done();
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(admission.pending_total() == 0);
  CHECK(admission.connections() == 0);
}

// ---------------------------------------------------------------- the descriptor budget

TEST_CASE(
    "descriptor budget: the automatic cap is 80% of the limit, or what the process's own "
    "descriptors leave") {
  // A large limit: 80% binds; the rest (less the process's own) goes to tunnel pipes.
  auto big = plan_descriptors(100000, 20, 64, 0);
  CHECK(big.connections == 80000);
  CHECK(big.usable == 100000 - 20 - 65 - descriptor_margin);
  CHECK(big.pipe_fds == big.usable - 80000);
  // A small limit: the descriptors open at start bind, and no pipe gets a descriptor.
  auto small = plan_descriptors(64, 15, 2, 0);
  CHECK(small.usable == 64 - 15 - 3 - descriptor_margin);
  CHECK(small.connections == small.usable);
  CHECK(small.pipe_fds == 0);
  CHECK(small.connections + 15 + 3 + descriptor_margin == 64);  // never past the limit
  // No HTTP endpoint: nothing reserved for it.
  CHECK(plan_descriptors(64, 15, 0, 0).usable == 64 - 15 - descriptor_margin);
  // Nothing left: one connection still, so the relay answers at all.
  CHECK(plan_descriptors(16, 20, 2, 0).connections == 1);
  CHECK(plan_descriptors(16, 20, 2, 0).pipe_fds == 0);
  // "Unlimited" is clamped like Linux's fs.nr_open ceiling.
  CHECK(plan_descriptors(~std::uint64_t{0}, 20, 64, 0).connections ==
        static_cast<std::size_t>(static_cast<double>(1ull << 24) * 0.8));
}

TEST_CASE(
    "descriptor budget: an explicit --max-connections is kept, and pipes get only what it leaves") {
  auto flagged = plan_descriptors(1000, 20, 2, 500);
  CHECK(flagged.connections == 500);
  CHECK(flagged.pipe_fds == flagged.usable - 500);
  auto over = plan_descriptors(64, 15, 2, 1000);  // the operator's choice, even past the limit
  CHECK(over.connections == 1000);
  CHECK(over.pipe_fds == 0);
}

TEST_CASE(
    "the HTTP endpoint's connection cap is 1/32 of the descriptor limit, between 2 and the "
    "default") {
  CHECK(http_connection_cap(64) == 2);
  CHECK(http_connection_cap(16) == 2);
  CHECK(http_connection_cap(320) == 10);
  CHECK(http_connection_cap(1u << 20) == http_max_connections);
}

TEST_CASE(
    "pipe descriptors: reservations up to the budget are granted, one more is refused, a release "
    "frees room") {
  AdmissionLimits limits;
  limits.pipe_fds_total = 3 * tunnel_pipe_fds;
  Admission admission(limits, HashKey{});
  for (int i = 0; i < 3; ++i) CHECK(admission.try_reserve_pipe_fds(tunnel_pipe_fds));  // at max
  CHECK_FALSE(admission.try_reserve_pipe_fds(tunnel_pipe_fds));                        // max + 1
  CHECK(admission.pipe_fds() == 3 * tunnel_pipe_fds);
  admission.release_pipe_fds(tunnel_pipe_fds);
  CHECK(admission.try_reserve_pipe_fds(tunnel_pipe_fds));
  // A smaller budget after a reload refuses new pipes and keeps the granted ones.
  limits.pipe_fds_total = tunnel_pipe_fds;
  admission.set_limits(limits);
  CHECK_FALSE(admission.try_reserve_pipe_fds(tunnel_pipe_fds));
  for (int i = 0; i < 3; ++i) admission.release_pipe_fds(tunnel_pipe_fds);
  CHECK(admission.pipe_fds() == 0);
  CHECK(admission.try_reserve_pipe_fds(tunnel_pipe_fds));
  // Pipes never count as connections.
  CHECK(admission.connections() == 0);
}

TEST_CASE("the process's open descriptors are counted from /proc/self/fd") {
  const auto before = count_open_descriptors();
  REQUIRE(before);
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  CHECK(count_open_descriptors() == *before + 2);
  ::close(fds[0]);
  ::close(fds[1]);
  CHECK(count_open_descriptors() == *before);
}

TEST_CASE(
    "memory trim: due once the connections fall to 3/4 of their peak, never under a steady load") {
  MemoryTrimPolicy policy;
  CHECK_FALSE(policy.trim_due(0));  // nothing ever open
  // A steady load, sampled every 10 s and checked every minute: never.
  for (int minute = 0; minute < 60; ++minute) {
    for (int i = 0; i < 5; ++i) policy.sample(1950 + (i % 2) * 60);
    CHECK_FALSE(policy.trim_due(1990));
  }
  // A burst to 4,000 between checks, then back to 3,001 (just above 3/4): not yet.
  policy.sample(4000);
  CHECK_FALSE(policy.trim_due(3001));
  // At 3,000 (3/4 of the peak): due, once; the peak starts again from there.
  CHECK(policy.trim_due(3000));
  CHECK_FALSE(policy.trim_due(3000));
  // Every connection gone after a load: due.
  CHECK(policy.trim_due(0));
  CHECK_FALSE(policy.trim_due(0));
}
