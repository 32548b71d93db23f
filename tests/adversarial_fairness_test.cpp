// Adversarial suite, issue 14 ("fair under attack"), against the real strelay binary: the
// availability attacks of the security review, each rebuilt as a named case, and every new
// limit at its max and max+1. Each test ends with WatchedRelay::check_clean() (canary, gauges
// and fds, clean exit without sanitizer reports, no secret logged).
//
// Sources: 127.0.0.0/8 gives one address per "source"; the attackers use 127.1.S.1 and
// 127.2.S.1 (each address its own /24 too), honest nodes 127.200.0.x and 127.250.0.x, the
// canary 127.0.0.9. IPv6 prefixes (/64 in /56 in /48) cannot be had on loopback beyond ::1:
// they are tested in sources_test and limits_test.
#include <doctest/doctest.h>
#include <signal.h>
#include <stdlib.h>

#include <atomic>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/write.hpp>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <thread>

#include "common/coro.hpp"
#include "support/hostile_client.hpp"
#include "support/relay_probe.hpp"
#include "support/watched_relay.hpp"

using namespace strelay;
using namespace strelay::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

std::optional<RefuseReason> refusal(const HostileClient::Reply& r) {
  if (!is<Refused>(r)) return std::nullopt;
  return std::get<Refused>(*r.message).reason;
}

std::string address(int a, int b, int c) {
  return "127." + std::to_string(a) + "." + std::to_string(b) + "." + std::to_string(c);
}

// An honest node from `source`: handshake and Listen; true when ListenOk came within `limit`
// (the 2 s) counted from the TCP connect.
bool honest_listen(const RelayAddress& relay, const std::string& source,
                   std::chrono::milliseconds limit) {
  const auto start = Clock::now();
  HostileClient node(relay, {}, source);
  if (!node.ok() || !node.handshake(Listen{}, limit)) return false;
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(limit - (Clock::now() - start));
  if (left <= 0ms) return false;
  const auto reply = node.next_message(left);
  node.close();
  return is<ListenOk>(reply);
}

// Opens Listens with fresh identities from `source`, keeping each open; stops at `count` or
// at the first that is not answered ListenOk. Returns the clients (open, listening).
// An attempt refused (the handshake rate, a cap) is retried after 50 ms, up to 3 x `count`
// attempts in all.
std::vector<std::unique_ptr<HostileClient>> listeners_from(const RelayAddress& relay,
                                                           const std::string& source, int count,
                                                           int* refused = nullptr) {
  std::vector<std::unique_ptr<HostileClient>> out;
  for (int attempt = 0; attempt < 3 * count && static_cast<int>(out.size()) < count; ++attempt) {
    auto c = std::make_unique<HostileClient>(relay, Hooks{}, source);
    if (!c->ok() || !c->handshake(Listen{}, 3s)) {
      if (refused != nullptr) ++*refused;
      std::this_thread::sleep_for(50ms);
      continue;
    }
    const auto r = c->next_message(3s);
    if (!is<ListenOk>(r)) {
      if (refused != nullptr) ++*refused;
      std::this_thread::sleep_for(50ms);
      continue;
    }
    c->release_identity();
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------- the two attacks

TEST_CASE(
    "Fair share, pending handshakes (issue 14.1): 130 sources x 8 silent sockets re-opened as they "
    "close; honest Listens from fresh addresses and the canary succeed within 2 s") {
  raise_test_nofile_limit();
  WatchedRelay relay;  // the default limits: 1,024 pending, 8 per source, 10 s deadline
  std::vector<std::string> sources;
  for (int s = 0; s < 130; ++s) sources.push_back(address(1, s, 1));
  std::atomic<bool> stop{false};
  std::atomic<int> opened{0};
  std::atomic<std::int64_t> most_pending{0};
  std::thread attacker([&] {
    std::vector<RawSocket> sockets(sources.size() * 8);
    const auto until = Clock::now() + 30s;  // bounded even if the test body stalls
    while (!stop && Clock::now() < until) {
      for (std::size_t i = 0; i < sockets.size() && !stop; ++i) {
        if (sockets[i].ok() && !sockets[i].peer_closed()) continue;
        sockets[i] =
            RawSocket(sources[i % sources.size()], relay.address().endpoint);  // re-opened at once
        ++opened;
      }
      std::this_thread::sleep_for(50ms);
    }
  });
  // The table fills up first.
  REQUIRE(eventually(
      [&] {
        const auto pending = relay.probe().gauge("pending_handshakes");
        most_pending = std::max<std::int64_t>(most_pending, pending);
        return pending >= 1000;
      },
      20s));
  for (int k = 1; k <= 3; ++k) {
    CAPTURE(k);
    CHECK(honest_listen(relay.address(), address(200, 0, k), 2s));
    std::this_thread::sleep_for(1s);
  }
  // Fair share made the room (an honest node may also find a slot an attacker just lost).
  CHECK(relay.probe().counter("limit_hits_total", "pending_evicted") >= 1);
  CHECK(relay.canary()->round_trips(2, 2000ms));
  stop = true;
  attacker.join();
  MESSAGE("silent sockets opened: " << opened.load() << ", pending at most "
                                    << most_pending.load());
  relay.check_clean(12s);
}

TEST_CASE(
    "Fair share, the connection table (issue 14.2): 40 addresses fill it with Listens of fresh "
    "identities; 3 of 3 honest nodes from untouched addresses get ListenOk within 2 s") {
  raise_test_nofile_limit();
  // The table is 1,000 here so 40 addresses can fill it in a bounded test (the issue filled
  // 16,000 in 21 s); every per-source limit is at its default.
  WatchedRelay relay({"--max-connections", "1000"});
  std::mutex mutex;
  std::vector<std::unique_ptr<HostileClient>> attackers;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int s = t; s < 40; s += 8) {
        auto mine = listeners_from(relay.address(), address(2, s, 1), 40);
        std::lock_guard lock(mutex);
        for (auto& c : mine) attackers.push_back(std::move(c));
      }
    });
  }
  for (auto& th : threads) th.join();
  MESSAGE("attacking listeners admitted: " << attackers.size());
  CHECK(relay.probe().gauge("connections") >= 995);  // the table is full (the canary holds 3)
  for (int k = 1; k <= 3; ++k) {
    CAPTURE(k);
    CHECK(honest_listen(relay.address(), address(250, 0, k), 2s));
  }
  CHECK(relay.probe().counter("limit_hits_total", "connection_evicted") >= 3);
  CHECK(relay.canary()->round_trips(2, 2000ms));
  // /status names the heaviest sources by prefix, with counts and no keys.
  const auto status = relay.probe().status();
  REQUIRE(status["heaviest_sources"].is_array());
  REQUIRE(!status["heaviest_sources"].empty());
  CHECK(status["heaviest_sources"][0]["prefix"].get<std::string>().starts_with("127.2."));
  CHECK(status["heaviest_sources"][0]["connections"].get<std::uint64_t>() >= 20);
  attackers.clear();
  // TODO(reliability): about one in 1,400 attacking listeners outlives its client's close here
  // and is only found by the keepalive (dead peer, 45 s); the cause is not yet known.
  relay.check_clean(47s);
}

// ---------------------------------------------------------------- per-source limits at max and
// max+1

TEST_CASE(
    "Listeners per source: the 5th Listen from one address is admitted, the 6th refused with "
    "Overloaded and counted") {
  WatchedRelay relay(adversarial_flags({"--max-listeners-per-source", "5"}));
  auto five = listeners_from(relay.address(), "127.3.0.1", 5);
  CHECK(five.size() == 5);
  HostileClient sixth(relay.address(), {}, "127.3.0.1");
  REQUIRE(sixth.handshake(Listen{}));
  CHECK(refusal(sixth.next_message()) == RefuseReason::overloaded);
  CHECK(sixth.wait_closed(2s));
  CHECK(relay.probe().counter("limit_hits_total", "listeners_per_source") == 1);
  // Another address is not touched, and a node re-listening with its key replaces itself.
  CHECK(listeners_from(relay.address(), "127.3.0.2", 1).size() == 1);
  five.clear();
  CHECK(listeners_from(relay.address(), "127.3.0.1", 1).size() == 1);
  relay.check_clean(3s);
}

TEST_CASE(
    "Connections per source: 4 open connections from one address are admitted, the 5th is closed "
    "at once and counted; authenticated ones count too") {
  WatchedRelay relay(adversarial_flags({"--max-connections-per-source", "4"}));
  auto listeners = listeners_from(relay.address(), "127.3.1.1", 2);  // authenticated
  REQUIRE(listeners.size() == 2);
  std::vector<RawSocket> silent;
  for (int i = 0; i < 2; ++i)
    silent.emplace_back("127.3.1.1", relay.address().endpoint);  // handshaking
  REQUIRE(eventually(
      [&] {
        return relay.probe().gauge("pending_handshakes") == relay.baseline().pending_handshakes + 2;
      },
      5s));
  RawSocket fifth("127.3.1.1", relay.address().endpoint);
  CHECK(fifth.wait_peer_closed(2s));
  CHECK(fifth.received() == 0);
  CHECK(relay.probe().counter("limit_hits_total", "connections_per_source") == 1);
  RawSocket other("127.3.1.2", relay.address().endpoint);  // another source is untouched
  std::this_thread::sleep_for(300ms);
  CHECK_FALSE(other.peer_closed());
  silent.clear();
  listeners.clear();
  other.close();
  relay.check_clean(3s);
}

TEST_CASE(
    "Pending handshakes per prefix: with --ipv4-prefix 24, 12 from one /24 are admitted over many "
    "addresses, the 13th refused; the next /24 is untouched") {
  WatchedRelay relay(adversarial_flags(
      {"--ipv4-prefix", "24", "--max-pending-per-source", "8", "--max-pending-per-prefix", "12"}));
  std::vector<RawSocket> held;
  for (int i = 1; i <= 12; ++i) held.emplace_back(address(4, 4, i), relay.address().endpoint);
  REQUIRE(eventually(
      [&] {
        return relay.probe().gauge("pending_handshakes") ==
               relay.baseline().pending_handshakes + 12;
      },
      5s));
  RawSocket thirteenth(address(4, 4, 200), relay.address().endpoint);
  CHECK(thirteenth.wait_peer_closed(2s));
  CHECK(relay.probe().counter("limit_hits_total", "pending_per_source") == 1);
  RawSocket next_prefix(address(4, 5, 1), relay.address().endpoint);
  std::this_thread::sleep_for(300ms);
  CHECK_FALSE(next_prefix.peer_closed());
  // /status lists the /24 among the heaviest sources, with its 12 pending (counts, no keys).
  const auto status = relay.probe().status();  // kept: the loop below reads inside it
  bool listed = false;
  for (const auto& s : status.at("heaviest_sources")) {
    if (s.at("prefix") != "127.4.4.0/24") continue;
    listed = true;
    CHECK(s.at("pending").get<std::uint64_t>() == 12);
  }
  CHECK(listed);
  held.clear();
  next_prefix.close();
  relay.check_clean(3s);
}

TEST_CASE(
    "The handshake deadline shortens under pressure: at a full pending table a silent socket is "
    "closed at --min-handshake-timeout, not at --handshake-timeout") {
  WatchedRelay relay(
      adversarial_flags({"--max-pending-handshakes", "20", "--max-pending-per-source", "20",
                         "--max-pending-per-prefix", "20", "--handshake-timeout", "20",
                         "--min-handshake-timeout", "1"}));
  std::vector<RawSocket> held;
  for (int i = 0; i < 19; ++i) held.emplace_back(address(5, 0, 1 + i), relay.address().endpoint);
  REQUIRE(eventually(
      [&] {
        return relay.probe().gauge("pending_handshakes") >=
               relay.baseline().pending_handshakes + 19;
      },
      5s));
  // Admitted at 19 of 20 pending: about 1 + (20 - 1) * 0.1 = 2.9 s, far from 20 s.
  const auto start = Clock::now();
  RawSocket last(address(5, 0, 100), relay.address().endpoint);
  CHECK(last.wait_peer_closed(8s));
  CHECK(Clock::now() - start < 8s);
  held.clear();
  relay.check_clean(3s);
}

TEST_CASE(
    "Pending connects per target: 3 connectors wait for one listener, the 4th gets Overloaded and "
    "is counted") {
  WatchedRelay relay(adversarial_flags({"--max-pending-connects-per-target", "3"}));
  auto listener = listeners_from(relay.address(), "127.3.2.1", 1);
  REQUIRE(listener.size() == 1);
  std::vector<std::unique_ptr<HostileClient>> connectors;
  for (int i = 0; i < 3; ++i) {
    auto c = std::make_unique<HostileClient>(relay.address(), Hooks{}, address(3, 3, 1 + i));
    REQUIRE(c->handshake(Connect{listener[0]->public_key()}));
    CHECK(is<IncomingConnection>(listener[0]->next_message()));
    connectors.push_back(std::move(c));
  }
  HostileClient fourth(relay.address(), {}, "127.3.3.50");
  REQUIRE(fourth.handshake(Connect{listener[0]->public_key()}));
  CHECK(refusal(fourth.next_message()) == RefuseReason::overloaded);
  CHECK(relay.probe().counter("limit_hits_total", "half_tunnels_per_target") == 1);
  connectors.clear();
  listener.clear();
  relay.check_clean(3s);
}

TEST_CASE(
    "Pending connects per source: 3 from one address wait, the 4th (to another listener, a fresh "
    "identity) gets Overloaded and is counted") {
  WatchedRelay relay(adversarial_flags({"--max-pending-connects-per-source", "3"}));
  auto listeners = listeners_from(relay.address(), "127.3.4.1", 2);
  REQUIRE(listeners.size() == 2);
  std::vector<std::unique_ptr<HostileClient>> connectors;
  for (int i = 0; i < 3; ++i) {
    auto c = std::make_unique<HostileClient>(relay.address(), Hooks{}, "127.3.5.1");
    REQUIRE(c->handshake(Connect{listeners[0]->public_key()}));
    CHECK(is<IncomingConnection>(listeners[0]->next_message()));
    connectors.push_back(std::move(c));
  }
  HostileClient fourth(relay.address(), {}, "127.3.5.1");
  REQUIRE(fourth.handshake(Connect{listeners[1]->public_key()}));
  CHECK(refusal(fourth.next_message()) == RefuseReason::overloaded);
  CHECK(relay.probe().counter("limit_hits_total", "half_tunnels_per_source") == 1);
  HostileClient elsewhere(relay.address(), {}, "127.3.5.2");
  REQUIRE(elsewhere.handshake(Connect{listeners[1]->public_key()}));
  CHECK(is<IncomingConnection>(listeners[1]->next_message()));
  elsewhere.close();
  connectors.clear();
  listeners.clear();
  relay.check_clean(3s);
}

TEST_CASE(
    "Connect rate per source: a burst of 4 Connects from fresh identities of one address is "
    "answered, the 5th gets RateLimited and is counted") {
  WatchedRelay relay(
      adversarial_flags({"--connect-rate-per-source", "0.001", "--connect-burst-per-source", "4"}));
  for (int i = 0; i < 4; ++i) {
    HostileClient c(relay.address(), {}, "127.3.6.1");
    REQUIRE(c.handshake(Connect{Identity::generate().public_key()}));
    CHECK(refusal(c.next_message()) == RefuseReason::not_found);
  }
  HostileClient fifth(relay.address(), {}, "127.3.6.1");
  REQUIRE(fifth.handshake(Connect{Identity::generate().public_key()}));
  CHECK(refusal(fifth.next_message()) == RefuseReason::rate_limited);
  CHECK(relay.probe().counter("limit_hits_total", "connect_rate_per_source") == 1);
  HostileClient other(relay.address(), {}, "127.3.6.2");
  REQUIRE(other.handshake(Connect{Identity::generate().public_key()}));
  CHECK(refusal(other.next_message()) == RefuseReason::not_found);
  relay.check_clean(3s);
}

// ---------------------------------------------------------------- control-frame floods (14.6)

TEST_CASE(
    "Control-frame floods (issue 14.6): a listener's 10 control frames are answered, the 11th "
    "closes it with Close{rate_limited}, counted") {
  WatchedRelay relay(adversarial_flags({"--control-rate", "0.001", "--control-burst", "10"}));
  auto listener = listeners_from(relay.address(), "127.3.7.1", 1);
  REQUIRE(listener.size() == 1);
  auto& l = *listener[0];
  SUBCASE("pings") {
    REQUIRE(l.send_pings(1, 10));
    for (int i = 0; i < 10; ++i) CHECK(l.receive(3s, false).kind == FrameKind::pong);
    REQUIRE(l.send_ping(11));
  }
  SUBCASE(
      "RejectConnection of two valid keys in turn (the validity cache collision of the review)") {
    const auto a = Identity::generate().public_key();
    const auto b = Identity::generate().public_key();
    for (int i = 0; i < 10; ++i)
      REQUIRE(
          l.send_frame(FrameKind::control, encode(NodeMessage{RejectConnection{i % 2 ? a : b}})));
    std::this_thread::sleep_for(300ms);
    CHECK(relay.probe().gauge("listeners") == relay.baseline().listeners + 1);  // still listening
    REQUIRE(l.send_frame(FrameKind::control, encode(NodeMessage{RejectConnection{a}})));
  }
  CHECK(ended_with(l.next_message(3s), CloseReason::rate_limited, false));
  CHECK(relay.probe().counter("limit_hits_total", "control_rate") == 1);
  CHECK(relay.probe().counter("closes_total", "rate_limited") >= 1);
  listener.clear();
  relay.check_clean(3s);
}

TEST_CASE(
    "RejectConnection naming a key that is not a valid point is compared by bytes: a no-op, not a "
    "protocol error") {
  WatchedRelay relay(adversarial_flags());
  auto listener = listeners_from(relay.address(), "127.3.8.1", 1);
  REQUIRE(listener.size() == 1);
  std::array<std::uint8_t, key_bytes> small_order{1};  // the identity point
  REQUIRE(listener[0]->send_frame(FrameKind::control,
                                  encode(NodeMessage{RejectConnection{PublicKey(small_order)}})));
  HostileClient connector(relay.address(), {}, "127.3.8.2");
  REQUIRE(connector.handshake(Connect{listener[0]->public_key()}));
  CHECK(is<IncomingConnection>(listener[0]->next_message()));  // the listener is still there
  connector.close();
  listener.clear();
  relay.check_clean(3s);
}

// ---------------------------------------------------------------- revoked keys (14.3)

TEST_CASE(
    "Revoking a key stops its running tunnel (issue 14.3): a reload ends the pipe with "
    "not_allowed, counted and logged; tunnels of listed keys run on") {
  char pattern[] = "/tmp/strelay-revoke-XXXXXX";
  REQUIRE(::mkdtemp(pattern) != nullptr);
  const std::filesystem::path dir = pattern;
  const auto allow = dir / "allow.txt";
  const auto listener = Identity::generate();
  const auto revoked = Identity::generate();
  const auto kept = Identity::generate();
  std::ofstream(allow) << listener.public_key().to_base64url() << "\n"
                       << revoked.public_key().to_base64url() << "\n"
                       << kept.public_key().to_base64url() << "\n";
  WatchedRelay relay(adversarial_flags({"--allow", allow.string()}),
                     /*with_canary=*/false);  // a canary is not listed
  run_task(
      [&]() -> boost::asio::awaitable<void> {
        auto gone = co_await make_pipe(relay.address(), listener, revoked);
        auto stays = co_await make_pipe(relay.address(), listener, kept);
        std::ofstream(allow, std::ios::trunc) << listener.public_key().to_base64url() << "\n"
                                              << kept.public_key().to_base64url() << "\n";
        relay.process().signal(SIGHUP);
        // The revoked connector's pipe closes: both of its ends read EOF.
        std::array<std::uint8_t, 16> buf{};
        auto [ec, n] =
            co_await gone.connector.async_read_some(boost::asio::buffer(buf), strelay::await_tuple);
        CHECK(ec == boost::asio::error::eof);
        auto [ec2, n2] =
            co_await gone.acceptor.async_read_some(boost::asio::buffer(buf), strelay::await_tuple);
        CHECK(ec2 == boost::asio::error::eof);
        // The other pipe still carries bytes.
        const std::array<std::uint8_t, 4> ping{1, 2, 3, 4};
        co_await boost::asio::async_write(stays.connector, boost::asio::buffer(ping),
                                          strelay::await_tuple);
        std::array<std::uint8_t, 4> got{};
        auto [ec3, n3] = co_await boost::asio::async_read(stays.acceptor, boost::asio::buffer(got),
                                                          strelay::await_tuple);
        CHECK(!ec3);
        CHECK(got == ping);
        boost::system::error_code ignored;
        stays.connector.close(ignored);
        stays.acceptor.close(ignored);
        stays.listener.channel->close();
        gone.listener.channel->close();
      }(),
      20s);
  CHECK(relay.probe().counter("limit_hits_total", "not_allowed_tunnel") == 1);
  CHECK(relay.probe().counter("closes_total", "not_allowed") >= 1);
  CHECK(relay.process().log().find("tunnel_revoked") != std::string::npos);
  relay.check_clean(3s);
  std::filesystem::remove_all(dir);
}
