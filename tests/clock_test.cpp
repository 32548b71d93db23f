// strelay/clock: a Clock that tests move, and RelayTimers on it, on one io_context in this
// thread. Real time is never waited for: every expiry is hours away in steady time, so a timer
// that fires did so because the clock was moved.
#include "strelay/clock.hpp"

#include <doctest/doctest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <optional>

using namespace strelay;
using namespace std::chrono_literals;
namespace asio = boost::asio;

namespace {

struct Fixture {
  Clock clock;  // outlives the io_context's timers
  asio::io_context io;
  // Runs what is ready now (a re-aim is posted), without waiting for real time.
  void settle() {
    io.restart();
    io.poll();
  }
};

}  // namespace

TEST_CASE("two clocks are independent: moving one moves only its own time") {
  Clock a;
  Clock b;
  a.advance(1h);
  CHECK(a.offset() == 1h);
  CHECK(b.offset() == 0s);
  CHECK(a.now() - b.now() >= 1h - 1s);
  a.advance(-5s);  // a steady clock never goes back
  CHECK(a.offset() == 1h);
}

TEST_CASE("a timer fires when the clock is moved to its expiry, not before") {
  Fixture f;
  RelayTimer timer(f.io.get_executor(), f.clock, f.clock.now() + 2h);
  std::optional<boost::system::error_code> fired;
  timer.async_wait([&](boost::system::error_code ec) { fired = ec; });
  f.settle();
  CHECK_FALSE(fired);
  f.clock.advance(2h - 1min);
  f.settle();
  CHECK_FALSE(fired);  // re-aimed, still a minute to go
  f.clock.advance(2min);
  f.settle();
  REQUIRE(fired);
  CHECK_FALSE(*fired);
}

TEST_CASE("cancel and a new expiry end the wait in progress with operation_aborted") {
  Fixture f;
  RelayTimer timer(f.io.get_executor(), f.clock, f.clock.now() + 1h);
  std::optional<boost::system::error_code> first;
  timer.async_wait([&](boost::system::error_code ec) { first = ec; });
  SUBCASE("cancel") {
    timer.cancel();
  }
  SUBCASE("expires_at") {
    timer.expires_at(f.clock.now() + 2h);
  }
  f.settle();
  REQUIRE(first);
  CHECK(*first == asio::error::operation_aborted);
  // A later advance does not revive it.
  f.clock.advance(3h);
  f.settle();
  CHECK(*first == asio::error::operation_aborted);
}

TEST_CASE(
    "a wait raced with || is cancelled by the winner, and the clock still wakes the next wait") {
  using namespace asio::experimental::awaitable_operators;
  Fixture f;
  RelayTimer timer(f.io.get_executor(), f.clock, f.clock.now() + 1h);
  asio::steady_timer quick(f.io, 0ms);  // real time, already due
  std::optional<std::size_t> winner;
  asio::co_spawn(
      f.io,
      [&]() -> asio::awaitable<void> {
        auto raced = co_await (quick.async_wait(asio::use_awaitable) ||
                               timer.async_wait(asio::use_awaitable));
        winner = raced.index();
      },
      asio::detached);
  f.io.run_for(2s);  // the quick timer is due at once; this returns as soon as the race ends
  REQUIRE(winner);
  CHECK(*winner == 0);

  timer.expires_at(f.clock.now() + 1h);
  bool fired = false;
  timer.async_wait([&](boost::system::error_code ec) { fired = !ec; });
  f.clock.advance(1h + 1s);
  f.settle();
  CHECK(fired);
}
