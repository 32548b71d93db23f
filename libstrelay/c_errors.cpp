// libstrelay: statuses and the calling thread's last error (strelay.h, "Errors"; the table in
// docs/node-library.md, "The C ABI").
#include <iterator>

#include "common/errors.hpp"
#include "libstrelay/handles.hpp"

using strelay::errc;

namespace strelay::capi {

namespace {
thread_local std::string last_error;
}  // namespace

int fail(int status, std::string message) {
  last_error = std::move(message);
  return status;
}

int fail(std::error_code error) {
  return fail(status_of(error), error.message());
}

int ok() {
  last_error.clear();
  return STRELAY_OK;
}

int status_of(std::error_code error) {
  if (!error) return STRELAY_OK;
  if (error == errc::relay_identity_mismatch || error == errc::peer_identity_mismatch) {
    return STRELAY_IDENTITY_MISMATCH;
  }
  if (error == errc::unsupported_version) return STRELAY_OTHER_VERSION;
  if (error == errc::decrypt_failed || error == errc::protocol_error ||
      error == errc::handshake_failed) {
    return STRELAY_INTEGRITY;
  }
  if (error == errc::relay_unreachable || error == errc::bad_magic ||
      error == errc::relay_shutting_down || is_not_a_relay(error)) {
    return STRELAY_UNREACHABLE;
  }
  if (error == errc::timeout || error == errc::handshake_timeout) return STRELAY_TIMEOUT;
  if (error == errc::channel_closed) return STRELAY_CLOSED;
  if (error == errc::aborted || error == errc::peer_gone) return STRELAY_LOST;
  if (error == errc::rejected || error == errc::not_found || error == errc::not_allowed ||
      error == errc::not_a_friend || error == errc::rate_limited || error == errc::overloaded ||
      error == errc::no_pending) {
    return STRELAY_REFUSED;
  }
  return STRELAY_INTERNAL;
}

}  // namespace strelay::capi

using namespace strelay::capi;

extern "C" {

const char* strelay_last_error(void) {
  return last_error.c_str();
}

const char* strelay_status_name(int status) {
  static const char* const names[] = {
      "STRELAY_OK",           "STRELAY_AGAIN",   "STRELAY_INVALID",
      "STRELAY_FILE",         "STRELAY_CLOSED",  "STRELAY_TIMEOUT",
      "STRELAY_UNREACHABLE",  "STRELAY_REFUSED", "STRELAY_IDENTITY_MISMATCH",
      "STRELAY_INTEGRITY",    "STRELAY_LOST",    "STRELAY_OTHER_VERSION",
      "STRELAY_WRONG_THREAD", "STRELAY_INTERNAL"};
  if (status > 0) return "STRELAY_OK";  // a count
  if (-status >= static_cast<int>(std::size(names))) return "STRELAY_UNKNOWN";
  return names[-status];
}

const char* strelay_version(void) {
  return STRELAY_LIB_VERSION;
}

}  // extern "C"
