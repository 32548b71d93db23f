#include "common/errors.hpp"

#include <string>

namespace strelay {

namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "strelay"; }
  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::ok: return "success";
      case errc::bad_magic: return "the peer does not speak the strelay protocol";
      case errc::unsupported_version:
        return "the peer speaks another strelay protocol version; upgrade one side";
      case errc::handshake_failed: return "handshake failed to authenticate";
      case errc::relay_identity_mismatch:
        return "relay identity mismatch: the relay's key is not the one in the ticket";
      case errc::peer_identity_mismatch:
        return "peer identity mismatch: the peer's key is not the expected one";
      case errc::handshake_timeout: return "the handshake did not complete before its deadline";
      case errc::frame_too_large: return "a frame is larger than the protocol allows";
      case errc::decrypt_failed: return "a frame failed to authenticate; the channel was ended";
      case errc::nonce_exhausted: return "the channel used up its nonces; reconnect";
      case errc::channel_closed: return "the peer closed the channel";
      case errc::aborted: return "aborted: the connection ended without an authenticated close";
      case errc::protocol_error: return "protocol error: malformed or unexpected message";
      case errc::timeout: return "timed out";
      case errc::not_found: return "not found: the peer is not listening on this relay";
      case errc::rejected: return "rejected: the peer refused the connection";
      case errc::peer_gone: return "the peer went away";
      case errc::rate_limited: return "rate limited by the relay; retry later";
      case errc::overloaded: return "the relay is overloaded; retry later or use another relay";
      case errc::not_allowed:
        return "not allowed: this relay's allowlist does not include this key";
      case errc::no_pending: return "no pending connection from that peer";
      case errc::relay_unreachable: return "no relay could be reached";
      case errc::not_a_friend:
        return "not a friend: the peer does not list this key as a friend; exchange friend "
               "tickets";
      case errc::not_a_relay: return "not a strelay relay (it answered in another protocol)";
      case errc::not_a_relay_http: return "not a strelay relay (it answered like HTTP)";
      case errc::not_a_relay_ssh: return "not a strelay relay (it answered like SSH)";
      case errc::not_a_relay_tls: return "not a strelay relay (it answered like TLS)";
      case errc::relay_shutting_down:
        return "relay shutting down: it is draining or restarting; other relays take over";
      case errc::topics_unsupported:
        return "this relay does not support topics (it predates them); listening without them";
    }
    return "unknown strelay error";
  }
};

}  // namespace

const std::error_category& strelay_category() noexcept {
  static const Category category;
  return category;
}

bool is_not_a_relay(std::error_code error) noexcept {
  return error == errc::not_a_relay || error == errc::not_a_relay_http ||
         error == errc::not_a_relay_ssh || error == errc::not_a_relay_tls;
}

bool is_permanent_refusal(std::error_code error) noexcept {
  return is_not_a_relay(error) || error == errc::not_allowed ||
         error == errc::relay_identity_mismatch || error == errc::unsupported_version ||
         error == errc::bad_magic;
}

}  // namespace strelay
