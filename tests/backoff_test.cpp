// Backoff (sans-io): the ceiling doubles up to the cap, delays are uniform under it (full
// jitter), and only a stable connection resets the count.
#include "common/backoff.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <stdexcept>
#include <vector>

#include "common/keys.hpp"

using namespace strelay;
using namespace std::chrono_literals;

namespace {

BackoffOptions small_options() {
  return {.initial = 100ms, .cap = 1000ms, .stable_after = 5s};
}

// A random source that returns `value` every time.
Backoff::Random constant(std::uint64_t value) {
  return [value] { return value; };
}

}  // namespace

TEST_CASE("the ceiling doubles from the initial delay and stops at the cap") {
  Backoff backoff(small_options(), constant(0));
  std::vector<std::chrono::milliseconds> ceilings;
  for (int i = 0; i < 7; ++i) {
    ceilings.push_back(backoff.ceiling());
    backoff.next_delay();
  }
  CHECK(ceilings ==
        std::vector<std::chrono::milliseconds>{100ms, 200ms, 400ms, 800ms, 1000ms, 1000ms, 1000ms});
}

TEST_CASE("a delay is the random value reduced to [0, ceiling], both ends included") {
  SUBCASE("zero gives no delay") {
    Backoff backoff(small_options(), constant(0));
    CHECK(backoff.next_delay() == 0ms);
  }
  SUBCASE("ceiling itself is reachable") {
    Backoff backoff(small_options(), constant(100));  // 100 % 101 == 100
    CHECK(backoff.next_delay() == 100ms);
    Backoff second(small_options(), constant(200));  // second attempt: 200 % 201
    second.next_delay();
    CHECK(second.next_delay() == 200ms);
  }
  SUBCASE("the largest random value stays under the cap") {
    Backoff backoff(small_options(), constant(~std::uint64_t{0}));
    for (int i = 0; i < 100; ++i) CHECK(backoff.next_delay() <= 1000ms);
  }
}

TEST_CASE("with libsodium's randomness, delays spread over the whole window and respect it") {
  init_crypto();
  Backoff backoff({.initial = 1000ms, .cap = 1000ms, .stable_after = 1s});
  std::chrono::milliseconds low = 1000ms, high = 0ms;
  for (int i = 0; i < 2000; ++i) {
    const auto d = backoff.next_delay();
    REQUIRE(d >= 0ms);
    REQUIRE(d <= 1000ms);
    low = std::min(low, d);
    high = std::max(high, d);
  }
  // 2000 uniform draws over 1001 values: both tails are hit with overwhelming probability.
  CHECK(low < 50ms);
  CHECK(high > 950ms);
}

TEST_CASE("many attempts never overflow: the ceiling stays at the cap") {
  Backoff backoff({.initial = 1ms, .cap = std::chrono::hours(24), .stable_after = 1s},
                  constant(~std::uint64_t{0}));
  for (int i = 0; i < 1000; ++i) backoff.next_delay();
  CHECK(backoff.ceiling() == std::chrono::hours(24));
  CHECK(backoff.attempts() == 64);
}

TEST_CASE("only a connection that stayed up for stable_after resets the count") {
  Backoff backoff(small_options(), constant(0));
  for (int i = 0; i < 4; ++i) backoff.next_delay();
  CHECK(backoff.ceiling() == 1000ms);
  backoff.connection_ended(4999ms);  // replaced right away, or a flapping relay
  CHECK(backoff.ceiling() == 1000ms);
  backoff.connection_ended(5s);
  CHECK(backoff.attempts() == 0);
  CHECK(backoff.ceiling() == 100ms);
}

TEST_CASE("options must satisfy 0 < initial <= cap") {
  CHECK_THROWS_AS(Backoff({.initial = 0ms, .cap = 1s, .stable_after = 1s}), std::invalid_argument);
  CHECK_THROWS_AS(Backoff({.initial = 2s, .cap = 1s, .stable_after = 1s}), std::invalid_argument);
  CHECK_NOTHROW(Backoff({.initial = 1s, .cap = 1s, .stable_after = 1s}));
}
