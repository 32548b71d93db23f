// The end-to-end handshake with its msg1 sent early, in Connect (docs/protocol.md 4.4, "The
// end-to-end msg1 with connect"; issue 17.2). The same Noise XK1sig handshake as in the pipe
// (section 2, end-to-end layer), only its messages travel differently:
//
//   connector                      relay                        listener
//   Connect{target, e2eMsg1} ----> IncomingConnection{from, e2eMsg1} ----> (consume msg1)
//                                  <---------------- Accept{from, e2eMsg1} || msg2 (raw)
//   <---- Connected{earlyE2e} || msg2 (the pipe's first bytes)     Connected{peer} ---->
//   msg3 (raw, the pipe) ---------------------------------------------------------------->
//
// No preamble travels in the pipe: the hop both sides already speak fixed the version, and the
// preamble's bytes still open the prologue. The relay sees msg1 and msg2 as it sees them in a
// pipe today: an ephemeral key and ciphertext.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <functional>
#include <optional>
#include <system_error>
#include <vector>

#include "common/channel.hpp"
#include "common/handshake.hpp"
#include "common/messages.hpp"

namespace strelay {

// The connector's msg1 body, for Connect{e2e_msg1}.
E2eMsg1 early_msg1(InitiatorHandshake& handshake);

// The connector, after Connected{early_e2e}: reads msg2 from the pipe (a responder without the
// pinned key: errc::peer_identity_mismatch, and msg3 is never sent), then sends msg3 with an
// empty payload. On failure the socket stays with the caller.
boost::asio::awaitable<std::error_code> finish_early_connect(tcp::socket& socket,
                                                             InitiatorHandshake& handshake,
                                                             Deadline deadline,
                                                             std::optional<Channel>& out);

// The listener: takes msg1 from IncomingConnection (its DH, before the Accept). False when it
// fails its checks (a small-order key): then it is not answered early.
bool take_early_msg1(ResponderHandshake& handshake, const E2eMsg1& msg1);
// Then msg2, with its length prefix, made after the Accept frame is sent (its signature then
// overlaps the relay's pairing) and written right after it.
std::vector<std::uint8_t> early_msg2(ResponderHandshake& handshake);

// Writes `bytes` (msg2) on the socket before `deadline`: after the Accept frame, which the
// relay reads exactly, so they are the pipe's first bytes once it pairs.
boost::asio::awaitable<std::error_code> send_early_msg2(tcp::socket& socket,
                                                        std::span<const std::uint8_t> bytes,
                                                        Deadline deadline);

// The listener, after Connected: reads msg3 from the pipe, then admit_initiator's checks (the
// initiator is `announced` and a friend, no payload).
boost::asio::awaitable<std::error_code> finish_early_accept(
    tcp::socket& socket, ResponderHandshake& handshake, const PublicKey& announced,
    const std::function<bool(const PublicKey&)>& is_friend, Deadline deadline,
    std::optional<Channel>& out);

}  // namespace strelay
