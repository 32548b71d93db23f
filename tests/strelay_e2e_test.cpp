// End-to-end tests of the real strelay binary on 127.0.0.1 with in-process test nodes.
#include <doctest/doctest.h>
#include <signal.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include "support/loopback.hpp"
#include "support/relay_client.hpp"

using namespace strelay;
using namespace strelay::test;
using namespace std::chrono_literals;
namespace asio = boost::asio;
constexpr auto await_tuple = asio::as_tuple(asio::use_awaitable);

namespace {

template <class T>
bool is(const Received& r) {
  return r.message && std::holds_alternative<T>(*r.message);
}

RefuseReason refusal(const Received& r) {
  REQUIRE(is<Refused>(r));
  return std::get<Refused>(*r.message).reason;
}

}  // namespace

TEST_CASE("listen, connect and accept pair two nodes, and bytes flow both ways through the pipe") {
  RelayProcess relay;
  const auto listener = Identity::generate();
  const auto connector = Identity::generate();
  run_task(
      [&]() -> asio::awaitable<void> {
        auto l = co_await open_connection(relay.address(), listener, Listen{});
        REQUIRE_FALSE(l.error);
        auto ok = co_await next_message(*l.channel);
        REQUIRE(is<ListenOk>(ok));

        auto c = co_await open_connection(relay.address(), connector,
                                          Connect{listener.public_key()});
        REQUIRE_FALSE(c.error);
        auto incoming = co_await next_message(*l.channel);
        REQUIRE(is<IncomingConnection>(incoming));
        CHECK(std::get<IncomingConnection>(*incoming.message).from == connector.public_key());

        auto a = co_await open_connection(relay.address(), listener,
                                          Accept{connector.public_key()});
        REQUIRE_FALSE(a.error);
        auto a_outcome = co_await next_message(*a.channel);
        auto c_outcome = co_await next_message(*c.channel);
        REQUIRE(is<Connected>(a_outcome));
        REQUIRE(is<Connected>(c_outcome));
        CHECK(std::get<Connected>(*a_outcome.message).peer == connector.public_key());
        CHECK(std::get<Connected>(*c_outcome.message).peer == listener.public_key());

        // The sockets are now raw pipes.
        auto c_sock = c.channel->release_socket();
        auto a_sock = a.channel->release_socket();
        const auto up = pattern_bytes(4 * 1024 * 1024, 7);
        const auto down = pattern_bytes(1024 * 1024, 8);
        co_await asio::async_write(c_sock, asio::buffer(up), await_tuple);
        c_sock.shutdown(tcp::socket::shutdown_send);
        std::vector<std::uint8_t> got_up(up.size());
        auto [e1, n1] = co_await asio::async_read(a_sock, asio::buffer(got_up), await_tuple);
        CHECK_FALSE(e1);
        CHECK(got_up == up);
        co_await asio::async_write(a_sock, asio::buffer(down), await_tuple);
        a_sock.shutdown(tcp::socket::shutdown_send);
        std::vector<std::uint8_t> got_down(down.size());
        auto [e2, n2] = co_await asio::async_read(c_sock, asio::buffer(got_down), await_tuple);
        CHECK_FALSE(e2);
        CHECK(got_down == down);
      }(),
      20s);
}

TEST_CASE("connect to a key that is not listening gets NotFound at once") {
  RelayProcess relay;
  const auto connector = Identity::generate();
  const auto nobody = Identity::generate();
  run_task(
      [&]() -> asio::awaitable<void> {
        auto c = co_await open_connection(relay.address(), connector, Connect{nobody.public_key()});
        REQUIRE_FALSE(c.error);
        auto outcome = co_await next_message(*c.channel, 2000ms);
        CHECK(refusal(outcome) == RefuseReason::not_found);
      }(),
      10s);
}

TEST_CASE("SIGTERM drains: listeners get Close{shutdown} and strelay exits 0") {
  RelayProcess relay;
  const auto listener = Identity::generate();
  run_task(
      [&]() -> asio::awaitable<void> {
        auto l = co_await open_connection(relay.address(), listener, Listen{});
        REQUIRE(is<ListenOk>(co_await next_message(*l.channel)));
        relay.signal(SIGTERM);
        auto end = co_await next_message(*l.channel);
        CHECK(end.error == errc::channel_closed);
        CHECK(end.close_reason == CloseReason::shutdown);
      }(),
      10s);
  CHECK(relay.wait_exit(10s) == 0);
}
