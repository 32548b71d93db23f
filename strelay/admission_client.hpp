// The admission hook's shell: one HTTP POST per question, with Boost.Beast, on the asking
// session's own worker, around the sans-io AdmissionPolicy (strelay/admission_hook.hpp).
//
// A slow or dead hook stalls no worker: each question is an asynchronous exchange bounded by
// --admission-timeout, and at most --admission-max-in-flight are out at once; beyond that, and
// on any failure, the fail policy answers at once. Every decision is counted in
// strelay_admission_hook_total{outcome}; the requests out in strelay_admission_hook_in_flight.
//
// Threading: ask() may be called from any worker; policy_ is guarded by mutex_, held only
// around the policy's calls, never across I/O.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/address.hpp>
#include <mutex>
#include <optional>
#include <string>

#include "common/keys.hpp"
#include "common/log.hpp"
#include "strelay/admission_hook.hpp"
#include "strelay/clock.hpp"
#include "strelay/metrics.hpp"

namespace strelay {

class AdmissionHook {
 public:
  // Throws std::invalid_argument for a bad URL (the flag's check has already refused it).
  // `clock`, `metrics` and `log` must outlive the hook.
  AdmissionHook(AdmissionHookOptions options, Clock& clock, Metrics& metrics, Logger& log);
  AdmissionHook(const AdmissionHook&) = delete;
  AdmissionHook& operator=(const AdmissionHook&) = delete;

  // Whether `key` may `action`, from the cache, the hook, or the fail policy; counted.
  boost::asio::awaitable<HookDecision> ask(PublicKey key, HookAction action,
                                           boost::asio::ip::address source);

 private:
  // One HTTP exchange; nullopt on any failure (logged, rate-limited by the logger).
  boost::asio::awaitable<std::optional<HookAnswer>> exchange(std::string body);

  const AdmissionHookOptions options_;
  const HookUrl url_;
  Clock& clock_;
  Metrics& metrics_;
  Logger& log_;
  std::mutex mutex_;  // guards policy_
  AdmissionPolicy policy_;
};

}  // namespace strelay
