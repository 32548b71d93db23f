// End-to-end tests of the real strelay binary on 127.0.0.1 with in-process test nodes.
// Each test that can ends with WatchedRelay::check_clean(): a canary pair that ping-pongs all
// along saw no failure, the gauges are back to baseline, and the relay's seed is not logged.
#include <doctest/doctest.h>
#include <signal.h>
#include <sodium.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/coro.hpp"
#include "support/loopback.hpp"
#include "support/relay_client.hpp"
#include "support/relay_probe.hpp"
#include "support/watched_relay.hpp"

using namespace strelay;
using namespace strelay::test;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;
namespace {

RefuseReason refusal(const Received& r) {
  REQUIRE(is<Refused>(r));
  return std::get<Refused>(*r.message).reason;
}

std::vector<std::string> flags(std::vector<std::string> extra) {
  extra.insert(extra.end(), fast_handshakes.begin(), fast_handshakes.end());
  extra.insert(extra.end(), many_nodes_per_source.begin(), many_nodes_per_source.end());
  return extra;
}

// Streams `total` pseudo-random bytes (from `seed`) into `socket`, hashing them, then shuts
// down the sending side.
asio::awaitable<void> send_stream(tcp::socket& socket, std::uint64_t total, std::uint64_t seed,
                                  std::array<std::uint8_t, crypto_hash_sha256_BYTES>& digest) {
  crypto_hash_sha256_state state;
  crypto_hash_sha256_init(&state);
  std::vector<std::uint8_t> chunk(256 * 1024);
  std::uint64_t x = seed;
  for (std::uint64_t sent = 0; sent < total;) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(chunk.size(), total - sent));
    for (std::size_t i = 0; i + 8 <= n; i += 8) {  // splitmix64
      x += 0x9E3779B97F4A7C15ull;
      std::uint64_t z = x;
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      z ^= z >> 31;
      std::memcpy(chunk.data() + i, &z, 8);
    }
    crypto_hash_sha256_update(&state, chunk.data(), n);
    auto [ec, written] =
        co_await asio::async_write(socket, asio::buffer(chunk.data(), n), await_tuple);
    REQUIRE_FALSE(ec);
    sent += n;
  }
  socket.shutdown(tcp::socket::shutdown_send);
  crypto_hash_sha256_final(&state, digest.data());
}

// Reads until EOF, hashing; returns the byte count.
asio::awaitable<void> receive_stream(tcp::socket& socket, std::uint64_t& total,
                                     std::array<std::uint8_t, crypto_hash_sha256_BYTES>& digest) {
  crypto_hash_sha256_state state;
  crypto_hash_sha256_init(&state);
  std::vector<std::uint8_t> buffer(256 * 1024);
  for (;;) {
    auto [ec, n] = co_await socket.async_read_some(asio::buffer(buffer), await_tuple);
    if (n > 0) crypto_hash_sha256_update(&state, buffer.data(), n);
    total += n;
    if (ec) {
      CHECK(ec == asio::error::eof);
      break;
    }
  }
  crypto_hash_sha256_final(&state, digest.data());
}

std::string slurp(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

TEST_CASE("listen, connect and accept pair two nodes, and bytes flow both ways through the pipe") {
  RelayProcess relay;
  const auto listener = Identity::generate();
  const auto connector = Identity::generate();
  run_task(
      [&]() -> asio::awaitable<void> {
        auto pair = co_await make_pipe(relay.address(), listener, connector);
        const auto up = pattern_bytes(4 * 1024 * 1024, 7);
        const auto down = pattern_bytes(1024 * 1024, 8);
        co_await asio::async_write(pair.connector, asio::buffer(up), await_tuple);
        pair.connector.shutdown(tcp::socket::shutdown_send);
        std::vector<std::uint8_t> got_up(up.size());
        auto [e1, n1] = co_await asio::async_read(pair.acceptor, asio::buffer(got_up), await_tuple);
        CHECK_FALSE(e1);
        CHECK(got_up == up);
        co_await asio::async_write(pair.acceptor, asio::buffer(down), await_tuple);
        pair.acceptor.shutdown(tcp::socket::shutdown_send);
        std::vector<std::uint8_t> got_down(down.size());
        auto [e2, n2] =
            co_await asio::async_read(pair.connector, asio::buffer(got_down), await_tuple);
        CHECK_FALSE(e2);
        CHECK(got_down == down);
      }(),
      20s);
}

TEST_CASE("100 MiB each way through one pipe, at once, arrive with matching SHA-256") {
  WatchedRelay relay;
  constexpr std::uint64_t size = 100ull * 1024 * 1024;
  std::array<std::uint8_t, crypto_hash_sha256_BYTES> sent_up{}, got_up{}, sent_down{}, got_down{};
  std::uint64_t n_up = 0;
  std::uint64_t n_down = 0;
  run_task(
      [&]() -> asio::awaitable<void> {
        auto pair = co_await make_pipe(relay.address(), Identity::generate(), Identity::generate());
        co_await (send_stream(pair.connector, size, 1, sent_up) &&
                  receive_stream(pair.acceptor, n_up, got_up) &&
                  send_stream(pair.acceptor, size, 2, sent_down) &&
                  receive_stream(pair.connector, n_down, got_down));
      }(),
      180s);
  CHECK(n_up == size);
  CHECK(n_down == size);
  CHECK(got_up == sent_up);
  CHECK(got_down == sent_down);
  CHECK(sent_up != sent_down);
  // Plus the canary's few bytes each way.
  for (const char* direction : {"to_listener", "to_connector"}) {
    const auto relayed = relay.probe().counter("relayed_bytes_total", direction);
    CHECK(relayed >= size);
    CHECK(relayed < size + 1024 * 1024);
  }
  relay.check_clean(2s);
}

TEST_CASE("a listener's RejectConnection gives the connector Refused{rejected}, then a close") {
  WatchedRelay relay;
  const auto listener = Identity::generate();
  const auto connector = Identity::generate();
  run_task(
      [&]() -> asio::awaitable<void> {
        auto l = co_await open_connection(relay.address(), listener, Listen{});
        REQUIRE(is<ListenOk>(co_await next_message(*l.channel)));
        auto c =
            co_await open_connection(relay.address(), connector, Connect{listener.public_key()});
        REQUIRE_FALSE(c.error);
        auto incoming = co_await next_message(*l.channel);
        REQUIRE(is<IncomingConnection>(incoming));
        REQUIRE_FALSE(co_await send_request(*l.channel, RejectConnection{connector.public_key()}));
        CHECK(refusal(co_await next_message(*c.channel)) == RefuseReason::rejected);
        auto end = co_await next_message(*c.channel);
        CHECK(end.error == errc::channel_closed);
        CHECK(end.close_reason == CloseReason::normal);
        // The listener stays.
        auto quiet = co_await next_message(*l.channel, 300ms);
        CHECK(quiet.error == errc::timeout);
      }(),
      20s);
  CHECK(relay.probe().counter("connect_outcomes_total", "rejected") == 1);
  relay.check_clean(2s);
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

TEST_CASE(
    "a listener dying while a connect is pending gives the connector Refused{peer_gone} within 1 "
    "s") {
  bool reset = false;
  SUBCASE("the listener's connection ends with a FIN") {
    reset = false;
  }
  SUBCASE("the listener's connection ends with a reset") {
    reset = true;
  }
  WatchedRelay relay;
  const auto listener = Identity::generate();
  const auto connector = Identity::generate();
  std::chrono::steady_clock::duration took{};
  run_task(
      [&]() -> asio::awaitable<void> {
        auto l = co_await open_connection(relay.address(), listener, Listen{});
        REQUIRE(is<ListenOk>(co_await next_message(*l.channel)));
        auto c =
            co_await open_connection(relay.address(), connector, Connect{listener.public_key()});
        REQUIRE(is<IncomingConnection>(co_await next_message(*l.channel)));
        const auto start = std::chrono::steady_clock::now();
        if (reset) {
          auto socket = l.channel->release_socket();
          socket.set_option(asio::socket_base::linger(true, 0));
          socket.close();
        } else {
          l.channel->close();
        }
        auto outcome = co_await next_message(*c.channel, 5000ms);
        took = std::chrono::steady_clock::now() - start;
        CHECK(refusal(outcome) == RefuseReason::peer_gone);
        auto end = co_await next_message(*c.channel);
        CHECK(end.error == errc::channel_closed);
        CHECK(end.close_reason == CloseReason::peer_gone);
      }(),
      20s);
  CHECK(took < 1s);
  relay.check_clean(2s);
}

TEST_CASE(
    "SIGTERM drains: every session gets Close{shutdown}, tunnels are closed, strelay exits 0 in "
    "time") {
  constexpr auto drain = 2s;
  RelayProcess relay({"--drain-timeout", "2"});
  const auto listener = Identity::generate();
  auto start = std::chrono::steady_clock::now();
  run_task(
      [&]() -> asio::awaitable<void> {
        auto pair = co_await make_pipe(relay.address(), Identity::generate(), Identity::generate());
        auto l = co_await open_connection(relay.address(), listener, Listen{});
        REQUIRE(is<ListenOk>(co_await next_message(*l.channel)));
        auto c = co_await open_connection(relay.address(), Identity::generate(),
                                          Connect{listener.public_key()});
        REQUIRE(is<IncomingConnection>(co_await next_message(*l.channel)));
        start = std::chrono::steady_clock::now();
        relay.signal(SIGTERM);
        for (auto* channel : {&*l.channel, &*pair.listener.channel}) {
          auto end = co_await next_message(*channel);
          CHECK(end.error == errc::channel_closed);
          CHECK(end.close_reason == CloseReason::shutdown);
        }
        // The pending connector learns an outcome: Close{shutdown}, or its listener's going.
        auto outcome = co_await next_message(*c.channel);
        if (outcome.message) {
          CHECK(refusal(outcome) == RefuseReason::peer_gone);
          outcome = co_await next_message(*c.channel);
        }
        CHECK(outcome.error == errc::channel_closed);
        // Both ends of the pipe see it close (EOF or reset).
        std::array<std::uint8_t, 1> byte{};
        auto [e1, n1] = co_await pair.connector.async_read_some(asio::buffer(byte), await_tuple);
        auto [e2, n2] = co_await pair.acceptor.async_read_some(asio::buffer(byte), await_tuple);
        CHECK(e1);
        CHECK(e2);
        CHECK(n1 == 0);
        CHECK(n2 == 0);
      }(),
      10s);
  CHECK(relay.wait_exit(drain + 3s) == 0);
  CHECK(std::chrono::steady_clock::now() - start < drain + 1s);
  check_no_secret_logged(relay.dir() / "relay.ident", relay.log());
}

TEST_CASE("SIGHUP reloads the limits from the --config file") {
  char pattern[] = "/tmp/strelay-conf-XXXXXX";
  REQUIRE(::mkdtemp(pattern) != nullptr);
  const std::filesystem::path dir = pattern;
  const auto config = dir / "strelay.toml";
  std::ofstream(config) << "connect-burst = 2\nconnect-rate = 0.001\n";
  WatchedRelay relay(flags({"--config", config.string()}));
  const auto absent = Identity::generate().public_key();
  auto connects = [&](const Identity& node, int n) {
    std::vector<RefuseReason> out;
    run_task(
        [&]() -> asio::awaitable<void> {
          for (int i = 0; i < n; ++i) {
            auto c = co_await open_connection(relay.address(), node, Connect{absent});
            out.push_back(refusal(co_await next_message(*c.channel)));
          }
        }(),
        20s);
    return out;
  };
  using R = RefuseReason;
  CHECK(connects(Identity::generate(), 3) ==
        std::vector<R>{R::not_found, R::not_found, R::rate_limited});
  std::ofstream(config, std::ios::trunc) << "connect-burst = 4\nconnect-rate = 0.001\n";
  relay.process().signal(SIGHUP);
  REQUIRE(eventually([&] { return relay.probe().counter("reloads_total", "ok") == 1; }, 5s));
  CHECK(relay.probe().status().at("limits").at("connect_burst") == 4);
  CHECK(connects(Identity::generate(), 5) ==
        std::vector<R>{R::not_found, R::not_found, R::not_found, R::not_found, R::rate_limited});
  // A broken file is refused and the limits in force stay.
  std::ofstream(config, std::ios::trunc) << "connect-burst = many\n";
  relay.process().signal(SIGHUP);
  REQUIRE(eventually([&] { return relay.probe().counter("reloads_total", "failed") == 1; }, 5s));
  CHECK(relay.probe().status().at("limits").at("connect_burst") == 4);
  relay.check_clean(2s);
  std::filesystem::remove_all(dir);
}

TEST_CASE(
    "SIGHUP reloads the allowlist: the newly listed key may listen, the dropped ones are told") {
  char pattern[] = "/tmp/strelay-allow-XXXXXX";
  REQUIRE(::mkdtemp(pattern) != nullptr);
  const std::filesystem::path dir = pattern;
  const auto allow = dir / "allow.txt";
  // a: a listener that will be dropped; b: not listed until the reload; c: a connector pending
  // to e, dropped by the reload; e: a listener that stays.
  const auto a = Identity::generate();
  const auto b = Identity::generate();
  const auto c = Identity::generate();
  const auto e = Identity::generate();
  std::ofstream(allow) << a.public_key().to_base64url() << "  node-a\n"
                       << c.public_key().to_base64url() << "\n"
                       << e.public_key().to_base64url() << "  # stays\n";
  WatchedRelay relay(flags({"--allow", allow.string()}),
                     /*with_canary=*/false);  // a canary is not listed
  run_task(
      [&]() -> asio::awaitable<void> {
        auto la = co_await open_connection(relay.address(), a, Listen{});
        REQUIRE(is<ListenOk>(co_await next_message(*la.channel)));
        auto le = co_await open_connection(relay.address(), e, Listen{});
        REQUIRE(is<ListenOk>(co_await next_message(*le.channel)));
        auto ce = co_await open_connection(relay.address(), c, Connect{e.public_key()});
        REQUIRE(is<IncomingConnection>(co_await next_message(*le.channel)));
        auto lb = co_await open_connection(relay.address(), b, Listen{});
        REQUIRE_FALSE(lb.error);
        CHECK(refusal(co_await next_message(*lb.channel)) == RefuseReason::not_allowed);
        auto lb_end = co_await next_message(*lb.channel);
        CHECK(lb_end.close_reason == CloseReason::not_allowed);

        std::ofstream(allow, std::ios::trunc) << "# a and c were removed\n"
                                              << b.public_key().to_base64url() << "\n"
                                              << e.public_key().to_base64url() << "\n";
        relay.process().signal(SIGHUP);
        auto end = co_await next_message(*la.channel);
        CHECK(end.error == errc::channel_closed);
        CHECK(end.close_reason == CloseReason::not_allowed);
        CHECK(refusal(co_await next_message(*ce.channel)) == RefuseReason::not_allowed);

        auto lb2 = co_await open_connection(relay.address(), b, Listen{});
        REQUIRE_FALSE(lb2.error);
        CHECK(is<ListenOk>(co_await next_message(*lb2.channel)));
        auto quiet = co_await next_message(*le.channel, 300ms);  // e still listens
        CHECK(quiet.error == errc::timeout);
      }(),
      20s);
  CHECK(relay.probe().counter("reloads_total", "ok") == 1);
  CHECK(relay.probe().gauge("allowlist_keys") == 2);
  relay.check_clean(2s);
  std::filesystem::remove_all(dir);
}

TEST_CASE("the HTTP endpoint answers /metrics, /healthz, /status and the status page") {
  WatchedRelay relay;
  const auto metrics = relay.probe().get("/metrics");
  REQUIRE(metrics);
  CHECK(metrics->status == 200);
  CHECK(metrics->headers.find("text/plain") != std::string::npos);
  for (const char* name :
       {"strelay_connections 3", "strelay_listeners 1", "strelay_tunnels 1",
        "strelay_pending_handshakes 0", "strelay_half_tunnels 0", "process_open_fds ",
        "strelay_handshakes_total{outcome=\"ok\"} ", "strelay_limit_hits_total{reason=",
        "strelay_closes_total{reason=", "strelay_relayed_bytes_total{direction=\"to_listener\"} ",
        "# TYPE strelay_handshake_duration_seconds histogram",
        "strelay_handshake_duration_seconds_bucket{le=\"+Inf\"} ",
        "strelay_tunnel_setup_duration_seconds_count ", "process_cpu_seconds_total ",
        "strelay_accept_rate ", "# TYPE strelay_accepts_total counter"}) {
    CHECK_MESSAGE(metrics->body.find(name) != std::string::npos, name);
  }
  const auto health = relay.probe().get("/healthz");
  REQUIRE(health);
  CHECK(health->status == 200);
  CHECK(health->body == "ok\n");
  const auto page = relay.probe().get("/");
  REQUIRE(page);
  CHECK(page->status == 200);
  CHECK(page->body.find("<html") != std::string::npos);
  CHECK(relay.probe().status().at("public_key") == relay.address().key.to_base64url());
  // The canary pair's three handshakes and its tunnel's set-up were timed.
  const auto histograms = relay.probe().status().at("histograms");
  CHECK(histograms.at("handshake_duration_seconds").at("count").get<std::uint64_t>() >= 3);
  CHECK(histograms.at("tunnel_setup_duration_seconds").at("count").get<std::uint64_t>() >= 1);
  CHECK(histograms.at("tunnel_setup_duration_seconds").at("sum_seconds").get<double>() > 0);
  const auto missing = relay.probe().get("/nothing-here");
  REQUIRE(missing);
  CHECK(missing->status == 404);
  relay.check_clean(2s);
}

TEST_CASE(
    "--public-address prints a relay ticket that stmgr show reads back with the relay's key") {
  RelayProcess relay({"--public-address", "relay.example.org:4567"});
  std::string out;
  REQUIRE(eventually(
      [&] {
        out = slurp(relay.dir() / "stdout.log");
        return out.find('}') != std::string::npos;
      },
      5s));
  const auto ticket = out.substr(out.find('{'), out.find('}') - out.find('{') + 1);
  const auto file = relay.dir() / "printed.relay";
  std::ofstream(file) << ticket << "\n";
  const std::string command =
      std::string(STRELAY_BIN_DIR) + "/stmgr show " + file.string() + " 2>&1";
  std::string shown;
  FILE* pipe = ::popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buf[512];
  while (std::fgets(buf, sizeof buf, pipe) != nullptr) shown += buf;
  CHECK(::pclose(pipe) == 0);
  CHECK(shown.find("kind: relay ticket") != std::string::npos);
  CHECK(shown.find("public key: " + relay.address().key.to_base64url() + "\n") !=
        std::string::npos);
  CHECK(shown.find("address: relay.example.org:4567") != std::string::npos);
  // The start-up line carries the same ticket.
  CHECK(relay.log().find(relay.address().key.to_base64url()) != std::string::npos);
  check_no_secret_logged(relay.dir() / "relay.ident", relay.log() + out);
}

TEST_CASE(
    "a second Listen for one key wins, the first gets Close{replaced}, and 100 alternations leak "
    "nothing") {
  WatchedRelay relay(flags({}));
  const auto key = Identity::generate();
  const auto before = relay.probe().counter("replaced_total");
  run_task(
      [&]() -> asio::awaitable<void> {
        auto current = co_await open_connection(relay.address(), key, Listen{});
        REQUIRE(is<ListenOk>(co_await next_message(*current.channel)));
        for (int i = 0; i < 100; ++i) {
          auto next = co_await open_connection(relay.address(), key, Listen{});
          REQUIRE_FALSE(next.error);
          REQUIRE(is<ListenOk>(co_await next_message(*next.channel)));
          auto end = co_await next_message(*current.channel);
          REQUIRE(end.error == errc::channel_closed);
          REQUIRE(end.close_reason == CloseReason::replaced);
          current = std::move(next);
        }
        Gauges now;
        const auto one_more = [&] {
          Gauges g = relay.baseline();
          g.connections += 1;
          g.listeners += 1;
          g.open_fds += 1;
          return g;
        }();
        CHECK_MESSAGE(relay.probe().wait_for_gauges(one_more, 3s, now), to_string(now));
        // The survivor still listens: a connect reaches it.
        const auto connector = Identity::generate();
        auto c = co_await open_connection(relay.address(), connector, Connect{key.public_key()});
        auto incoming = co_await next_message(*current.channel);
        REQUIRE(is<IncomingConnection>(incoming));
      }(),
      60s);
  CHECK(relay.probe().counter("replaced_total") - before == 100);
  relay.check_clean(2s);
}

TEST_CASE("connect to self is allowed: the same identity listens, connects and accepts") {
  WatchedRelay relay;
  const auto self = Identity::generate();
  run_task(
      [&]() -> asio::awaitable<void> {
        auto pair = co_await make_pipe(relay.address(), self, self);
        const std::array<std::uint8_t, 4> hello{1, 2, 3, 4};
        co_await asio::async_write(pair.connector, asio::buffer(hello), await_tuple);
        std::array<std::uint8_t, 4> got{};
        auto [ec, n] = co_await asio::async_read(pair.acceptor, asio::buffer(got), await_tuple);
        CHECK_FALSE(ec);
        CHECK(got == hello);
      }(),
      20s);
  relay.check_clean(2s);
}

TEST_CASE("/status and the page list an open tunnel with its keys, age, bytes and rate") {
  WatchedRelay relay;
  const auto listener = Identity::generate();
  const auto connector = Identity::generate();
  constexpr std::size_t up_size = 1024 * 1024, down_size = 256 * 1024;
  run_task(
      [&]() -> asio::awaitable<void> {
        auto pair = co_await make_pipe(relay.address(), listener, connector);
        const auto up = pattern_bytes(up_size, 3);
        const auto down = pattern_bytes(down_size, 4);
        std::vector<std::uint8_t> got_up(up.size()), got_down(down.size());
        co_await asio::async_write(pair.connector, asio::buffer(up), await_tuple);
        co_await asio::async_read(pair.acceptor, asio::buffer(got_up), await_tuple);
        co_await asio::async_write(pair.acceptor, asio::buffer(down), await_tuple);
        co_await asio::async_read(pair.connector, asio::buffer(got_down), await_tuple);
        CHECK(got_up == up);
        std::this_thread::sleep_for(1100ms);  // the first look takes a rate over >= 1 s
        // Still open: the pipe is listed, beside the canary's, busiest first.
        const auto tunnels = relay.probe().status().at("open_tunnels");
        REQUIRE(tunnels.size() == 2);
        const auto& t = tunnels.at(0);
        CHECK(t.at("connector") == connector.public_key().fingerprint());
        CHECK(t.at("listener") == listener.public_key().fingerprint());
        CHECK(t.at("bytes_to_listener") == up_size);
        CHECK(t.at("bytes_to_connector") == down_size);
        CHECK(t.at("age_seconds").get<std::int64_t>() >= 1);
        CHECK(t.at("bytes_per_second_to_listener").get<double>() > 0);
        CHECK(t.at("bytes_per_second_to_listener").get<double>() <= static_cast<double>(up_size));
        const auto page = relay.probe().get("/");
        REQUIRE(page);
        CHECK(page->body.find(connector.public_key().fingerprint() + " &rarr; " +
                              listener.public_key().fingerprint()) != std::string::npos);
      }(),
      30s);
  relay.check_clean(2s);
}
