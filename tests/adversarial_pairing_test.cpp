// Adversarial suite, section "Pairing" of ../shared/design/adversarial-tests.md, against the real
// strelay binary with HostileClients. Each test is named after its case and ends with
// WatchedRelay::check_clean() (canary, gauges and fds, clean exit without sanitizer reports,
// no secret logged). Cases already covered through the binary elsewhere (duplicate Listen,
// connect to self, racing connects, a listener dying mid-pairing) are listed with their test
// names in docs/reliability.md, section "Adversarial suite"; they end with the same checks.
#include <doctest/doctest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "support/adversarial.hpp"
#include "support/hostile_client.hpp"
#include "support/relay_probe.hpp"
#include "support/watched_relay.hpp"

using namespace strelay;
using namespace strelay::test;
using namespace std::chrono_literals;
using What = HostileClient::Reply::What;

namespace {

std::optional<RefuseReason> refusal(const HostileClient::Reply& r) {
  if (!is<Refused>(r)) return std::nullopt;
  return std::get<Refused>(*r.message).reason;
}

}  // namespace

TEST_CASE("Connect to an absent key gets NotFound, then a close") {
  WatchedRelay relay(adversarial_flags());
  HostileClient client(relay.address(), {}, "127.0.0.41");
  REQUIRE(client.handshake(Connect{Identity::generate().public_key()}));
  const auto r = client.next_message();
  CHECK(refusal(r) == RefuseReason::not_found);
  CHECK(client.wait_closed(2s));
  relay.check_clean(2s);
}

TEST_CASE(
    "Duplicate Listen for one key: the newest wins, the old connection is told why, and 100 "
    "alternations leak nothing") {
  // strelay_e2e_test has the same with the node library ("a second Listen for one key wins...").
  WatchedRelay relay(adversarial_flags());
  const auto node = Identity::generate();
  auto listen = [&] {
    auto c = std::make_unique<HostileClient>(relay.address(), Hooks{}, "127.0.0.43");
    c->set_identity(Identity::from_seed(node.seed()));
    REQUIRE(c->handshake(Listen{}));
    REQUIRE(is<ListenOk>(c->next_message()));
    return c;
  };
  auto current = listen();
  for (int i = 0; i < 100; ++i) {
    auto next = listen();
    CHECK(ended_with(current->next_message(), CloseReason::replaced, false));
    current = std::move(next);
  }
  CHECK(relay.probe().gauge("listeners") == relay.baseline().listeners + 1);
  // Only the newest hears of a connect.
  HostileClient connector(relay.address(), {}, "127.0.0.44");
  REQUIRE(connector.handshake(Connect{node.public_key()}));
  const auto incoming = current->next_message();
  REQUIRE(is<IncomingConnection>(incoming));
  CHECK(std::get<IncomingConnection>(*incoming.message).from == connector.public_key());
  connector.close();
  current->close();
  relay.check_clean(2s);
}

TEST_CASE(
    "Connect to self follows one documented rule: allowed, the same identity listens, connects and "
    "accepts") {
  // docs/protocol.md ("Connect to self is allowed"): another device holding the same identity.
  WatchedRelay relay(adversarial_flags());
  const auto node = Identity::generate();
  auto as_node = [&](const NodeMessage& request, const char* source) {
    auto c = std::make_unique<HostileClient>(relay.address(), Hooks{}, source);
    c->set_identity(Identity::from_seed(node.seed()));
    REQUIRE(c->handshake(request));
    return c;
  };
  auto listener = as_node(Listen{}, "127.0.0.45");
  REQUIRE(is<ListenOk>(listener->next_message()));
  auto connector = as_node(Connect{node.public_key()}, "127.0.0.46");
  const auto incoming = listener->next_message();
  REQUIRE(is<IncomingConnection>(incoming));
  CHECK(std::get<IncomingConnection>(*incoming.message).from == node.public_key());
  auto acceptor = as_node(Accept{node.public_key()}, "127.0.0.45");
  CHECK(is<Connected>(acceptor->next_message()));
  CHECK(is<Connected>(connector->next_message()));
  acceptor.reset();
  connector.reset();
  listener.reset();
  relay.check_clean(2s);
}

TEST_CASE("Listener dies mid-pairing: the connector gets PeerGone within 1 s") {
  // With the node library: strelay_e2e_test's "a listener dying while a connect is pending...";
  // dying in the middle of a frame: adversarial_resources_test's "Disconnects: ...".
  WatchedRelay relay(adversarial_flags());
  for (int round = 0; round < 10; ++round) {
    auto listener = std::make_unique<HostileClient>(relay.address(), Hooks{}, "127.0.0.47");
    REQUIRE(listener->handshake(Listen{}));
    REQUIRE(is<ListenOk>(listener->next_message()));
    HostileClient connector(relay.address(), {}, "127.0.0.48");
    REQUIRE(connector.handshake(Connect{listener->public_key()}));
    REQUIRE(is<IncomingConnection>(listener->next_message()));
    const auto start = Clock::now();
    if (round % 2 == 0) {
      listener->reset();
    } else {
      listener->close();
    }
    const auto r = connector.next_message(2s);
    CHECK(refusal(r) == RefuseReason::peer_gone);
    CHECK(Clock::now() - start < 1s);
  }
  relay.check_clean(2s);
}

TEST_CASE(
    "Connect flooding: one identity connects to 10,000 random keys; it is rate-limited and the "
    "relay's memory stays flat") {
  constexpr int total = 10000;
  constexpr int burst = 20;
  constexpr int threads = 4;
  raise_test_nofile_limit();
  WatchedRelay relay(adversarial_flags({"--connect-burst", "20", "--connect-rate", "0.001"}));
  const auto flooder = Identity::generate();
  const std::vector<std::uint8_t> seed(flooder.seed().begin(), flooder.seed().end());
  std::vector<PublicKey> targets;
  for (int i = 0; i < total; ++i) targets.push_back(Identity::generate().public_key());
  std::mutex mutex;
  std::map<RefuseReason, int> outcomes;
  int other = 0;
  std::int64_t rss_warm = 0;
  auto flood = [&](int from, int count) {
    in_threads(threads, count, [&](int t, int i) {
      HostileClient client(relay.address(), {}, "127.0.2." + std::to_string(1 + t));
      client.set_identity(
          Identity::from_seed(std::span<const std::uint8_t, key_bytes>(seed.data(), key_bytes)));
      const bool shook = client.handshake(Connect{targets[static_cast<std::size_t>(from + i)]});
      const auto r = shook ? client.next_message() : HostileClient::Reply{};
      std::lock_guard lock(mutex);
      if (const auto reason = refusal(r)) {
        ++outcomes[*reason];
      } else {
        ++other;
      }
    });
  };
  const auto start = Clock::now();
  flood(0, 1000);  // warms the allocator up before the measure
  rss_warm = relay.probe().rss_bytes();
  flood(1000, total - 1000);
  const auto rss_after = relay.probe().rss_bytes();
  MESSAGE(total << " connects in " << std::chrono::duration<double>(Clock::now() - start).count()
                << " s; relay RSS after 1,000: " << rss_warm / 1024
                << " KiB, after 10,000: " << rss_after / 1024 << " KiB");
  CHECK(other == 0);
  CHECK(outcomes[RefuseReason::not_found] == burst);
  CHECK(outcomes[RefuseReason::rate_limited] == total - burst);
  CHECK(relay.probe().counter("limit_hits_total", "connect_rate") == total - burst);
  if (memory_is_measurable) CHECK(rss_after - rss_warm < 4 * 1024 * 1024);
  relay.check_clean(2s);
}

TEST_CASE(
    "Pairing state against a reference model: random listen, connect, accept, reject and "
    "disconnect through the real relay") {
  // The table itself is checked against a model over 10^5 operations in relay_state_test.cpp
  // ("random operations agree with the reference model"). Here the same kind of sequence goes
  // through the binary, one operation at a time, each outcome compared with a trivial model.
  constexpr int operations = 150;
  WatchedRelay relay(adversarial_flags({"--connect-burst", "1000", "--connect-rate", "60000"}));
  std::mt19937 random(7);
  std::vector<Identity> nodes;
  for (int i = 0; i < 4; ++i) nodes.push_back(Identity::generate());
  std::map<int, std::unique_ptr<HostileClient>> listeners;                // model: who listens
  std::map<std::pair<int, int>, std::unique_ptr<HostileClient>> pending;  // (connector, listener)
  auto connect_as = [&](int who, const NodeMessage& request) {
    auto c = std::make_unique<HostileClient>(relay.address(), Hooks{}, "127.0.0.42");
    c->set_identity(Identity::from_seed(nodes[static_cast<std::size_t>(who)].seed()));
    REQUIRE(c->handshake(request));
    return c;
  };
  auto key = [&](int who) { return nodes[static_cast<std::size_t>(who)].public_key(); };
  for (int op = 0; op < operations; ++op) {
    const int a = static_cast<int>(random() % nodes.size());
    const int b = static_cast<int>(random() % nodes.size());
    const int kind = static_cast<int>(random() % 5);
    CAPTURE(op);
    CAPTURE(kind);
    if (kind == 0) {  // a listens (the newest wins; the old one is told `replaced`)
      auto l = connect_as(a, Listen{});
      REQUIRE(is<ListenOk>(l->next_message()));
      if (auto old = listeners.find(a); old != listeners.end()) {
        CHECK(ended_with(old->second->next_message(), CloseReason::replaced, false));
      }
      // Connects pending to a stay (keyed by a, not by the connection): the new listener hears
      // of each again.
      std::set<PublicKey> expected;
      std::set<PublicKey> heard;
      for (const auto& [pair, client] : pending) {
        if (pair.second == a) expected.insert(key(pair.first));
      }
      for (std::size_t i = 0; i < expected.size(); ++i) {
        const auto incoming = l->next_message();
        REQUIRE(is<IncomingConnection>(incoming));
        heard.insert(std::get<IncomingConnection>(*incoming.message).from);
      }
      CHECK(heard == expected);
      listeners[a] = std::move(l);
    } else if (kind == 1 && a != b && !pending.count({a, b})) {  // a connects to b
      auto c = connect_as(a, Connect{key(b)});
      if (!listeners.count(b)) {
        CHECK(refusal(c->next_message()) == RefuseReason::not_found);
        continue;
      }
      const auto incoming = listeners[b]->next_message();
      REQUIRE(is<IncomingConnection>(incoming));
      CHECK(std::get<IncomingConnection>(*incoming.message).from == key(a));
      pending[{a, b}] = std::move(c);
    } else if (kind == 2) {  // b accepts a
      auto acceptor = connect_as(b, Accept{key(a)});
      auto it = pending.find({a, b});
      if (it == pending.end()) {
        CHECK(refusal(acceptor->next_message()) == RefuseReason::no_pending);
        continue;
      }
      CHECK(is<Connected>(acceptor->next_message()));
      CHECK(is<Connected>(it->second->next_message()));
      pending.erase(it);
    } else if (kind == 3 && listeners.count(b)) {  // b rejects a
      const auto payload = encode(NodeMessage{RejectConnection{key(a)}});
      REQUIRE(listeners[b]->send_frame(FrameKind::control, payload));
      if (auto it = pending.find({a, b}); it != pending.end()) {
        CHECK(refusal(it->second->next_message()) == RefuseReason::rejected);
        pending.erase(it);
      }
    } else if (kind == 4 && listeners.count(b)) {  // b's listener disconnects
      listeners.erase(b);
      for (auto it = pending.begin(); it != pending.end();) {
        if (it->first.second != b) {
          ++it;
          continue;
        }
        CHECK(refusal(it->second->next_message()) == RefuseReason::peer_gone);
        it = pending.erase(it);
      }
    }
  }
  // Everything the model holds is still there on the relay.
  CHECK(relay.probe().gauge("listeners") ==
        relay.baseline().listeners + static_cast<std::int64_t>(listeners.size()));
  CHECK(relay.probe().gauge("half_tunnels") ==
        relay.baseline().half_tunnels + static_cast<std::int64_t>(pending.size()));
  listeners.clear();
  pending.clear();
  relay.check_clean(2s);
}
