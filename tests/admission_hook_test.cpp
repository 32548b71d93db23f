// Tests for strelay/admission_hook: the sans-io decisions of the admission hook (cache, TTL,
// answers, fail-open and fail-closed, the bound in flight at max and max+1), the request and
// answer formats, and the URL flag. The HTTP shell is tested through strelay in
// tests/operations_test.sh against a hook server the test starts.
#include "strelay/admission_hook.hpp"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

using namespace strelay;
using namespace std::chrono_literals;

namespace {

const TimePoint t0 = TimePoint{} + 1000h;

PublicKey key(std::uint8_t n) {
  std::array<std::uint8_t, key_bytes> bytes{};
  bytes.fill(n);
  return PublicKey(bytes);
}

AdmissionHookOptions options(bool fail_open = false) {
  AdmissionHookOptions o;
  o.url = "http://127.0.0.1:1/admit";
  o.cache = 60s;
  o.fail_open = fail_open;
  o.max_in_flight = 2;
  o.cache_entries = 3;
  return o;
}

HookDecision ask_and_answer(AdmissionPolicy& p, std::uint8_t k, HookAction a, bool allow,
                            TimePoint now) {
  const auto first = p.begin(key(k), a, now);
  REQUIRE(first.ask);
  return p.finish(key(k), a, HookAnswer{allow, std::nullopt}, now);
}

}  // namespace

TEST_CASE("an answer is cached per key and action until its TTL, then asked again") {
  AdmissionPolicy p(options());
  CHECK(ask_and_answer(p, 1, HookAction::listen, true, t0).outcome == HookOutcome::allowed);
  const auto cached = p.begin(key(1), HookAction::listen, t0 + 59s);
  CHECK_FALSE(cached.ask);
  CHECK(cached.allowed);
  CHECK(cached.outcome == HookOutcome::cached_allowed);
  // The same key's other action is its own question.
  CHECK(p.begin(key(1), HookAction::connect, t0).ask);
  p.finish(key(1), HookAction::connect, HookAnswer{false, std::nullopt}, t0);
  const auto denied = p.begin(key(1), HookAction::connect, t0 + 1s);
  CHECK_FALSE(denied.allowed);
  CHECK(denied.outcome == HookOutcome::cached_denied);
  // At the TTL the cached answer is gone.
  CHECK(p.begin(key(1), HookAction::listen, t0 + 60s).ask);
}

TEST_CASE("cache_seconds shortens the TTL, never lengthens it, and 0 caches nothing") {
  AdmissionPolicy p(options());
  REQUIRE(p.begin(key(1), HookAction::listen, t0).ask);
  p.finish(key(1), HookAction::listen, HookAnswer{true, 5s}, t0);
  CHECK_FALSE(p.begin(key(1), HookAction::listen, t0 + 4s).ask);
  CHECK(p.begin(key(1), HookAction::listen, t0 + 5s).ask);
  p.finish(key(1), HookAction::listen, HookAnswer{true, 3600s}, t0 + 5s);
  CHECK_FALSE(p.begin(key(1), HookAction::listen, t0 + 64s).ask);
  CHECK(p.begin(key(1), HookAction::listen, t0 + 65s).ask);
  p.finish(key(1), HookAction::listen, HookAnswer{true, 0s}, t0 + 65s);
  CHECK(p.begin(key(1), HookAction::listen, t0 + 65s).ask);
}

TEST_CASE("a failed hook is never cached; fail-closed refuses, fail-open admits") {
  for (const bool open : {false, true}) {
    CAPTURE(open);
    AdmissionPolicy p(options(open));
    REQUIRE(p.begin(key(1), HookAction::connect, t0).ask);
    const auto d = p.finish(key(1), HookAction::connect, std::nullopt, t0);
    CHECK(d.allowed == open);
    CHECK(d.outcome == (open ? HookOutcome::failed_open : HookOutcome::failed_closed));
    CHECK(p.begin(key(1), HookAction::connect, t0).ask);
  }
}

TEST_CASE("requests in flight: max_in_flight are asked, the next is answered by the policy") {
  for (const bool open : {false, true}) {
    AdmissionPolicy p(options(open));
    CHECK(p.begin(key(1), HookAction::listen, t0).ask);
    CHECK(p.begin(key(2), HookAction::listen, t0).ask);  // max (2)
    CHECK(p.in_flight() == 2);
    const auto busy = p.begin(key(3), HookAction::listen, t0);  // max + 1
    CHECK_FALSE(busy.ask);
    CHECK(busy.allowed == open);
    CHECK(busy.outcome == (open ? HookOutcome::busy_open : HookOutcome::busy_closed));
    CHECK(p.in_flight() == 2);
    p.finish(key(1), HookAction::listen, std::nullopt, t0);  // a failure frees its slot too
    CHECK(p.in_flight() == 1);
    CHECK(p.begin(key(3), HookAction::listen, t0).ask);
  }
}

TEST_CASE("the cache holds cache_entries answers at most: expired ones go first") {
  AdmissionPolicy p(options());
  ask_and_answer(p, 1, HookAction::listen, true, t0);
  ask_and_answer(p, 2, HookAction::listen, true, t0 + 30s);
  ask_and_answer(p, 3, HookAction::listen, true, t0 + 30s);  // max (3)
  CHECK(p.cached() == 3);
  ask_and_answer(p, 4, HookAction::listen, true, t0 + 61s);  // max + 1: key 1 has expired
  CHECK(p.cached() == 3);
  CHECK_FALSE(p.begin(key(2), HookAction::listen, t0 + 61s).ask);
  CHECK_FALSE(p.begin(key(4), HookAction::listen, t0 + 61s).ask);
  ask_and_answer(p, 5, HookAction::listen, true, t0 + 62s);  // none expired: one is dropped
  CHECK(p.cached() == 3);
  CHECK_FALSE(p.begin(key(5), HookAction::listen, t0 + 62s).ask);
}

TEST_CASE("the request names the key, the action and the source") {
  const auto body = nlohmann::json::parse(hook_request_body(key(7), HookAction::connect, "::1"));
  CHECK(body["key"] == key(7).to_base64url());
  CHECK(body["action"] == "connect");
  CHECK(body["source"] == "::1");
}

TEST_CASE("an answer is status 200 with a boolean allow; anything else is a failure") {
  CHECK(parse_hook_answer(200, R"({"allow": true})")->allow);
  CHECK_FALSE(parse_hook_answer(200, R"({"allow": false, "extra": 1})")->allow);
  CHECK(parse_hook_answer(200, R"({"allow": true, "cache_seconds": 2.5})")->cache_for == 2500ms);
  CHECK_FALSE(parse_hook_answer(403, R"({"allow": true})"));
  CHECK_FALSE(parse_hook_answer(500, ""));
  CHECK_FALSE(parse_hook_answer(200, R"({"allow": "yes"})"));
  CHECK_FALSE(parse_hook_answer(200, R"({"allowed": true})"));
  CHECK_FALSE(parse_hook_answer(200, R"([true])"));
  CHECK_FALSE(parse_hook_answer(200, "allow"));
  CHECK_FALSE(parse_hook_answer(200, R"({"allow": true, "cache_seconds": -1})"));
  // The body bound, at max and max + 1.
  std::string padded = R"({"allow": true, "pad": ")";
  padded += std::string(admission_hook_answer_bytes - padded.size() - 2, 'x') + "\"}";
  REQUIRE(padded.size() == admission_hook_answer_bytes);
  CHECK(parse_hook_answer(200, padded));
  padded.insert(padded.size() - 2, "x");
  CHECK_FALSE(parse_hook_answer(200, padded));
}

TEST_CASE("--admission-url takes http://host[:port][/path] and refuses the rest in one line") {
  std::string error;
  CHECK(try_parse_hook_url("http://127.0.0.1:8080/admit", error) ==
        HookUrl{"127.0.0.1", "8080", "/admit"});
  CHECK(try_parse_hook_url("http://hook.internal", error) == HookUrl{"hook.internal", "80", "/"});
  CHECK(try_parse_hook_url("http://[::1]:9/a?b=c", error) == HookUrl{"::1", "9", "/a?b=c"});
  for (const char* bad : {"https://hook/admit", "hook:80", "http://", "http://:80/",
                          "http://host:0/", "http://host:65536/", "http://host:8x/",
                          "http://user@host/", "http://[::1/", "http://ho st/"}) {
    CAPTURE(bad);
    error.clear();
    CHECK_FALSE(try_parse_hook_url(bad, error));
    CHECK(!error.empty());
    CHECK(error.find('\n') == std::string::npos);
  }
}
