// Adversarial suite, topics (issue 18; docs/protocol.md 4.9): a flood of fresh identities
// joining a member's topic and as many topics as they may, against the real strelay binary
// with HostileClients. Ends with WatchedRelay::check_clean() (the canary pair, gauges and fds,
// topic memberships back to zero, clean exit, no secret logged), and a second canary of its own:
// a pair of listeners whose topic introductions must keep coming while the flood runs.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>

#include "common/topic.hpp"
#include "support/adversarial.hpp"
#include "support/hostile_client.hpp"
#include "support/relay_probe.hpp"
#include "support/watched_relay.hpp"

using namespace strelay;
using namespace strelay::test;
using namespace std::chrono_literals;

namespace {

bool send_message(HostileClient& client, const NodeMessage& message) {
  const auto bytes = encode(message);
  return client.send_frame(FrameKind::control, bytes);
}

// A listener on `relay` from `source`, its ListenOk read.
std::unique_ptr<HostileClient> listener(const RelayAddress& relay, const std::string& source) {
  auto client = std::make_unique<HostileClient>(relay, Hooks{}, source);
  REQUIRE(client->handshake(Listen{}));
  REQUIRE(is<ListenOk>(client->next_message()));
  return client;
}

// The answer to a join (TopicJoined or TopicRefused), skipping the introductions before it
// (of earlier joins); introductions after it are left for the caller.
HostileClient::Reply join(HostileClient& client, const TopicId& topic) {
  if (!send_message(client, JoinTopic{topic})) return {};
  for (;;) {
    auto reply = client.next_message();
    if (!is<Introduction>(reply)) return reply;
  }
}

}  // namespace

TEST_CASE(
    "Topic flood: 300 fresh identities join a member's topic and as many others as they may; "
    "the member gets at most its introduction rate, each flooder is refused its 17th topic, and "
    "another pair's introductions keep coming") {
  constexpr int flooders = 300;
  constexpr int threads = 4;
  raise_test_nofile_limit();
  WatchedRelay relay(adversarial_flags({"--max-listeners-per-source", "64"}));
  const auto& key = relay.address().key;
  const auto busy = topic_id(key, "busy room");
  const auto quiet = topic_id(key, "quiet room");

  auto victim = listener(relay.address(), "127.0.0.20");
  REQUIRE(is<TopicJoined>(join(*victim, busy)));

  // The topic canary: B joins and leaves A's topic again and again; each join must be answered
  // and introduce A (to B and B to A) while the flood runs.
  auto canary_a = listener(relay.address(), "127.0.0.21");
  auto canary_b = listener(relay.address(), "127.0.0.22");
  REQUIRE(is<TopicJoined>(join(*canary_a, quiet)));
  std::atomic<bool> flooding{true};
  int canary_rounds = 0;
  std::string canary_error;
  std::thread canary([&] {
    while (flooding.load() && canary_error.empty()) {
      const auto joined = join(*canary_b, quiet);
      if (!is<TopicJoined>(joined) || std::get<TopicJoined>(*joined.message).introduced != 1) {
        canary_error = "the canary's join was not answered with one introduction";
        break;
      }
      const auto to_b = canary_b->next_message();
      const auto to_a = canary_a->next_message();
      if (!is<Introduction>(to_b) || !is<Introduction>(to_a)) {
        canary_error = "an introduction of the canary pair did not come";
        break;
      }
      if (!send_message(*canary_b, LeaveTopic{quiet}) || !is<TopicLeft>(canary_b->next_message())) {
        canary_error = "the canary's leave was not answered";
        break;
      }
      ++canary_rounds;
      std::this_thread::sleep_for(250ms);
    }
  });

  std::mutex mutex;
  int joined_busy = 0, refused_17th = 0, other = 0;
  const auto start = Clock::now();
  in_threads(threads, flooders, [&](int t, int i) {
    HostileClient client(relay.address(), {}, "127.0.3." + std::to_string(1 + t));
    int busy_ok = 0, refused = 0, bad = 0;
    if (!client.handshake(Listen{}) || !is<ListenOk>(client.next_message())) {
      bad = 1;
    } else {
      busy_ok = is<TopicJoined>(join(client, busy)) ? 1 : 0;
      for (int n = 1; n <= 16; ++n) {  // 15 more fill its 16; the 17th is refused
        const auto r =
            join(client, topic_id(key, "t" + std::to_string(i) + "/" + std::to_string(n)));
        if (n < 16) {
          bad += is<TopicJoined>(r) ? 0 : 1;
        } else if (is<TopicRefused>(r) &&
                   std::get<TopicRefused>(*r.message).reason == RefuseReason::overloaded) {
          refused = 1;
        }
      }
    }
    client.reset();
    std::lock_guard lock(mutex);
    joined_busy += busy_ok;
    refused_17th += refused;
    other += bad;
  });
  const auto elapsed = seconds(Clock::now() - start);
  flooding = false;
  canary.join();

  // Everything the victim was sent: introductions only, within its rate.
  int victim_introductions = 0;
  for (;;) {
    const auto r = victim->next_message(500ms);
    if (!is<Introduction>(r)) {
      CHECK(r.what == HostileClient::Reply::What::timeout);
      break;
    }
    ++victim_introductions;
  }
  MESSAGE(flooders << " flooders in " << elapsed << " s; the member met " << victim_introductions
                   << "; the canary pair met " << canary_rounds << " times");
  CHECK(canary_error.empty());
  CHECK(canary_rounds >= 1);
  CHECK(other == 0);
  CHECK(joined_busy == flooders);
  CHECK(refused_17th == flooders);
  CHECK(victim_introductions <=
        static_cast<int>(introduction_burst + introduction_rate * (elapsed + 1.0)));
  const auto probe = relay.probe();
  CHECK(probe.counter("limit_hits_total", "topics_per_node") == flooders);
  if (victim_introductions < flooders)
    CHECK(probe.counter("limit_hits_total", "introductions") > 0);
  victim->close();
  canary_a->close();
  canary_b->close();
  relay.check_clean(3s);
}
