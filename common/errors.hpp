// The project's error codes, returned by I/O boundaries as std::error_code.
// Each message tells an operator or user what happened and, where it helps, what to do.
#pragma once

#include <system_error>

namespace strelay {

enum class errc {
  ok = 0,
  // preamble and handshake
  bad_magic = 1,            // the peer does not speak strelay
  unsupported_version,      // the peer speaks another protocol version
  handshake_failed,         // a handshake message failed to authenticate (no detail on purpose)
  relay_identity_mismatch,  // the relay is not the one named in the ticket
  peer_identity_mismatch,   // the end-to-end peer is not the expected key
  handshake_timeout,        // the absolute handshake deadline passed
  // framing and transport
  frame_too_large,  // a length above the limit
  decrypt_failed,   // a frame failed to authenticate; the channel is over
  nonce_exhausted,  // the 2^64-1 nonce limit; the channel must be re-established
  channel_closed,   // the channel was closed with an authenticated close
  aborted,          // EOF or reset without an authenticated close
  protocol_error,   // a malformed or unexpected message
  timeout,          // a deadline passed
  // relay outcomes seen by a node
  not_found,          // the key is not listening on this relay
  rejected,           // the listener refused the connection
  peer_gone,          // the other side went away
  rate_limited,       // the relay's rate limit was hit
  overloaded,         // the relay is at a resource limit
  not_allowed,        // this relay's allowlist does not include us
  no_pending,         // Accept found no half-tunnel for that key
  relay_unreachable,  // no relay could be reached
  // end to end
  not_a_friend,  // the peer (or we) refused: the key is not on its friend list
  // what answers at a relay's address (issue 20.4, 20.1); added last, so no value moves
  not_a_relay,          // something that is not a strelay relay answered (unknown protocol)
  not_a_relay_http,     // an HTTP server answered
  not_a_relay_ssh,      // an SSH server answered
  not_a_relay_tls,      // a TLS server answered
  relay_shutting_down,  // the relay closed with Close{shutdown}: it is draining or restarting
  topics_unsupported,   // the relay predates topics (it closed on JoinTopic)
};

// True for the not_a_relay family: the address answers, but not as a strelay relay.
bool is_not_a_relay(std::error_code error) noexcept;
// True for refusals that the same relay will repeat (its allowlist, its key, its protocol, or
// not a relay at all): a listener retries them only after a long pause (issue 20.4).
bool is_permanent_refusal(std::error_code error) noexcept;

const std::error_category& strelay_category() noexcept;

inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), strelay_category()};
}

}  // namespace strelay

template <>
struct std::is_error_code_enum<strelay::errc> : std::true_type {};
