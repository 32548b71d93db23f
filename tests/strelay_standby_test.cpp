// The listener's standby (issue 17.2; docs/protocol.md 4.4, "Standby") against the real strelay
// binary on 127.0.0.1, with raw hop connections: a session made over a standby, and the rules at
// their limits (a second standby replaces the first, a standby without a listen is refused, the
// standby closes when its listen is replaced or goes).
#include <doctest/doctest.h>

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include "common/coro.hpp"
#include "support/relay_client.hpp"

using namespace strelay;
using namespace strelay::test;
using namespace std::chrono_literals;
namespace asio = boost::asio;

namespace {

// Park a standby as `self`; the relay says nothing while it is parked (checked for 300 ms).
asio::awaitable<Channel> park_standby(const RelayProcess& relay, const Identity& self) {
  auto s = co_await open_connection(relay.address(), self, Standby{});
  REQUIRE_FALSE(s.error);
  const auto quiet = co_await next_message(*s.channel, 300ms);
  REQUIRE(quiet.error == errc::timeout);
  co_return std::move(*s.channel);
}

// The relay's close on `channel`, within 2 s.
asio::awaitable<CloseReason> close_of(Channel& channel) {
  const auto r = co_await next_message(channel, 2000ms);
  CHECK(r.error == errc::channel_closed);
  co_return r.close_reason;
}

}  // namespace

TEST_CASE("an Accept sent on a standby pairs, and the pipe carries bytes both ways") {
  RelayProcess relay;
  const auto listener = Identity::generate();
  const auto connector = Identity::generate();
  run_task(
      [&]() -> asio::awaitable<void> {
        auto listening = co_await listen_as(relay, listener);
        auto standby = co_await park_standby(relay, listener);
        auto c =
            co_await open_connection(relay.address(), connector, Connect{listener.public_key()});
        REQUIRE_FALSE(c.error);
        const auto incoming = co_await next_message(listening, 2000ms);
        REQUIRE(is<IncomingConnection>(incoming));
        REQUIRE(co_await send_request(standby, Accept{connector.public_key()}) ==
                std::error_code{});
        const auto to_acceptor = co_await next_message(standby, 2000ms);
        const auto to_connector = co_await next_message(*c.channel, 2000ms);
        REQUIRE(is<Connected>(to_acceptor));
        REQUIRE(is<Connected>(to_connector));
        CHECK(std::get<Connected>(*to_acceptor.message).peer == connector.public_key());
        auto a = standby.release_socket();
        auto b = c.channel->release_socket();
        const std::array<std::uint8_t, 4> up{1, 2, 3, 4}, down{5, 6, 7, 8};
        std::array<std::uint8_t, 4> got{};
        co_await asio::async_write(b, asio::buffer(up), await_tuple);
        auto [e1, n1] = co_await asio::async_read(a, asio::buffer(got), await_tuple);
        CHECK_FALSE(e1);
        CHECK(got == up);
        co_await asio::async_write(a, asio::buffer(down), await_tuple);
        auto [e2, n2] = co_await asio::async_read(b, asio::buffer(got), await_tuple);
        CHECK_FALSE(e2);
        CHECK(got == down);
      }(),
      20s);
}

TEST_CASE("standby limits: one per key (the second replaces the first), none without a listen") {
  RelayProcess relay;
  const auto listener = Identity::generate();
  run_task(
      [&]() -> asio::awaitable<void> {
        // Without a listen: refused{notFound}, then the close that goes with it.
        auto lone = co_await open_connection(relay.address(), listener, Standby{});
        REQUIRE_FALSE(lone.error);
        const auto refused = co_await next_message(*lone.channel, 2000ms);
        REQUIRE(is<Refused>(refused));
        CHECK(std::get<Refused>(*refused.message).reason == RefuseReason::not_found);
        // One parked; a second one of the same key replaces it.
        auto listening = co_await listen_as(relay, listener);
        auto first = co_await park_standby(relay, listener);
        auto second = co_await park_standby(relay, listener);
        CHECK(co_await close_of(first) == CloseReason::replaced);
        // Anything but Accept on a standby is a protocol error.
        REQUIRE(co_await send_request(second, Listen{}) == std::error_code{});
        CHECK(co_await close_of(second) == CloseReason::protocol_error);
      }(),
      20s);
}

TEST_CASE("the standby closes with its listen: replaced by a newer listen, or gone") {
  RelayProcess relay;
  const auto listener = Identity::generate();
  run_task(
      [&]() -> asio::awaitable<void> {
        auto old_listen = co_await listen_as(relay, listener);
        auto standby = co_await park_standby(relay, listener);
        auto new_listen = co_await listen_as(relay, listener);  // newest listen wins
        CHECK(co_await close_of(old_listen) == CloseReason::replaced);
        CHECK(co_await close_of(standby) == CloseReason::replaced);
        auto next = co_await park_standby(relay, listener);  // the new listen's own
        new_listen.close();                                  // the listen goes
        CHECK(co_await close_of(next) == CloseReason::normal);
      }(),
      20s);
}
