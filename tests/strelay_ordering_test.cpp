// Regression: decisions for one session must arrive in the order the pairing table made them,
// even when they are made on different workers (strelay/session.cpp, Session::post).
#include <doctest/doctest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "support/relay_client.hpp"

using namespace strelay;
using namespace strelay::test;
using namespace std::chrono_literals;
namespace asio = boost::asio;

TEST_CASE(
    "ListenOk is never overtaken by Close{replaced} when listens for one key race on two workers") {
  RelayProcess relay({"--threads", "2", "--max-pending-per-source", "1024", "--handshake-rate",
                      "100000", "--handshake-burst", "100000"});
  const auto node = Identity::generate();
  int listen_ok_first = 0;
  int closed_first = 0;
  int failed = 0;
  constexpr int clients = 32;
  constexpr int rounds = 50;
  run_task(
      [&]() -> asio::awaitable<void> {
        auto executor = co_await asio::this_coro::executor;
        int finished = 0;
        asio::steady_timer done(executor, std::chrono::steady_clock::time_point::max());
        for (int c = 0; c < clients; ++c) {
          asio::co_spawn(
              executor,
              [&]() -> asio::awaitable<void> {
                for (int r = 0; r < rounds; ++r) {
                  auto conn = co_await open_connection(relay.address(), node, Listen{});
                  if (conn.error) {
                    ++failed;
                    continue;
                  }
                  auto first = co_await next_message(*conn.channel, 5000ms);
                  if (first.message && std::holds_alternative<ListenOk>(*first.message)) {
                    ++listen_ok_first;
                  } else if (first.error == errc::channel_closed) {
                    ++closed_first;
                  } else {
                    ++failed;
                  }
                  conn.channel->close();
                }
                if (++finished == clients) done.cancel();
              },
              asio::detached);
        }
        co_await done.async_wait(asio::as_tuple(asio::use_awaitable));
      }(),
      120s);
  CHECK(closed_first == 0);
  CHECK(failed == 0);
  CHECK(listen_ok_first == clients * rounds);
}
