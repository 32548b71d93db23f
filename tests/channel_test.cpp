// Tests for common/channel: the handshake and transport driven over real TCP sockets on
// 127.0.0.1, in one io_context. Deadlines are short parameters; timing checks are loose
// (that a deadline fired, and not much later than it should have).
#include "common/channel.hpp"

#include <doctest/doctest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "common/errors.hpp"
#include "common/preamble.hpp"
#include "support/loopback.hpp"

using namespace strelay;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
using Bytes = std::vector<std::uint8_t>;

namespace {

constexpr auto test_limit = 5000ms;  // no test may run its io_context longer than this
constexpr auto tuple_awaitable = asio::as_tuple(asio::use_awaitable);

Deadline in(Clock::duration d) {
  return Clock::now() + d;
}
Bytes bytes_of(std::string_view text) {
  return Bytes(text.begin(), text.end());
}
std::string text_of(std::span<const std::uint8_t> b) {
  return std::string(b.begin(), b.end());
}

// Runs a coroutine on `ioc`; an exception (a failed REQUIRE included) surfaces from run().
template <typename F>
void spawn(asio::io_context& ioc, F&& f) {
  asio::co_spawn(ioc, std::forward<F>(f), [](std::exception_ptr e) {
    if (e) std::rethrow_exception(e);
  });
}

asio::awaitable<void> sleep_for(Clock::duration d) {
  asio::steady_timer timer(co_await asio::this_coro::executor, d);
  co_await timer.async_wait(tuple_awaitable);
}

// Reads until EOF (bounded by the test's time limit); returns what arrived.
asio::awaitable<Bytes> read_to_eof(tcp::socket& socket) {
  Bytes all;
  std::array<std::uint8_t, 256> chunk{};
  for (;;) {
    auto [error, n] = co_await socket.async_read_some(asio::buffer(chunk), tuple_awaitable);
    all.insert(all.end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(n));
    if (error) co_return all;
  }
}

struct Fixture {
  asio::io_context ioc;
  Identity relay = Identity::generate();
  Identity node = Identity::generate();
  tcp::socket client{ioc};
  tcp::socket server{ioc};
  std::optional<Channel> client_channel;
  std::optional<Channel> server_channel;
  std::error_code client_error;
  std::error_code server_error;
  Bytes first_payload;

  Fixture() { std::tie(client, server) = test::loopback_pair(ioc); }

  // Runs both handshakes to completion.
  void handshake(const PublicKey& expected, const Bytes& payload, Clock::duration deadline = 2s) {
    spawn(ioc, [&, payload]() -> asio::awaitable<void> {
      client_error = co_await connect_handshake(client, node, expected, HandshakeLayer::hop,
                                                payload, in(deadline), client_channel);
    });
    spawn(ioc, [&]() -> asio::awaitable<void> {
      server_error = co_await accept_handshake(server, relay, HandshakeLayer::hop, in(deadline),
                                               server_channel, first_payload);
    });
    test::run_for(ioc, test_limit);
  }

  void connected() {
    handshake(relay.public_key(), bytes_of("listen please"));
    REQUIRE(!client_error);
    REQUIRE(!server_error);
    REQUIRE(client_channel.has_value());
    REQUIRE(server_channel.has_value());
  }
};

}  // namespace

TEST_CASE("the handshake completes over TCP and data flows both ways") {
  Fixture f;
  f.connected();
  CHECK(f.first_payload == bytes_of("listen please"));
  CHECK(f.server_channel->peer() == f.node.public_key());
  CHECK(f.client_channel->peer() == f.relay.public_key());
  CHECK(f.client_channel->session_id() == f.server_channel->session_id());

  const Bytes big = test::pattern_bytes(max_frame_body_bytes, 7);
  std::vector<Bytes> server_got;
  std::vector<Bytes> client_got;
  spawn(f.ioc, [&]() -> asio::awaitable<void> {
    auto& c = *f.client_channel;
    REQUIRE(!co_await c.send(FrameKind::control, bytes_of("hello relay"), in(2s)));
    REQUIRE(!co_await c.send(FrameKind::data, big, in(2s)));
    REQUIRE(!co_await c.send(FrameKind::ping, Bytes(ping_token_bytes, 9), in(2s)));
    Message m;
    REQUIRE(!co_await c.receive(m, in(2s)));
    CHECK(m.kind == FrameKind::data);
    client_got.emplace_back(m.body.begin(), m.body.end());
    REQUIRE(!co_await c.receive(m, in(2s)));
    CHECK(m.kind == FrameKind::pong);
    client_got.emplace_back(m.body.begin(), m.body.end());
  });
  spawn(f.ioc, [&]() -> asio::awaitable<void> {
    auto& s = *f.server_channel;
    Message m;
    for (auto kind : {FrameKind::control, FrameKind::data, FrameKind::ping}) {
      REQUIRE(!co_await s.receive(m, in(2s)));
      CHECK(m.kind == kind);
      server_got.emplace_back(m.body.begin(), m.body.end());
    }
    REQUIRE(!co_await s.send(FrameKind::data, big, in(2s)));
    REQUIRE(!co_await s.send(FrameKind::pong, server_got.back(), in(2s)));
  });
  test::run_for(f.ioc, test_limit);
  REQUIRE(server_got.size() == 3);
  CHECK(server_got[0] == bytes_of("hello relay"));
  CHECK(server_got[1] == big);
  REQUIRE(client_got.size() == 2);
  CHECK(client_got[0] == big);
  CHECK(client_got[1] == Bytes(ping_token_bytes, 9));
}

TEST_CASE("an authenticated close is reported with its reason and detail") {
  Fixture f;
  f.connected();
  std::error_code got;
  Message m;
  spawn(f.ioc, [&]() -> asio::awaitable<void> {
    REQUIRE(!co_await f.server_channel->send_close(CloseReason::shutdown, "draining", in(1s)));
    got = co_await f.client_channel->receive(m, in(1s));
  });
  test::run_for(f.ioc, test_limit);
  CHECK(got == errc::channel_closed);
  CHECK(m.kind == FrameKind::close);
  CHECK(m.close_reason == CloseReason::shutdown);
  CHECK(m.close_detail == "draining");
}

TEST_CASE("an EOF without a close is aborted, between frames and in the middle of one") {
  Fixture f;
  f.connected();
  std::error_code got;
  Message m;
  SUBCASE("between frames") {
    f.server_channel->close();
  }
  SUBCASE("in the middle of a frame: a truncation is never a completion") {
    // A header announcing 100 bytes, 10 of them, then FIN.
    Bytes partial{0, 100};
    partial.resize(12, 0x55);
    asio::write(f.server_channel->socket(), asio::buffer(partial));
    f.server_channel->close();
  }
  spawn(f.ioc,
        [&]() -> asio::awaitable<void> { got = co_await f.client_channel->receive(m, in(1s)); });
  test::run_for(f.ioc, test_limit);
  CHECK(got == errc::aborted);
  CHECK(m.close_reason == CloseReason::aborted);
}

TEST_CASE("a wrong relay key stops the node at msg2: the relay never sees msg3") {
  Fixture f;
  const auto impostor = Identity::generate();
  Clock::time_point server_done{};
  spawn(f.ioc, [&]() -> asio::awaitable<void> {
    f.client_error =
        co_await connect_handshake(f.client, f.node, impostor.public_key(), HandshakeLayer::hop,
                                   bytes_of("connect"), in(2s), f.client_channel);
    // Keep the socket open until the relay gives up, so only its deadline can end it.
    co_await sleep_for(600ms);
  });
  const auto start = Clock::now();
  spawn(f.ioc, [&]() -> asio::awaitable<void> {
    f.server_error = co_await accept_handshake(f.server, f.relay, HandshakeLayer::hop, in(300ms),
                                               f.server_channel, f.first_payload);
    server_done = Clock::now();
  });
  test::run_for(f.ioc, test_limit);
  CHECK(f.client_error == errc::relay_identity_mismatch);
  CHECK_FALSE(f.client_channel.has_value());
  // The relay waited for a msg3 that never came, and nothing else is in its socket.
  CHECK(f.server_error == errc::handshake_timeout);
  CHECK(f.server.available() == 0);
  CHECK(f.first_payload.empty());
  CHECK(server_done - start < 900ms);
}

TEST_CASE("an unknown version gets the relay's preamble back, then a close") {
  Fixture f;
  Bytes reply;
  spawn(f.ioc, [&]() -> asio::awaitable<void> {
    // Like a real client: its preamble and msg1 in one write, without waiting for an answer.
    const auto other = make_preamble(protocol_version + 1);
    Bytes hello(other.begin(), other.end());
    hello.insert(hello.end(), {0, 32});
    hello.resize(hello.size() + 32, 0x77);
    co_await asio::async_write(f.client, asio::buffer(hello), tuple_awaitable);
    co_await sleep_for(100ms);  // the relay has read msg1's bytes and replied before we read
    reply = co_await read_to_eof(f.client);
    f.client.close();
  });
  spawn(f.ioc, [&]() -> asio::awaitable<void> {
    f.server_error = co_await accept_handshake(f.server, f.relay, HandshakeLayer::hop, in(1s),
                                               f.server_channel, f.first_payload);
    f.server.close();
  });
  test::run_for(f.ioc, test_limit);
  CHECK(f.server_error == errc::unsupported_version);
  CHECK(reply == Bytes(current_preamble.begin(), current_preamble.end()));
}

TEST_CASE("a node talking to a relay of another version is told unsupported_version") {
  Fixture f;
  spawn(f.ioc, [&]() -> asio::awaitable<void> {
    f.client_error = co_await connect_handshake(f.client, f.node, f.relay.public_key(),
                                                HandshakeLayer::hop, {}, in(1s), f.client_channel);
  });
  spawn(f.ioc, [&]() -> asio::awaitable<void> {
    Bytes hello(preamble_bytes + length_prefix_bytes + handshake_msg1_bytes);
    co_await asio::async_read(f.server, asio::buffer(hello), tuple_awaitable);
    const auto theirs = make_preamble(protocol_version + 1);
    co_await asio::async_write(f.server, asio::buffer(theirs), tuple_awaitable);
    f.server.close();
  });
  test::run_for(f.ioc, test_limit);
  CHECK(f.client_error == errc::unsupported_version);
}

TEST_CASE("something that is not strelay is closed without a word") {
  Fixture f;
  Bytes reply{1};
  spawn(f.ioc, [&]() -> asio::awaitable<void> {
    co_await asio::async_write(f.client, asio::buffer(bytes_of("GET / HTTP/1.1\r\n")),
                               tuple_awaitable);
    reply = co_await read_to_eof(f.client);
  });
  spawn(f.ioc, [&]() -> asio::awaitable<void> {
    f.server_error = co_await accept_handshake(f.server, f.relay, HandshakeLayer::hop, in(1s),
                                               f.server_channel, f.first_payload);
    f.server.close();
  });
  test::run_for(f.ioc, test_limit);
  CHECK(f.server_error == errc::bad_magic);
  CHECK(reply.empty());
}

TEST_CASE("the absolute handshake deadline fires for a silent peer") {
  Fixture f;
  const auto start = Clock::now();
  Clock::time_point done{};
  spawn(f.ioc, [&]() -> asio::awaitable<void> {
    f.server_error = co_await accept_handshake(f.server, f.relay, HandshakeLayer::hop, in(300ms),
                                               f.server_channel, f.first_payload);
    done = Clock::now();
  });
  test::run_for(f.ioc, test_limit);
  CHECK(f.server_error == errc::handshake_timeout);
  CHECK(done - start >= 300ms);
  CHECK(done - start < 900ms);
}

TEST_CASE("a peer dripping one byte per 100 ms is cut at the absolute deadline") {
  Fixture f;
  // A valid preamble and msg1, one byte at a time: each byte arrives "in time".
  Bytes hello(current_preamble.begin(), current_preamble.end());
  InitiatorHandshake initiator(f.node, f.relay.public_key(), HandshakeLayer::hop);
  REQUIRE(!try_append_frame(hello, initiator.create_msg1()));
  bool server_done = false;
  std::size_t dripped = 0;
  spawn(f.ioc, [&]() -> asio::awaitable<void> {
    for (std::size_t i = 0; i < hello.size() && !server_done; ++i) {
      auto [error, n] =
          co_await asio::async_write(f.client, asio::buffer(&hello[i], 1), tuple_awaitable);
      if (error) break;
      dripped += n;
      co_await sleep_for(100ms);
    }
  });
  const auto start = Clock::now();
  Clock::time_point done{};
  spawn(f.ioc, [&]() -> asio::awaitable<void> {
    f.server_error = co_await accept_handshake(f.server, f.relay, HandshakeLayer::hop, in(1s),
                                               f.server_channel, f.first_payload);
    done = Clock::now();
    server_done = true;
    f.server.close();
  });
  test::run_for(f.ioc, test_limit);
  CHECK(f.server_error == errc::handshake_timeout);
  CHECK(dripped >= 5);  // bytes kept arriving...
  CHECK(dripped < hello.size());
  CHECK(done - start >= 1s);  // ...and the cut came at the deadline, not reset by them
  CHECK(done - start < 3s);
}

TEST_CASE("a slow frame body is cut by the per-frame limit, and that is terminal") {
  Fixture f;
  f.connected();
  f.client_channel->set_frame_time_limit(300ms);
  bool done = false;
  spawn(f.ioc, [&]() -> asio::awaitable<void> {
    Bytes header{0, 200};
    co_await asio::async_write(f.server_channel->socket(), asio::buffer(header), tuple_awaitable);
    for (int i = 0; i < 30 && !done; ++i) {
      const std::uint8_t byte = 0x11;
      co_await asio::async_write(f.server_channel->socket(), asio::buffer(&byte, 1),
                                 tuple_awaitable);
      co_await sleep_for(100ms);
    }
  });
  std::error_code first;
  std::error_code again;
  const auto start = Clock::now();
  Clock::time_point cut{};
  spawn(f.ioc, [&]() -> asio::awaitable<void> {
    Message m;
    first = co_await f.client_channel->receive(m, in(3s));
    cut = Clock::now();
    again = co_await f.client_channel->receive(m, in(3s));
    done = true;
  });
  test::run_for(f.ioc, test_limit);
  CHECK(first == errc::timeout);
  CHECK(cut - start >= 300ms);
  CHECK(cut - start < 900ms);
  CHECK(again == errc::timeout);  // sticky: the stream lost its framing
}

TEST_CASE("a receive deadline on a quiet channel loses nothing: the next frame still arrives") {
  Fixture f;
  f.connected();
  std::error_code first;
  std::error_code second;
  Bytes got;
  spawn(f.ioc, [&]() -> asio::awaitable<void> {
    Message m;
    first = co_await f.client_channel->receive(m, in(100ms));
    second = co_await f.client_channel->receive(m, in(2s));
    got.assign(m.body.begin(), m.body.end());
  });
  spawn(f.ioc, [&]() -> asio::awaitable<void> {
    co_await sleep_for(200ms);
    REQUIRE(!co_await f.server_channel->send(FrameKind::data, bytes_of("late"), in(1s)));
  });
  test::run_for(f.ioc, test_limit);
  CHECK(first == errc::timeout);
  CHECK(!second);
  CHECK(got == bytes_of("late"));
}

TEST_CASE("a frame that fails to authenticate ends the channel") {
  Fixture f;
  f.connected();
  std::error_code first;
  std::error_code again;
  spawn(f.ioc, [&]() -> asio::awaitable<void> {
    Bytes forged{0, 40};
    forged.resize(42, 0xab);
    co_await asio::async_write(f.server_channel->socket(), asio::buffer(forged), tuple_awaitable);
    REQUIRE(!co_await f.server_channel->send(FrameKind::data, bytes_of("genuine"), in(1s)));
  });
  spawn(f.ioc, [&]() -> asio::awaitable<void> {
    Message m;
    first = co_await f.client_channel->receive(m, in(1s));
    again = co_await f.client_channel->receive(m, in(1s));
  });
  test::run_for(f.ioc, test_limit);
  CHECK(first == errc::decrypt_failed);
  CHECK(again == errc::decrypt_failed);
}

TEST_CASE("after a frame, the released socket still holds every following byte") {
  Fixture f;
  f.connected();
  const Bytes raw = bytes_of("end-to-end handshake bytes, raw through the pipe");
  Bytes rest;
  spawn(f.ioc, [&]() -> asio::awaitable<void> {
    // The Connected frame and the first raw bytes arrive in one segment.
    REQUIRE(!co_await f.client_channel->send(FrameKind::control, bytes_of("Accept"), in(1s)));
    co_await asio::async_write(f.client_channel->socket(), asio::buffer(raw), tuple_awaitable);
    f.client_channel->close();
  });
  spawn(f.ioc, [&]() -> asio::awaitable<void> {
    co_await sleep_for(50ms);  // let both writes land before the relay reads
    Message m;
    REQUIRE(!co_await f.server_channel->receive(m, in(1s)));
    CHECK(text_of(m.body) == "Accept");
    auto pipe = f.server_channel->release_socket();
    rest = co_await read_to_eof(pipe);
  });
  test::run_for(f.ioc, test_limit);
  CHECK(rest == raw);
}

TEST_CASE("an idle channel gives back the buffers of large frames") {
  Fixture f;
  f.connected();
  const Bytes big(max_frame_body_bytes, 1);
  std::size_t after_big = 0;
  std::size_t after_idle = 0;
  spawn(f.ioc, [&]() -> asio::awaitable<void> {
    REQUIRE(!co_await f.server_channel->send(FrameKind::data, big, in(1s)));
    Message m;
    REQUIRE(!co_await f.client_channel->receive(m, in(1s)));
    REQUIRE(!co_await f.client_channel->send(FrameKind::data, big, in(1s)));
    after_big = f.client_channel->buffer_capacity();
    CHECK(co_await f.client_channel->receive(m, in(50ms)) == errc::timeout);
    after_idle = f.client_channel->buffer_capacity();
  });
  test::run_for(f.ioc, test_limit);
  CHECK(after_big >= 2 * max_frame_body_bytes);
  CHECK(after_idle <= 2 * idle_buffer_bytes);
}
