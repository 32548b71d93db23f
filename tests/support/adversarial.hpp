// Helpers shared by the adversarial suite's process-level tests (adversarial_resources_test,
// adversarial_faults_test): thread fan-out, a real client's timed round trip, and a hostile
// listener/connector/acceptor pipe. Each wait inside has a limit (HostileClient's).
#pragma once

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "support/hostile_client.hpp"

namespace strelay::test {

using Clock = std::chrono::steady_clock;

inline double seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

template <class F>
void in_threads(int threads, int count, F body) {
  std::atomic<int> next{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (int i = next++; i < count; i = next++) body(t, i);
    });
  }
  for (auto& th : pool) th.join();
}

// A real client's round trip (handshake, Connect to an absent key, NotFound), timed.
inline Clock::duration real_client(const RelayAddress& relay) {
  const auto start = Clock::now();
  HostileClient c(relay, {}, "127.0.0.51");
  REQUIRE(c.handshake(Connect{Identity::generate().public_key()}));
  const auto r = c.next_message();
  REQUIRE(is<Refused>(r));
  return Clock::now() - start;
}

// A listener, a connector pending towards it, and (when `pair`) the acceptor: the pipe.
struct HostilePipe {
  std::unique_ptr<HostileClient> listener;
  std::unique_ptr<HostileClient> connector;
  std::unique_ptr<HostileClient> acceptor;
};
inline HostilePipe hostile_pipe(const RelayAddress& relay, bool pair) {
  HostilePipe p;
  p.listener = std::make_unique<HostileClient>(relay, Hooks{}, "127.0.0.52");
  REQUIRE(p.listener->handshake(Listen{}));
  REQUIRE(is<ListenOk>(p.listener->next_message()));
  p.connector = std::make_unique<HostileClient>(relay, Hooks{}, "127.0.0.53");
  REQUIRE(p.connector->handshake(Connect{p.listener->identity().public_key()}));
  REQUIRE(is<IncomingConnection>(p.listener->next_message()));
  if (!pair) return p;
  p.acceptor = std::make_unique<HostileClient>(relay, Hooks{}, "127.0.0.52");
  p.acceptor->set_identity(Identity::from_seed(p.listener->identity().seed()));
  REQUIRE(p.acceptor->handshake(Accept{p.connector->identity().public_key()}));
  REQUIRE(is<Connected>(p.acceptor->next_message()));
  REQUIRE(is<Connected>(p.connector->next_message()));
  return p;
}

}  // namespace strelay::test
