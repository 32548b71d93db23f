// strelay::Relay without sockets: the sessions are stand-ins (RelayMember) that record what
// the relay posts to them, and their registrations are driven by hand. The pairing rules
// themselves are relay_state_test's; here: the registry, the one-step leave of a Registration
// on every path (an exception included), drain, and the order of posted decisions.
#include "strelay/relay.hpp"

#include <doctest/doctest.h>

#include <mutex>
#include <stdexcept>
#include <vector>

#include <boost/asio/io_context.hpp>

using namespace strelay;

namespace {

class StandIn final : public RelayMember {
 public:
  void post(Outbound item) override {
    std::lock_guard lock(mutex_);
    items_.push_back(std::move(item));
  }
  std::vector<Outbound> items() {
    std::lock_guard lock(mutex_);
    return items_;
  }
  template <class T>
  bool got() {
    for (const auto& item : items()) {
      if (const auto* message = std::get_if<RelayMessage>(&item); message && std::holds_alternative<T>(*message)) {
        return true;
      }
    }
    return false;
  }
  bool closed_with(CloseReason reason) {
    for (const auto& item : items()) {
      if (const auto* r = std::get_if<CloseReason>(&item); r && *r == reason) return true;
    }
    return false;
  }

 private:
  std::mutex mutex_;
  std::vector<Outbound> items_;
};

class NoTunnels final : public TunnelObserver {
 public:
  void forwarded(int, std::uint64_t) override {}
  void buffered(std::int64_t) override {}
};

struct Fixture {
  boost::asio::io_context io;
  Metrics metrics;
  std::string lines;
  Logger log{Logger::Options{.sink = [this](std::string_view line) { lines.append(line); }}};
  NoTunnels observer;
  Relay relay{Relay::Options{}, metrics, log, observer, io.get_executor()};
  PublicKey alice = Identity::generate().public_key();
  PublicKey bob = Identity::generate().public_key();
};

}  // namespace

TEST_CASE("a session that throws after joining leaves the pairing table and the registry: no stale listener") {
  Fixture f;
  auto listener = std::make_shared<StandIn>();
  try {
    auto registration = f.relay.join(1, f.alice, listener);
    REQUIRE(registration.open());
    registration.submit(Listen{});
    REQUIRE(listener->got<ListenOk>());
    REQUIRE(f.relay.listeners() == 1);
    REQUIRE(f.relay.sessions() == 1);
    throw std::runtime_error("a bug in the session");
  } catch (const std::runtime_error&) {
  }
  CHECK(f.relay.listeners() == 0);
  CHECK(f.relay.sessions() == 0);
  CHECK(f.metrics.listeners.get() == 0);
}

TEST_CASE("a connector that throws after joining leaves no half-tunnel behind") {
  Fixture f;
  auto listener = std::make_shared<StandIn>();
  auto listening = f.relay.join(1, f.alice, listener);
  listening.submit(Listen{});
  auto connector = std::make_shared<StandIn>();
  try {
    auto registration = f.relay.join(2, f.bob, connector);
    registration.submit(Connect{f.alice});
    REQUIRE(listener->got<IncomingConnection>());
    REQUIRE(f.relay.half_tunnels() == 1);
    throw std::runtime_error("a bug in the session");
  } catch (const std::runtime_error&) {
  }
  CHECK(f.relay.half_tunnels() == 0);
  CHECK(f.relay.sessions() == 1);  // the listener stays
  CHECK(f.relay.listeners() == 1);
  // The listener's Accept now finds nothing: the half-tunnel really is gone.
  auto acceptor = std::make_shared<StandIn>();
  auto accepting = f.relay.join(3, f.alice, acceptor);
  accepting.submit(Accept{f.bob});
  CHECK(acceptor->got<Refused>());
}

TEST_CASE("a registration leaves once: reset, then its destructor, change nothing more") {
  Fixture f;
  auto listener = std::make_shared<StandIn>();
  auto registration = f.relay.join(1, f.alice, listener);
  registration.submit(Listen{});
  auto moved = std::move(registration);
  CHECK(f.relay.listeners() == 1);  // moving is not leaving
  moved.reset();
  CHECK(f.relay.listeners() == 0);
  CHECK(f.relay.sessions() == 0);
  moved.submit(Listen{});  // after leaving: ignored
  CHECK(f.relay.listeners() == 0);
}

TEST_CASE("a draining relay refuses to join, and close_all asks every session to close") {
  Fixture f;
  auto early = std::make_shared<StandIn>();
  auto registration = f.relay.join(1, f.alice, early);
  registration.submit(Listen{});
  f.relay.begin_drain();
  auto late = std::make_shared<StandIn>();
  auto refused = f.relay.join(2, f.bob, late);
  CHECK_FALSE(refused.open());
  CHECK(f.relay.sessions() == 1);
  f.relay.close_all(CloseReason::shutdown);
  CHECK(early->closed_with(CloseReason::shutdown));
  CHECK(late->items().empty());
}

TEST_CASE("a newer Listen replaces the older: ListenOk, then Close{replaced}, posted in the table's order") {
  Fixture f;
  auto first = std::make_shared<StandIn>();
  auto second = std::make_shared<StandIn>();
  auto a = f.relay.join(1, f.alice, first);
  auto b = f.relay.join(2, f.alice, second);
  a.submit(Listen{});
  b.submit(Listen{});
  const auto items = first->items();
  REQUIRE(items.size() == 2);
  CHECK(std::holds_alternative<ListenOk>(std::get<RelayMessage>(items[0])));
  CHECK(std::get<CloseReason>(items[1]) == CloseReason::replaced);
  CHECK(f.metrics.replaced_total.get() == 1);
}

TEST_CASE("pairing posts one rendezvous to both ends; an end already gone abandons it") {
  Fixture f;
  auto listener = std::make_shared<StandIn>();
  auto listening = f.relay.join(1, f.alice, listener);
  listening.submit(Listen{});
  auto connector = std::make_shared<StandIn>();
  auto connecting = f.relay.join(2, f.bob, connector);
  connecting.submit(Connect{f.alice});
  auto acceptor = std::make_shared<StandIn>();
  auto accepting = f.relay.join(3, f.alice, acceptor);

  SUBCASE("both ends present") {
    accepting.submit(Accept{f.bob});
    const auto to_connector = connector->items();
    const auto to_acceptor = acceptor->items();
    REQUIRE(to_connector.size() == 1);
    REQUIRE(to_acceptor.size() == 1);
    auto r1 = std::get<std::shared_ptr<Rendezvous>>(to_connector[0]);
    auto r2 = std::get<std::shared_ptr<Rendezvous>>(to_acceptor[0]);
    CHECK(r1 == r2);
    CHECK(r1->peer_of(2) == f.alice);
    CHECK(r1->peer_of(3) == f.bob);
  }
  SUBCASE("the connector's session is gone but its half-tunnel was not yet forgotten") {
    connector.reset();  // the registry holds it weakly; the registration has not left yet
    accepting.submit(Accept{f.bob});
    REQUIRE(acceptor->items().size() == 1);
    CHECK(f.lines.find("pairing_abandoned") != std::string::npos);
  }
}
