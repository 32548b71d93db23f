// The admission hook's decisions (sans-io): whether a key may listen or connect, asked of an
// operator's HTTP service (--admission-url), with a cache, a bound on requests in flight and a
// fail-open or fail-closed policy (issue 20.3; docs/operations.md, "Admission hook").
//
// Per request (Listen or Connect, after the handshake authenticated the key):
//   begin(key, action, now) ─┬─ a cached answer younger than its TTL: allowed / denied
//                            ├─ max_in_flight requests already out: the fail policy (busy)
//                            └─ ask: the shell POSTs hook_request_body() to the URL, then
//   finish(key, action, answer or nullopt, now): caches an answer, or applies the fail policy
//                            to a failure (timeout, refused connection, non-200, bad JSON)
//
// Request: POST, Content-Type application/json,
//   {"key": "<base64url public key>", "action": "listen" | "connect", "source": "<client IP>"}
// Answer: status 200 with {"allow": true | false} and optionally "cache_seconds": N (>= 0, at
// most --admission-cache). Anything else is a failure. A failure is never cached.
//
// No sockets and no clocks here: the shell (strelay/admission_client) does the HTTP and passes
// `now` from the relay's clock; tests pass their own.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/keys.hpp"
#include "strelay/clock.hpp"
#include "strelay/metrics.hpp"  // HookOutcome

namespace CLI {
class App;
}

namespace strelay {

// Defaults of the flags (docs/operations.md).
inline constexpr auto admission_hook_timeout = std::chrono::seconds(2);
inline constexpr auto admission_hook_cache = std::chrono::seconds(60);
inline constexpr std::size_t admission_hook_max_in_flight = 64;
// Cached answers at most; a full cache drops its expired entries, then an arbitrary one.
inline constexpr std::size_t admission_hook_cache_entries = 65536;
// The answer's body at most (a JSON object of two fields needs far less).
inline constexpr std::size_t admission_hook_answer_bytes = 4096;

struct AdmissionHookOptions {
  std::string url;  // http://host[:port]/path; empty: no hook
  std::chrono::milliseconds timeout = admission_hook_timeout;  // the whole HTTP exchange
  std::chrono::milliseconds cache = admission_hook_cache;      // how long an answer is reused
  bool fail_open = false;  // when the hook fails or is busy: allow (open) or refuse (closed)
  std::size_t max_in_flight = admission_hook_max_in_flight;
  std::size_t cache_entries = admission_hook_cache_entries;

  friend bool operator==(const AdmissionHookOptions&, const AdmissionHookOptions&) = default;
};

// Adds --admission-url, --admission-timeout, --admission-cache, --admission-fail and
// --admission-max-in-flight to `app` (strelay/config.cpp calls it).
void setup_admission_hook_options(CLI::App& app, AdmissionHookOptions& options);

// "http://127.0.0.1:8080/admit" split for the shell. Only http: the hook belongs on the relay's
// host or its private network (a TLS terminator in front of a remote hook is the operator's).
struct HookUrl {
  std::string host;    // a name, an IPv4 address, or an IPv6 address without brackets
  std::string port;    // "80" when not given
  std::string target;  // "/" when not given
  friend bool operator==(const HookUrl&, const HookUrl&) = default;
};
// nullopt and a one-line `error` for anything else.
std::optional<HookUrl> try_parse_hook_url(std::string_view text, std::string& error);

enum class HookAction : std::uint8_t { listen, connect };
const char* to_string(HookAction action);

struct HookDecision {
  bool ask = false;  // begin() only: ask the hook, then call finish()
  bool allowed = false;
  HookOutcome outcome = HookOutcome::denied;
};

// What the hook answered; nullopt from parse_hook_answer() is a failure.
struct HookAnswer {
  bool allow = false;
  std::optional<std::chrono::milliseconds> cache_for;  // "cache_seconds", when given
};

std::string hook_request_body(const PublicKey& key, HookAction action, std::string_view source);
std::optional<HookAnswer> parse_hook_answer(unsigned status, std::string_view body);

// Thread-compatible (the shell locks it): the cache and the count in flight.
class AdmissionPolicy {
 public:
  explicit AdmissionPolicy(AdmissionHookOptions options);

  HookDecision begin(const PublicKey& key, HookAction action, TimePoint now);
  // After begin() said ask (exactly once): frees the slot in flight.
  HookDecision finish(const PublicKey& key, HookAction action,
                      const std::optional<HookAnswer>& answer, TimePoint now);

  std::size_t in_flight() const { return in_flight_; }
  std::size_t cached() const { return cache_.size(); }

 private:
  struct Entry {
    bool allow = false;
    TimePoint expires;
  };
  struct KeyHash {
    std::size_t operator()(const std::pair<PublicKey, HookAction>& k) const noexcept;
  };
  HookDecision fail_policy(bool busy) const;
  void store(const PublicKey& key, HookAction action, Entry entry, TimePoint now);

  AdmissionHookOptions options_;
  std::unordered_map<std::pair<PublicKey, HookAction>, Entry, KeyHash> cache_;
  std::size_t in_flight_ = 0;
};

}  // namespace strelay
