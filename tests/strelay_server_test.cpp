// strelay::Server in this process, on 127.0.0.1, driven through real sockets, with the relay's
// clock in the test's hands (strelay/clock.hpp): the test moves the server's Clock forward and
// every timer on it is re-aimed, so 30 s of TTL pass in a moment and no assertion depends on
// how fast this machine is. Every deadline is first shown NOT to fire just before it is due,
// then to fire just after. Each server has its own clock, so the tests are independent.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/coro.hpp"
#include "common/preamble.hpp"
#include "common/protocol.hpp"
#include "strelay/server.hpp"
#include "support/relay_client.hpp"
#include "support/relay_probe.hpp"

using namespace strelay;
using namespace strelay::test;
using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace {

// A Server on its own thread, with its log captured. Settings start from the defaults, with
// handshakes unthrottled (tests open many connections from 127.0.0.1), then `tweak` applies.
class InProcessRelay {
 public:
  explicit InProcessRelay(const std::function<void(ServerSettings&)>& tweak = {},
                          unsigned threads = 2)
      : logger_(Logger::Options{.format = LogFormat::text,
                                .level = LogLevel::debug,
                                .sink = [this](std::string_view line) {
                                  std::lock_guard lock(log_mutex_);
                                  log_.append(line);
                                }}) {
    ServerSettings settings;
    settings.listen = {tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
    settings.threads = threads;
    settings.admission.rate_per_source = 1e6;
    settings.admission.burst_per_source = 1e6;
    settings.drain = 2s;
    if (tweak) tweak(settings);
    server_ = std::make_unique<Server>(identity_, settings, metrics_, logger_);
    server_->bind();
    address_ = RelayAddress{server_->local_endpoints().at(0), identity_.public_key()};
    thread_ = std::thread([this] { server_->run(); });
  }
  ~InProcessRelay() {
    server_->shutdown();
    thread_.join();
  }
  InProcessRelay(const InProcessRelay&) = delete;
  InProcessRelay& operator=(const InProcessRelay&) = delete;

  const RelayAddress& address() const { return address_; }
  Metrics& metrics() { return metrics_; }
  Server& server() { return *server_; }
  std::string log() const {
    std::lock_guard lock(log_mutex_);
    return log_;
  }
  bool logged(const std::string& text) const { return log().find(text) != std::string::npos; }

  // Moves the relay's clock forward by `by`; timers due by then fire at once.
  void advance(Clock::duration by) { server_->clock().advance(by); }

 private:
  Identity identity_ = Identity::generate();
  Metrics metrics_;
  mutable std::mutex log_mutex_;
  std::string log_;
  Logger logger_;
  std::unique_ptr<Server> server_;
  RelayAddress address_;
  std::thread thread_;
};

// Lets the relay's threads act on what just happened (a real, short wait; nothing is timed by it).
asio::awaitable<void> settle(std::chrono::milliseconds d = 150ms) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(await_tuple);
}

// The next frame of any kind, within `limit` of real time.
asio::awaitable<std::pair<std::error_code, FrameKind>> next_frame(
    Channel& channel, std::chrono::milliseconds limit = 3000ms) {
  Message message;
  const auto ec = co_await channel.receive(message, std::chrono::steady_clock::now() + limit);
  co_return std::pair{ec, message.kind};
}

// Reads frames until a close; true when it carried `reason`.
asio::awaitable<bool> closed_with(Channel& channel, CloseReason reason) {
  for (int i = 0; i < 10; ++i) {
    Message message;
    const auto ec = co_await channel.receive(message, std::chrono::steady_clock::now() + 3000ms);
    if (!ec) continue;  // a ping on the way
    co_return ec == errc::channel_closed&& message.close_reason == reason;
  }
  co_return false;
}

}  // namespace

// ---------------------------------------------------------------- the handshake deadline

TEST_CASE(
    "the handshake deadline is absolute: a client dripping bytes is closed when it passes, not "
    "before") {
  InProcessRelay relay([](ServerSettings& s) { s.handshake_timeout = 10s; });
  const auto hello = preamble_and_msg1();
  RawSocket dripper("127.0.0.2", relay.address().endpoint);
  REQUIRE(dripper.ok());
  std::size_t sent = 0;
  auto drip = [&] {
    REQUIRE(sent < hello.size());
    CHECK(dripper.send_some(std::span(hello).subspan(sent, 1)) == 1);
    ++sent;
  };
  drip();
  std::this_thread::sleep_for(100ms);
  relay.advance(8s);  // 8 s of 10 (2 s of real slack): within the deadline; a byte keeps coming
  std::this_thread::sleep_for(200ms);
  CHECK_FALSE(dripper.peer_closed());
  drip();
  std::this_thread::sleep_for(100ms);
  relay.advance(2500ms);  // 10.5 s since accept: an idle timer would have 7.5 s left
  CHECK(dripper.wait_peer_closed(3s));
  CHECK(relay.metrics().handshakes_total.get(HandshakeOutcome::timeout) == 1);
  CHECK(eventually([&] { return relay.metrics().pending_handshakes.get() == 0; }, 2s));
  CHECK(eventually([&] { return relay.metrics().connections.get() == 0; }, 2s));
  CHECK(relay.logged("event=handshake_failed"));
  CHECK(relay.logged("stage=deadline"));
}

TEST_CASE("a failed handshake's log line says at which stage it failed") {
  InProcessRelay relay;
  SUBCASE("preamble: not strelay") {
    RawSocket s("127.0.0.2", relay.address().endpoint);
    // The start of a TLS ClientHello: neither strelay nor HTTP (an HTTP request gets an HTTP
    // answer now: the WebSocket carrier shares the port).
    const std::vector<std::uint8_t> tls{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01,
                                        0xfc, 0x03, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00};
    CHECK(s.send_some(tls) == static_cast<std::int64_t>(tls.size()));
    CHECK(s.wait_peer_closed(3s));
    CHECK(eventually([&] { return relay.logged("stage=preamble"); }, 2s));
    CHECK(relay.metrics().handshakes_total.get(HandshakeOutcome::bad_magic) == 1);
  }
  SUBCASE("msg1: a small-order ephemeral key (all zero)") {
    RawSocket s("127.0.0.2", relay.address().endpoint);
    std::vector<std::uint8_t> hello(current_preamble.begin(), current_preamble.end());
    hello.push_back(0);
    hello.push_back(static_cast<std::uint8_t>(handshake_msg1_bytes));
    hello.resize(hello.size() + handshake_msg1_bytes, 0);
    CHECK(s.send_some(hello) == static_cast<std::int64_t>(hello.size()));
    CHECK(s.wait_peer_closed(3s));
    CHECK(eventually([&] { return relay.logged("stage=msg1"); }, 2s));
    CHECK(relay.logged("step=msg1"));
    CHECK(relay.metrics().handshakes_total.get(HandshakeOutcome::failed) == 1);
  }
  SUBCASE("msg3: a msg3 that does not authenticate") {
    RawSocket s("127.0.0.2", relay.address().endpoint);
    const auto hello = preamble_and_msg1();
    CHECK(s.send_some(hello) == static_cast<std::int64_t>(hello.size()));
    std::this_thread::sleep_for(200ms);  // msg2 comes back; then a msg3 of random bytes
    std::vector<std::uint8_t> msg3(2 + 200, 0x77);
    msg3[0] = 0;
    msg3[1] = 200;
    CHECK(s.send_some(msg3) == static_cast<std::int64_t>(msg3.size()));
    CHECK(s.wait_peer_closed(3s));
    CHECK(eventually([&] { return relay.logged("stage=msg3"); }, 2s));
    CHECK(relay.logged("step=msg3"));
    CHECK_FALSE(relay.logged("stage=msg1"));
    CHECK(relay.metrics().handshakes_total.get(HandshakeOutcome::failed) == 1);
  }
  SUBCASE("peer_closed: the client leaves after msg1") {
    {
      RawSocket s("127.0.0.2", relay.address().endpoint);
      const auto hello = preamble_and_msg1();
      CHECK(s.send_some(hello) == static_cast<std::int64_t>(hello.size()));
      std::this_thread::sleep_for(100ms);
    }
    CHECK(eventually([&] { return relay.logged("stage=peer_closed"); }, 2s));
    CHECK(relay.logged("step=msg3"));  // msg2 went out; the relay was waiting for msg3
  }
  CHECK_FALSE(relay.logged("stage=deadline"));
}

// ---------------------------------------------------------------- half-tunnel TTL

TEST_CASE(
    "half-tunnel TTL: a connector whose listener never accepts gets Timeout when the TTL passes, "
    "not before") {
  InProcessRelay relay([](ServerSettings& s) {
    s.pairing.half_tunnel_ttl = 30s;
    s.keepalive = 1h;  // the listener is not read during the test
    s.dead_peer = 2h;
  });
  const auto listener_id = Identity::generate();
  const auto connector_id = Identity::generate();
  run_task(
      [&]() -> asio::awaitable<void> {
        auto listener = co_await open_connection(relay.address(), listener_id, Listen{});
        REQUIRE_FALSE(listener.error);
        REQUIRE(is<ListenOk>(co_await next_message(*listener.channel)));
        auto connector = co_await open_connection(relay.address(), connector_id,
                                                  Connect{listener_id.public_key()});
        REQUIRE_FALSE(connector.error);
        auto incoming = co_await next_message(*listener.channel);
        REQUIRE(is<IncomingConnection>(incoming));
        CHECK(relay.metrics().half_tunnels.get() == 1);

        relay.advance(28s);  // 2 s of real slack before the TTL
        auto early = co_await next_message(*connector.channel, 300ms);
        CHECK(early.error == errc::timeout);  // our own wait ran out: the relay said nothing yet
        CHECK_FALSE(early.message);

        relay.advance(3s);
        auto outcome = co_await next_message(*connector.channel);
        REQUIRE(is<Refused>(outcome));
        CHECK(std::get<Refused>(*outcome.message).reason == RefuseReason::timeout);
      }(),
      20s);
  CHECK(relay.metrics().connect_outcomes_total.get(ConnectOutcome::timeout) == 1);
  CHECK(relay.metrics().half_tunnels.get() == 0);
}

// ---------------------------------------------------------------- keepalive

TEST_CASE(
    "keepalive: an idle listener is pinged after the interval; one that never answers is closed as "
    "dead_peer") {
  InProcessRelay relay([](ServerSettings& s) {
    s.keepalive = 15s;
    s.dead_peer = 45s;
  });
  run_task(
      [&]() -> asio::awaitable<void> {
        auto silent = co_await open_connection(relay.address(), Identity::generate(), Listen{});
        auto answering = co_await open_connection(relay.address(), Identity::generate(), Listen{});
        REQUIRE_FALSE(silent.error);
        REQUIRE_FALSE(answering.error);
        REQUIRE(is<ListenOk>(co_await next_message(*silent.channel)));
        REQUIRE(is<ListenOk>(co_await next_message(*answering.channel)));

        relay.advance(13s);  // before the interval: no ping yet
        auto none = co_await next_frame(*silent.channel, 300ms);
        CHECK(none.first == errc::timeout);

        relay.advance(2500ms);  // 15.5 s, past the interval: a ping for each
        auto ping = co_await next_frame(*silent.channel);
        CHECK_FALSE(ping.first);
        CHECK(ping.second == FrameKind::ping);
        // The answering listener's next_message() answers the ping with a pong as a node does;
        // it finds no control message, so its own short wait ends.
        auto quiet = co_await next_message(*answering.channel, 300ms);
        CHECK(quiet.error == errc::timeout);

        relay.advance(28s);  // 43.5 s of silence from `silent`: still not dead
        co_await settle();
        auto second =
            co_await next_frame(*silent.channel, 1000ms);  // a ping each interval of silence
        CHECK_FALSE(second.first);
        CHECK(second.second == FrameKind::ping);
        CHECK(relay.metrics().closes_total.get(CloseReason::dead_peer) == 0);
        relay.advance(2s);  // 45.5 s
        CHECK_MESSAGE(co_await closed_with(*silent.channel, CloseReason::dead_peer), relay.log());
        // The other one answered 30 s ago: it gets another ping, not a close.
        auto again = co_await next_message(*answering.channel, 300ms);
        CHECK(again.error == errc::timeout);
        CHECK(relay.metrics().closes_total.get(CloseReason::dead_peer) == 1);
        CHECK(eventually([&] { return relay.metrics().listeners.get() == 1; }, 2s));
      }(),
      20s);
}

// ---------------------------------------------------------------- tunnels: stall, half-close

TEST_CASE(
    "write stall: a tunnel whose receiver stops reading is closed as stalled when the stall time "
    "passes") {
  InProcessRelay relay([](ServerSettings& s) {
    s.tunnel.write_stall = 30s;
    s.tunnel.idle_timeout = 1h;
    s.tunnel.buffer_bytes = 65536;
    s.keepalive = 1h;
    s.dead_peer = 2h;
  });
  RawSocket connector;
  RawSocket acceptor;
  RawSocket listener;  // plain descriptors: run_task's io_context is gone once it returns
  run_task(
      [&]() -> asio::awaitable<void> {
        auto pipe = co_await make_pipe(relay.address(), Identity::generate(), Identity::generate());
        connector = RawSocket::adopt(pipe.connector.release());
        acceptor = RawSocket::adopt(pipe.acceptor.release());
        listener = RawSocket::adopt(pipe.listener.channel->release_socket().release());
      }(),
      10s);
  // Fill every buffer on the way: the connector's send buffer, the relay's pipe, the
  // acceptor's receive buffer. The relay's write to the acceptor then blocks.
  const std::vector<std::uint8_t> chunk(64 * 1024, 0x5a);
  auto last_progress = std::chrono::steady_clock::now();
  const auto give_up = last_progress + 10s;
  while (std::chrono::steady_clock::now() - last_progress < 300ms &&
         std::chrono::steady_clock::now() < give_up) {
    const auto n = connector.send_some(chunk);
    REQUIRE(n >= 0);
    if (n > 0) last_progress = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(5ms);
  }
  CHECK(relay.metrics().tunnel_buffered_bytes.get() > 0);

  relay.advance(28s);  // 2 s of real slack before the stall limit
  std::this_thread::sleep_for(200ms);
  CHECK(relay.metrics().closes_total.get(CloseReason::stalled) == 0);
  CHECK(relay.metrics().tunnels.get() == 1);

  relay.advance(3s);
  CHECK(connector.wait_peer_closed(5s));
  CHECK(acceptor.wait_peer_closed(5s));  // after the bytes already in its receive path
  CHECK(
      eventually([&] { return relay.metrics().closes_total.get(CloseReason::stalled) == 1; }, 2s));
  CHECK(relay.metrics().limit_hits_total.get(LimitReason::stalled) == 1);
  CHECK(eventually(
      [&] { return relay.logged("event=tunnel_closed") && relay.logged("reason=stalled"); }, 2s));
  CHECK(eventually([&] { return relay.metrics().tunnel_buffered_bytes.get() == 0; }, 2s));
}

TEST_CASE(
    "an idle tunnel is closed as dead_peer when the idle timeout passes on the relay's clock") {
  InProcessRelay relay([](ServerSettings& s) {
    s.tunnel.idle_timeout = 45s;
    s.keepalive = 1h;
    s.dead_peer = 2h;
  });
  run_task(
      [&]() -> asio::awaitable<void> {
        auto pipe = co_await make_pipe(relay.address(), Identity::generate(), Identity::generate());
        // The tunnel starts just after both ends got Connected: its idle time counts from then.
        CHECK(eventually([&] { return relay.metrics().tunnels.get() == 1; }, 2s));
        relay.advance(43s);
        co_await settle();
        CHECK(relay.metrics().tunnels.get() == 1);
        relay.advance(3s);
        std::array<std::uint8_t, 1> byte{};
        auto [ec, n] = co_await pipe.connector.async_read_some(asio::buffer(byte), await_tuple);
        CHECK(ec);  // EOF: the relay closed the pipe
      }(),
      10s);
  CHECK(eventually([&] { return relay.metrics().closes_total.get(CloseReason::dead_peer) == 1; },
                   2s));
}

TEST_CASE(
    "tunnels are counted by how they move bytes: splice, or copy when the pipe budget is spent") {
  for (const std::size_t pipe_fds : {SIZE_MAX, std::size_t{0}}) {
    CAPTURE(pipe_fds);
    InProcessRelay relay([pipe_fds](ServerSettings& s) { s.admission.pipe_fds_total = pipe_fds; });
    run_task(
        [&]() -> asio::awaitable<void> {
          auto pipe =
              co_await make_pipe(relay.address(), Identity::generate(), Identity::generate());
          const std::array<std::uint8_t, 3> hello{'h', 'i', '!'};
          co_await asio::async_write(pipe.connector, asio::buffer(hello), await_tuple);
          std::array<std::uint8_t, 3> got{};
          auto [ec, n] = co_await asio::async_read(pipe.acceptor, asio::buffer(got), await_tuple);
          CHECK_FALSE(ec);
          CHECK(got == hello);
        }(),
        10s);
    const bool spliced = pipe_fds != 0;
    CHECK(relay.metrics().tunnels_total.get(TunnelMode::splice) == (spliced ? 1U : 0U));
    CHECK(relay.metrics().tunnels_total.get(TunnelMode::copy) == (spliced ? 0U : 1U));
  }
}

TEST_CASE(
    "half-close through a tunnel: EOF reaches the other node, which can still send; both ends "
    "close normally") {
  InProcessRelay relay;
  run_task(
      [&]() -> asio::awaitable<void> {
        auto pipe = co_await make_pipe(relay.address(), Identity::generate(), Identity::generate());
        const std::array<std::uint8_t, 4> last{'d', 'o', 'n', 'e'};
        co_await asio::async_write(pipe.connector, asio::buffer(last), await_tuple);
        pipe.connector.shutdown(tcp::socket::shutdown_send);
        std::array<std::uint8_t, 4> got{};
        auto [e1, n1] = co_await asio::async_read(pipe.acceptor, asio::buffer(got), await_tuple);
        CHECK_FALSE(e1);
        CHECK(got == last);
        std::array<std::uint8_t, 1> more{};
        auto [e2, n2] = co_await pipe.acceptor.async_read_some(asio::buffer(more), await_tuple);
        CHECK(e2 == asio::error::eof);
        const std::vector<std::uint8_t> reply(50000, 0x33);
        auto [e3, n3] = co_await asio::async_write(pipe.acceptor, asio::buffer(reply), await_tuple);
        CHECK_FALSE(e3);
        std::vector<std::uint8_t> got_reply(reply.size());
        auto [e4, n4] =
            co_await asio::async_read(pipe.connector, asio::buffer(got_reply), await_tuple);
        CHECK_FALSE(e4);
        CHECK(got_reply == reply);
        pipe.acceptor.shutdown(tcp::socket::shutdown_send);
        auto [e5, n5] = co_await pipe.connector.async_read_some(asio::buffer(more), await_tuple);
        CHECK(e5 == asio::error::eof);
      }(),
      10s);
  CHECK(eventually([&] { return relay.metrics().closes_total.get(CloseReason::normal) == 1; }, 2s));
  CHECK(relay.metrics().bytes_relayed_total.get(TunnelDirection::to_listener) == 4);
  CHECK(relay.metrics().bytes_relayed_total.get(TunnelDirection::to_connector) == 50000);
}

// ---------------------------------------------------------------- limits at max and max + 1

TEST_CASE(
    "pending handshakes per source: the limit is admitted, one more is refused, another source is "
    "not") {
  constexpr std::size_t limit = 3;
  InProcessRelay relay([](ServerSettings& s) { s.admission.pending.per_source = limit; });
  std::vector<RawSocket> held;
  for (std::size_t i = 0; i < limit; ++i) {
    held.emplace_back("127.0.0.3", relay.address().endpoint);
    REQUIRE(held.back().ok());
  }
  CHECK(eventually(
      [&] { return relay.metrics().pending_handshakes.get() == static_cast<std::int64_t>(limit); },
      2s));
  RawSocket extra("127.0.0.3", relay.address().endpoint);
  REQUIRE(extra.ok());
  CHECK(extra.wait_peer_closed(2s));  // max + 1: closed without a word
  RawSocket other("127.0.0.4", relay.address().endpoint);
  REQUIRE(other.ok());
  std::this_thread::sleep_for(200ms);
  for (auto& s : held) CHECK_FALSE(s.peer_closed());
  CHECK_FALSE(other.peer_closed());
  CHECK(relay.metrics().limit_hits_total.get(LimitReason::pending_per_source) == 1);
  // A freed slot is usable again (pending: limit - 1 from this source, 1 from the other).
  held.pop_back();
  CHECK(eventually(
      [&] { return relay.metrics().pending_handshakes.get() == static_cast<std::int64_t>(limit); },
      2s));
  RawSocket again("127.0.0.3", relay.address().endpoint);
  std::this_thread::sleep_for(200ms);
  CHECK_FALSE(again.peer_closed());
  CHECK(relay.metrics().limit_hits_total.get(LimitReason::pending_per_source) == 1);
}

TEST_CASE("pending handshakes in total: the limit is admitted, one more is refused") {
  constexpr std::size_t limit = 4;
  InProcessRelay relay([](ServerSettings& s) { s.admission.pending_total = limit; });
  std::vector<RawSocket> held;
  for (std::size_t i = 0; i < limit; ++i) {
    held.emplace_back("127.0.0." + std::to_string(10 + i), relay.address().endpoint);
    REQUIRE(held.back().ok());
  }
  CHECK(eventually(
      [&] { return relay.metrics().pending_handshakes.get() == static_cast<std::int64_t>(limit); },
      2s));
  RawSocket extra("127.0.0.20", relay.address().endpoint);
  CHECK(extra.wait_peer_closed(2s));
  for (auto& s : held) CHECK_FALSE(s.peer_closed());
  CHECK(relay.metrics().limit_hits_total.get(LimitReason::pending_total) == 1);
}

TEST_CASE(
    "connect requests per identity: the burst is served, one more gets RateLimited, a token "
    "returns with time") {
  InProcessRelay relay([](ServerSettings& s) {
    s.pairing.connect_rate = 1.0;  // per second
    s.pairing.connect_burst = 3;
  });
  const auto node = Identity::generate();
  const auto nobody = Identity::generate().public_key();
  auto connect_once = [&]() -> asio::awaitable<std::optional<RefuseReason>> {
    auto c = co_await open_connection(relay.address(), node, Connect{nobody});
    REQUIRE_FALSE(c.error);
    auto r = co_await next_message(*c.channel);
    REQUIRE(is<Refused>(r));
    co_return std::get<Refused>(*r.message).reason;
  };
  run_task(
      [&]() -> asio::awaitable<void> {
        for (int i = 0; i < 3; ++i)
          CHECK(co_await connect_once() == RefuseReason::not_found);   // at max
        CHECK(co_await connect_once() == RefuseReason::rate_limited);  // max + 1
        // Another identity has its own bucket.
        auto other =
            co_await open_connection(relay.address(), Identity::generate(), Connect{nobody});
        REQUIRE_FALSE(other.error);
        auto r = co_await next_message(*other.channel);
        REQUIRE(is<Refused>(r));
        CHECK(std::get<Refused>(*r.message).reason == RefuseReason::not_found);
        relay.advance(1100ms);  // one token back at 1 per second, and only one
        CHECK(co_await connect_once() == RefuseReason::not_found);
        CHECK(co_await connect_once() == RefuseReason::rate_limited);
      }(),
      20s);
  CHECK(relay.metrics().limit_hits_total.get(LimitReason::connect_rate) == 2);
  CHECK(relay.metrics().connect_outcomes_total.get(ConnectOutcome::rate_limited) == 2);
}

TEST_CASE(
    "connections in total: the cap is admitted, one more is refused, and authenticated work goes "
    "on") {
  constexpr std::size_t cap = 5;
  InProcessRelay relay([](ServerSettings& s) { s.admission.connections_total = cap; });
  run_task(
      [&]() -> asio::awaitable<void> {
        std::vector<RelayConnection> listeners;
        for (std::size_t i = 0; i < cap; ++i) {
          listeners.push_back(
              co_await open_connection(relay.address(), Identity::generate(), Listen{}));
          REQUIRE_FALSE(listeners.back().error);
          REQUIRE(is<ListenOk>(co_await next_message(*listeners.back().channel)));
        }
        auto refused =
            co_await open_connection(relay.address(), Identity::generate(), Listen{}, 2000ms);
        CHECK(refused.error);  // max + 1: closed before the handshake
        listeners.pop_back();
        CHECK(eventually(
            [&] { return relay.metrics().connections.get() == static_cast<std::int64_t>(cap) - 1; },
            2s));
        auto admitted = co_await open_connection(relay.address(), Identity::generate(), Listen{});
        REQUIRE_FALSE(admitted.error);
        CHECK(is<ListenOk>(co_await next_message(*admitted.channel)));
      }(),
      20s);
  CHECK(relay.metrics().limit_hits_total.get(LimitReason::connections_total) == 1);
}

// ---------------------------------------------------------------- the descriptor budget

TEST_CASE(
    "tunnel pipes take descriptors only from the budget: without room a tunnel copies, and still "
    "carries bytes") {
  InProcessRelay relay([](ServerSettings& s) {
    s.admission.pipe_fds_total = tunnel_pipe_fds;
  });  // one tunnel's worth
  run_task(
      [&]() -> asio::awaitable<void> {
        auto first =
            co_await make_pipe(relay.address(), Identity::generate(), Identity::generate());
        auto second =
            co_await make_pipe(relay.address(), Identity::generate(), Identity::generate());
        for (auto* pipe : {&first, &second}) {
          const std::array<std::uint8_t, 3> hi{'h', 'i', '!'};
          co_await asio::async_write(pipe->connector, asio::buffer(hi), await_tuple);
          std::array<std::uint8_t, 3> got{};
          auto [ec, n] = co_await asio::async_read(pipe->acceptor, asio::buffer(got), await_tuple);
          CHECK_FALSE(ec);
          CHECK(got == hi);
        }
      }(),
      20s);
  CHECK(eventually([&] { return relay.metrics().tunnels.get() == 0; }, 2s));
  const auto log = relay.log();
  CHECK(log.find("spliced=true") != std::string::npos);
  CHECK(log.find("spliced=false") != std::string::npos);
}
