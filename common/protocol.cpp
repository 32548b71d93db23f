#include "common/protocol.hpp"

#include "common/errors.hpp"

namespace strelay {

std::error_code to_error_code(CloseReason reason, CloseOrigin origin) {
  switch (reason) {
    case CloseReason::not_allowed:
      return origin == CloseOrigin::relay ? errc::not_allowed : errc::not_a_friend;
    case CloseReason::protocol_error: return errc::protocol_error;
    case CloseReason::timeout: return errc::timeout;
    case CloseReason::overloaded: return errc::overloaded;
    case CloseReason::rate_limited: return errc::rate_limited;
    case CloseReason::dead_peer:
    case CloseReason::peer_gone: return errc::peer_gone;
    case CloseReason::aborted: return errc::aborted;
    case CloseReason::shutdown:
      return origin == CloseOrigin::relay ? errc::relay_shutting_down : errc::channel_closed;
    case CloseReason::normal:
    case CloseReason::replaced:
    case CloseReason::stalled:
    case CloseReason::internal: return errc::channel_closed;
  }
  return errc::protocol_error;  // not a reason: Transport::open() never lets one through
}

}  // namespace strelay
