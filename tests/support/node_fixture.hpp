// Test support for the node library's process-level tests (node_test, node_topics_test): a
// relay process's ticket, and the coroutine helpers they wait with. Header only.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <chrono>
#include <vector>

#include "common/coro.hpp"
#include "common/node.hpp"
#include "common/tickets.hpp"
#include "support/relay_client.hpp"

namespace strelay::test {

// The ticket stmgr would write for `relay` (127.0.0.1 and its port).
inline RelayTicket ticket_of(const RelayProcess& relay) {
  return {relay.address().key, Address{"127.0.0.1", relay.address().endpoint.port()}};
}

// Small timers, so that reconnection is observable in a second or two.
inline NodeOptions fast_node_options(
    std::chrono::milliseconds connect_timeout = std::chrono::seconds(2)) {
  using namespace std::chrono_literals;
  NodeOptions options;
  options.backoff = {.initial = 100ms, .cap = 1000ms, .stable_after = 500ms};
  options.connect_timeout = connect_timeout;
  options.outcome_timeout = 5s;
  options.stream.close_linger = 500ms;
  return options;
}

inline boost::asio::awaitable<void> sleep_for(std::chrono::steady_clock::duration d) {
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, d);
  co_await timer.async_wait(await_tuple);
}

// Polls `condition` every 10 ms on the test's executor; true if it held before `limit`.
template <class Condition>
boost::asio::awaitable<bool> soon(Condition condition, std::chrono::steady_clock::duration limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= until) co_return false;
    co_await sleep_for(std::chrono::milliseconds(10));
  }
  co_return true;
}

// A named vector: GCC 12 cannot keep a braced list alive across a co_await.
template <class... T>
std::vector<RelayTicket> list(const T&... tickets) {
  return std::vector<RelayTicket>{tickets...};
}

}  // namespace strelay::test
