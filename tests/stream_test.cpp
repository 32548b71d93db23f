// The end-to-end stream on loopback sockets (no relay): handshakes and their refusals, data
// both ways with half-close, backpressure, keepalive, closes with reasons, and tampering.
#include "common/stream.hpp"

#include <doctest/doctest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <functional>
#include <set>

#include "common/coro.hpp"
#include "common/errors.hpp"
#include "common/wakeup.hpp"
#include "support/loopback.hpp"

using namespace strelay;
using namespace strelay::test;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;
using Clock = std::chrono::steady_clock;

namespace {

struct Peers {
  Identity alice = Identity::generate();  // the connector (initiator)
  Identity bob = Identity::generate();    // the listener (responder)
  // Named sets: GCC 12 cannot take a braced list as a coroutine's argument.
  std::set<PublicKey> only_alice{alice.public_key()};
  std::set<PublicKey> nobody{};
};

struct Handshakes {
  std::optional<Channel> initiator, responder;
  std::error_code initiator_error, responder_error;
};

asio::awaitable<std::error_code> initiate(tcp::socket& socket, const Identity& self,
                                          const PublicKey& listener, std::optional<Channel>& out) {
  auto ec = co_await connect_stream_handshake(socket, self, listener, Clock::now() + 5s, out);
  if (ec) socket.close();  // as a node does: the responder then stops waiting
  co_return ec;
}

asio::awaitable<std::error_code> respond(tcp::socket& socket, const Identity& self,
                                         const PublicKey& announced,
                                         const std::set<PublicKey>& friends,
                                         std::optional<Channel>& out) {
  auto is_friend = [&](const PublicKey& key) { return friends.contains(key); };
  auto ec =
      co_await accept_stream_handshake(socket, self, announced, is_friend, Clock::now() + 5s, out);
  if (ec && socket.is_open()) socket.close();
  co_return ec;
}

// Runs both handshakes over sockets a (initiator) and b (responder).
asio::awaitable<Handshakes> handshake(tcp::socket& a, tcp::socket& b, const Identity& initiator,
                                      const PublicKey& pinned, const Identity& responder,
                                      const PublicKey& announced,
                                      const std::set<PublicKey>& friends) {
  Handshakes out;
  auto [ie, re] = co_await (initiate(a, initiator, pinned, out.initiator) &&
                            respond(b, responder, announced, friends, out.responder));
  out.initiator_error = ie;
  out.responder_error = re;
  co_return out;
}

// Lets every other coroutine on this executor run, `n` times over (no timer involved).
asio::awaitable<void> yield_many(int n) {
  auto executor = co_await asio::this_coro::executor;
  for (int i = 0; i < n; ++i) co_await asio::post(executor, asio::use_awaitable);
}

// A steady clock that only the test moves (StreamOptions::clock).
struct TestClock {
  Clock::time_point now = Clock::now();
  SteadyNow source() {
    return [this] { return now; };
  }
};

// Waits (without a sleep) until `done()` holds, woken by `wake`; false after `limit`.
asio::awaitable<bool> wait_for_event(Wakeup& wake, const std::function<bool()>& done,
                                     Clock::duration limit) {
  const auto until = Clock::now() + limit;
  while (!done()) {
    if (Clock::now() >= until) co_return false;
    co_await wake.wait(until);
  }
  co_return true;
}

// Reads until EOF or an error; returns the error (none at EOF).
asio::awaitable<std::error_code> read_all(Stream& stream, std::vector<std::uint8_t>& out) {
  std::vector<std::uint8_t> buffer(50000);
  for (;;) {
    const auto r = co_await stream.read_some(buffer);
    if (r.error) co_return r.error;
    if (r.eof()) co_return std::error_code{};
    out.insert(out.end(), buffer.begin(), buffer.begin() + static_cast<long>(r.bytes));
  }
}

asio::awaitable<std::error_code> write_all_then_eof(Stream& stream,
                                                    const std::vector<std::uint8_t>& data) {
  if (auto ec = co_await stream.write(data)) co_return ec;
  co_return co_await stream.shutdown_send();
}

// Forwards a -> b and b -> a, flipping the byte at `flip_at` of the a -> b direction.
asio::awaitable<void> pump(tcp::socket& from, tcp::socket& to, std::size_t flip_at) {
  std::vector<std::uint8_t> buffer(16384);
  std::size_t offset = 0;
  for (;;) {
    auto [ec, n] = co_await from.async_read_some(asio::buffer(buffer), await_tuple);
    if (ec) break;
    if (flip_at >= offset && flip_at < offset + n) buffer[flip_at - offset] ^= 0x01;
    offset += n;
    auto [wec, wn] = co_await asio::async_write(to, asio::buffer(buffer.data(), n), await_tuple);
    if (wec) break;
  }
  boost::system::error_code ignored;
  to.shutdown(tcp::socket::shutdown_send, ignored);
}

// Runs `task` on the sockets' io_context until it completes (other coroutines, such as the
// streams' own, may still be pending: they end when the io_context goes).
void run(asio::io_context& ioc, asio::awaitable<void> task, Clock::duration limit) {
  bool done = false;
  std::exception_ptr error;
  asio::co_spawn(ioc, std::move(task), [&](std::exception_ptr e) {
    done = true;
    error = e;
  });
  const auto until = Clock::now() + limit;
  ioc.restart();
  while (!done && Clock::now() < until) {
    if (ioc.run_one_until(until) == 0) break;
  }
  if (error) std::rethrow_exception(error);
  REQUIRE_MESSAGE(done, "the test task did not finish within its time limit");
}

StreamOptions fast_options() {
  StreamOptions options;
  options.close_linger = 500ms;
  return options;
}

}  // namespace

TEST_CASE("bytes flow both ways, each end of data reaches the other side, and both close cleanly") {
  asio::io_context ioc;
  auto sockets = loopback_pair(ioc);
  auto& a = sockets.first;
  auto& b = sockets.second;
  Peers peers;
  std::error_code alice_end = errc::timeout, bob_end = errc::timeout;
  run(
      ioc,
      [&]() -> asio::awaitable<void> {
        auto hs = co_await handshake(a, b, peers.alice, peers.bob.public_key(), peers.bob,
                                     peers.alice.public_key(), peers.only_alice);
        REQUIRE_FALSE(hs.initiator_error);
        REQUIRE_FALSE(hs.responder_error);
        CHECK(hs.initiator->peer() == peers.bob.public_key());
        CHECK(hs.responder->peer() == peers.alice.public_key());
        Stream alice(std::move(*hs.initiator), fast_options(),
                     {.on_rtt = {}, .on_end = [&](std::error_code e) { alice_end = e; }});
        Stream bob(std::move(*hs.responder), fast_options(),
                   {.on_rtt = {}, .on_end = [&](std::error_code e) { bob_end = e; }});
        const auto up = pattern_bytes(300000, 1);
        const auto down = pattern_bytes(70000, 2);
        std::vector<std::uint8_t> got_up, got_down;
        auto [e1, e2, e3, e4] =
            co_await (write_all_then_eof(alice, up) && read_all(bob, got_up) &&
                      write_all_then_eof(bob, down) && read_all(alice, got_down));
        CHECK_FALSE(e1);
        CHECK_FALSE(e2);
        CHECK_FALSE(e3);
        CHECK_FALSE(e4);
        CHECK(got_up == up);
        CHECK(got_down == down);
        // After the end of data, a read keeps saying so, and a write is refused.
        std::array<std::uint8_t, 10> more{};
        CHECK((co_await bob.read_some(more)).eof());
        CHECK(co_await alice.write(more) == errc::channel_closed);
        auto [c1, c2] = co_await (alice.close() && bob.close());
        CHECK_FALSE(c1);
        CHECK_FALSE(c2);
        CHECK(alice.finished());
        CHECK(bob.finished());
        CHECK(alice.stats().bytes_sent == up.size());
        CHECK(alice.stats().bytes_received == down.size());
      }(),
      20s);
  CHECK_FALSE(alice_end);
  CHECK_FALSE(bob_end);
}

TEST_CASE("megabytes both ways at once through small buffers do not deadlock") {
  asio::io_context ioc;
  auto sockets = loopback_pair(ioc);
  auto& a = sockets.first;
  auto& b = sockets.second;
  Peers peers;
  run(
      ioc,
      [&]() -> asio::awaitable<void> {
        auto hs = co_await handshake(a, b, peers.alice, peers.bob.public_key(), peers.bob,
                                     peers.alice.public_key(), peers.only_alice);
        REQUIRE_FALSE(hs.initiator_error);
        auto options = fast_options();
        options.receive_buffer_bytes = 1;  // rounds up to one frame body
        Stream alice(std::move(*hs.initiator), options);
        Stream bob(std::move(*hs.responder), options);
        const auto up = pattern_bytes(6 << 20, 3);
        const auto down = pattern_bytes(5 << 20, 4);
        std::vector<std::uint8_t> got_up, got_down;
        auto [e1, e2, e3, e4] =
            co_await (write_all_then_eof(alice, up) && write_all_then_eof(bob, down) &&
                      read_all(bob, got_up) && read_all(alice, got_down));
        CHECK_FALSE(e1);
        CHECK_FALSE(e2);
        CHECK_FALSE(e3);
        CHECK_FALSE(e4);
        CHECK(got_up == up);
        CHECK(got_down == down);
        co_await (alice.close() && bob.close());
      }(),
      60s);
}

TEST_CASE("a writer waits while its peer does not read, and nothing is lost") {
  asio::io_context ioc;
  auto sockets = loopback_pair(ioc);
  auto& a = sockets.first;
  auto& b = sockets.second;
  Peers peers;
  run(
      ioc,
      [&]() -> asio::awaitable<void> {
        auto hs = co_await handshake(a, b, peers.alice, peers.bob.public_key(), peers.bob,
                                     peers.alice.public_key(), peers.only_alice);
        REQUIRE_FALSE(hs.initiator_error);
        Stream alice(std::move(*hs.initiator), fast_options());
        Stream bob(std::move(*hs.responder), fast_options());
        // More than loopback's socket buffers and the stream's receive buffer can hold.
        const auto data = pattern_bytes(48 << 20, 5);
        bool written = false;
        auto writer = [&]() -> asio::awaitable<void> {
          CHECK_FALSE(co_await write_all_then_eof(alice, data));
          written = true;
        };
        std::vector<std::uint8_t> got;
        auto reader = [&]() -> asio::awaitable<void> {
          // Let the writer run as far as it can. 48 MiB cannot fit in the socket buffers and
          // the receive buffer, so however far that is, it cannot be the end.
          co_await yield_many(2000);
          CHECK_FALSE(written);  // held back by the unread receiver
          CHECK(alice.stats().bytes_sent < data.size());
          CHECK_FALSE(co_await read_all(bob, got));
        };
        co_await (writer() && reader());
        CHECK(written);
        CHECK(got == data);
        co_await (alice.close() && bob.close());
      }(),
      60s);
}

TEST_CASE("a flipped byte in the tunnel ends both sides with an integrity error, never bad data") {
  asio::io_context ioc;
  auto near = loopback_pair(ioc);  // initiator, proxy
  auto far = loopback_pair(ioc);   // proxy, responder
  auto &a1 = near.first, &a2 = near.second, &b1 = far.first, &b2 = far.second;
  Peers peers;
  const auto data = pattern_bytes(1 << 20, 6);
  run(
      ioc,
      [&]() -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        // Byte 400000 of the initiator's side is deep inside the data frames.
        asio::co_spawn(ex, pump(a2, b1, 400000), asio::detached);
        asio::co_spawn(ex, pump(b1, a2, ~std::size_t{0}), asio::detached);
        auto hs = co_await handshake(a1, b2, peers.alice, peers.bob.public_key(), peers.bob,
                                     peers.alice.public_key(), peers.only_alice);
        REQUIRE_FALSE(hs.initiator_error);
        Stream alice(std::move(*hs.initiator), fast_options());
        Stream bob(std::move(*hs.responder), fast_options());
        std::vector<std::uint8_t> got;
        auto [write_error, read_error] =
            co_await (write_all_then_eof(alice, data) && read_all(bob, got));
        CHECK(read_error == errc::decrypt_failed);
        // What was delivered is exactly a prefix of what was sent, and stops before the flip.
        REQUIRE(got.size() < 400000);
        CHECK(std::equal(got.begin(), got.end(), data.begin()));
        // The sender learns it from the receiver's authenticated close.
        std::vector<std::uint8_t> ignored;
        const auto alice_error = write_error ? write_error : co_await read_all(alice, ignored);
        CHECK(alice_error == errc::protocol_error);
        CHECK(co_await bob.close() == errc::decrypt_failed);
        CHECK(co_await alice.close() == errc::protocol_error);
      }(),
      20s);
}

TEST_CASE("the connector stops at msg2 when the listener does not hold the pinned key") {
  asio::io_context ioc;
  auto sockets = loopback_pair(ioc);
  auto& a = sockets.first;
  auto& b = sockets.second;
  Peers peers;
  const auto someone_else = Identity::generate();
  run(
      ioc,
      [&]() -> asio::awaitable<void> {
        auto hs = co_await handshake(a, b, peers.alice, someone_else.public_key(), peers.bob,
                                     peers.alice.public_key(), peers.only_alice);
        CHECK(hs.initiator_error == errc::peer_identity_mismatch);
        CHECK(hs.responder_error == errc::aborted);  // msg3 never came: alice stayed unnamed
        CHECK_FALSE(hs.responder);
      }(),
      10s);
}

TEST_CASE("a non-friend gets close{not_allowed}: not_a_friend, never the relay's allowlist") {
  asio::io_context ioc;
  auto sockets = loopback_pair(ioc);
  auto& a = sockets.first;
  auto& b = sockets.second;
  Peers peers;
  run(
      ioc,
      [&]() -> asio::awaitable<void> {
        auto hs = co_await handshake(a, b, peers.alice, peers.bob.public_key(), peers.bob,
                                     peers.alice.public_key(), peers.nobody);
        CHECK(hs.responder_error == errc::not_a_friend);
        REQUIRE_FALSE(hs.initiator_error);  // the initiator learns it from its first read
        Stream alice(std::move(*hs.initiator), fast_options());
        std::array<std::uint8_t, 16> buffer{};
        CHECK((co_await alice.read_some(buffer)).error == errc::not_a_friend);
      }(),
      10s);
}

TEST_CASE("an initiator other than the announced key is refused") {
  asio::io_context ioc;
  auto sockets = loopback_pair(ioc);
  auto& a = sockets.first;
  auto& b = sockets.second;
  Peers peers;
  const auto announced = Identity::generate();  // a relay announcing someone else
  const std::set<PublicKey> both{peers.alice.public_key(), announced.public_key()};
  run(
      ioc,
      [&]() -> asio::awaitable<void> {
        auto hs = co_await handshake(a, b, peers.alice, peers.bob.public_key(), peers.bob,
                                     announced.public_key(), both);
        CHECK(hs.responder_error == errc::peer_identity_mismatch);
        CHECK_FALSE(hs.responder);
      }(),
      10s);
}

// The keepalive rules themselves are StreamState's (stream_state_test.cpp); these check that the
// driver runs them on the injected clock: time is moved by hand, nothing sleeps.
TEST_CASE("keepalives keep an idle stream up and measure the round trip; an abort is seen") {
  asio::io_context ioc;
  auto sockets = loopback_pair(ioc);
  auto& a = sockets.first;
  auto& b = sockets.second;
  Peers peers;
  TestClock clock;
  auto options = fast_options();
  options.clock = clock.source();
  run(
      ioc,
      [&]() -> asio::awaitable<void> {
        auto hs = co_await handshake(a, b, peers.alice, peers.bob.public_key(), peers.bob,
                                     peers.alice.public_key(), peers.only_alice);
        REQUIRE_FALSE(hs.initiator_error);
        Wakeup rtt_wake(co_await asio::this_coro::executor);
        int rtts = 0;
        Stream alice(std::move(*hs.initiator), options,
                     {.on_rtt =
                          [&](Clock::duration) {
                            ++rtts;
                            rtt_wake.notify();
                          },
                      .on_end = {}});
        {
          Stream bob(std::move(*hs.responder), options);
          // The ping every stream sends at its start.
          CHECK(co_await wait_for_event(
              rtt_wake, [&] { return rtts >= 1; }, 10s));
          // Ten times 20 s of idle time (an interval is 15 s, the peer is dead after 45 s):
          // each time alice pings and bob answers, so neither gives the other up.
          for (int round = 2; round <= 11; ++round) {
            clock.now += 20s;
            alice.clock_changed();
            bob.clock_changed();
            CHECK(co_await wait_for_event(
                rtt_wake, [&] { return rtts >= round; }, 10s));
          }
          CHECK_FALSE(alice.finished());
          CHECK_FALSE(bob.finished());
          REQUIRE(alice.stats().rtt.has_value());
          CHECK(*alice.stats().rtt < 20s);  // measured on the test's clock: no jump inside
        }                                   // bob's stream aborts: alice sees it at once
        std::array<std::uint8_t, 16> buffer{};
        CHECK((co_await alice.read_some(buffer)).error == errc::aborted);
      }(),
      60s);
}

TEST_CASE("a peer that answers no ping is declared gone and told so") {
  asio::io_context ioc;
  auto sockets = loopback_pair(ioc);
  auto& a = sockets.first;
  auto& b = sockets.second;
  Peers peers;
  TestClock clock;
  auto options = fast_options();
  options.clock = clock.source();
  run(
      ioc,
      [&]() -> asio::awaitable<void> {
        auto hs = co_await handshake(a, b, peers.alice, peers.bob.public_key(), peers.bob,
                                     peers.alice.public_key(), peers.only_alice);
        REQUIRE_FALSE(hs.initiator_error);
        Stream alice(std::move(*hs.initiator), options);
        // Bob's channel is never read: alice hears nothing after the handshake.
        clock.now += options.dead_peer_timeout;
        alice.clock_changed();
        std::array<std::uint8_t, 16> buffer{};
        const auto r = co_await alice.read_some(buffer);
        CHECK(r.error == errc::peer_gone);
        // Bob's raw channel finds pings, then the reason.
        Message message;
        std::error_code ec;
        for (int i = 0; i < 100 && !ec; ++i) {
          ec = co_await hs.responder->receive(message, Clock::now() + 10s);
        }
        CHECK(ec == errc::channel_closed);
        CHECK(message.close_reason == CloseReason::dead_peer);
      }(),
      60s);
}

TEST_CASE("a close before the end of data reaches the peer with its reason") {
  asio::io_context ioc;
  Peers peers;
  for (const auto reason : {CloseReason::normal, CloseReason::not_allowed}) {
    CAPTURE(static_cast<int>(reason));
    auto sockets = loopback_pair(ioc);
    auto& a = sockets.first;
    auto& b = sockets.second;
    run(
        ioc,
        [&]() -> asio::awaitable<void> {
          auto hs = co_await handshake(a, b, peers.alice, peers.bob.public_key(), peers.bob,
                                       peers.alice.public_key(), peers.only_alice);
          REQUIRE_FALSE(hs.initiator_error);
          Stream alice(std::move(*hs.initiator), fast_options());
          Stream bob(std::move(*hs.responder), fast_options());
          const auto data = pattern_bytes(1000, 7);
          CHECK_FALSE(co_await alice.write(data));
          std::vector<std::uint8_t> got;
          auto [closed, read_error] = co_await (alice.close(reason) && read_all(bob, got));
          CHECK_FALSE(closed);  // our own choice is no failure
          CHECK(got == data);   // what was sent before the close still arrives
          // A close without an end of data is never mistaken for one.
          CHECK(read_error == (reason == CloseReason::normal
                                   ? make_error_code(errc::channel_closed)
                                   : make_error_code(errc::not_a_friend)));
          CHECK(co_await bob.write(data) != std::error_code{});
        }(),
        10s);
  }
}

TEST_CASE("data after the end of data, or a control frame, is a protocol error") {
  asio::io_context ioc;
  Peers peers;
  for (const bool control : {false, true}) {
    CAPTURE(control);
    auto sockets = loopback_pair(ioc);
    auto& a = sockets.first;
    auto& b = sockets.second;
    std::error_code bob_end;
    run(
        ioc,
        [&]() -> asio::awaitable<void> {
          auto hs = co_await handshake(a, b, peers.alice, peers.bob.public_key(), peers.bob,
                                       peers.alice.public_key(), peers.only_alice);
          REQUIRE_FALSE(hs.initiator_error);
          Stream bob(std::move(*hs.responder), fast_options(),
                     {.on_rtt = {}, .on_end = [&](std::error_code e) { bob_end = e; }});
          auto& raw = *hs.initiator;  // alice breaks the rules with a bare channel
          const std::array<std::uint8_t, 1> x{'x'};
          const auto until = Clock::now() + 2s;
          if (control) {
            CHECK_FALSE(co_await raw.send(FrameKind::control, x, until));
          } else {
            CHECK_FALSE(co_await raw.send(FrameKind::data, {}, until));
            CHECK_FALSE(co_await raw.send(FrameKind::data, x, until));
          }
          Message message;
          std::error_code ec;
          for (int i = 0; i < 10 && !ec; ++i) ec = co_await raw.receive(message, until);
          CHECK(ec == errc::channel_closed);
          CHECK(message.close_reason == CloseReason::protocol_error);
          CHECK(co_await bob.close() == errc::protocol_error);
        }(),
        10s);
    CHECK(bob_end == errc::protocol_error);
  }
}
