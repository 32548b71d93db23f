// Control messages (schema/relay.capnp) as our own regular values, and the ONE boundary where
// Cap'n Proto bytes become those values and back.
//
//   node -> relay  NodeMessage  = Listen{early_e2e} | Connect{target, e2e_msg1}
//                                 | Accept{from, e2e_msg1} | RejectConnection{from} | Standby
//                                 | JoinTopic{topic} | LeaveTopic{topic}
//   relay -> node  RelayMessage = ListenOk | IncomingConnection{from, e2e_msg1}
//                                 | Connected{peer, early_e2e} | Refused{reason}
//                                 | TopicJoined{topic, members, introduced}
//                                 | Introduction{topic, peer} | TopicRefused{topic, reason}
//                                 | TopicLeft{topic}
//
// The encoder writes each inner struct at the smallest size that holds the fields set, so a
// message without the optional fields is byte for byte what older versions wrote.
//
// Nothing outside messages.cpp touches a Cap'n Proto Reader or sets capnp::ReaderOptions.
// Decoding is total: any input, however hostile, gives either a value whose keys are valid
// Ed25519 points or errc::protocol_error, costs at most a bounded amount of work (a 4 KiB copy
// and a walk bounded by the traversal limit), and never throws.
#pragma once

#include <array>
#include <boost/system/result.hpp>
#include <cstdint>
#include <optional>
#include <span>
#include <system_error>
#include <variant>
#include <vector>

#include "common/keys.hpp"
#include "common/protocol.hpp"

namespace strelay {

// ---------------------------------------------------------------- node -> relay

// The body of an end-to-end handshake msg1 (the connector's ephemeral key), when it travels
// with Connect (docs/protocol.md 4.4, "The end-to-end msg1 with connect"). The relay only
// stores, forwards and compares it.
using E2eMsg1 = std::array<std::uint8_t, handshake_msg1_bytes>;

// Become the listener for the handshake's key. early_e2e: hand me connectors' end-to-end msg1.
struct Listen {
  bool early_e2e = false;
  friend bool operator==(const Listen&, const Listen&) = default;
};
// Be paired with the node listening as `target`.
struct Connect {
  PublicKey target;
  std::optional<E2eMsg1> e2e_msg1 =
      std::nullopt;  // our end-to-end msg1, for a listener that takes it
  friend bool operator==(const Connect&, const Connect&) = default;
};
// On a new connection of the listener's identity: pair with the oldest pending connect
// from `from`.
// e2e_msg1: pair with the connect that sent exactly this msg1; our msg2 follows this message.
struct Accept {
  PublicKey from;
  std::optional<E2eMsg1> e2e_msg1 = std::nullopt;
  friend bool operator==(const Accept&, const Accept&) = default;
};
// On the listening connection: refuse every pending connect from `from`.
struct RejectConnection {
  PublicKey from;
  friend bool operator==(const RejectConnection&, const RejectConnection&) = default;
};

// A first request by a key with a live Listen: park this connection, handshake done, so that
// the listener's next Accept rides on it (docs/protocol.md 4.1, "Standby").
struct Standby {
  friend bool operator==(const Standby&, const Standby&) = default;
};

// A topic's blinded id (docs/protocol.md 4.9; common/topic.hpp derives it): 32 opaque bytes.
using TopicId = std::array<std::uint8_t, 32>;

// On the listening connection: introduce me to this topic's members, and them to me.
struct JoinTopic {
  TopicId topic{};
  friend bool operator==(const JoinTopic&, const JoinTopic&) = default;
};
// On the listening connection: leave this topic (answered also when not a member).
struct LeaveTopic {
  TopicId topic{};
  friend bool operator==(const LeaveTopic&, const LeaveTopic&) = default;
};

using NodeMessage =
    std::variant<Listen, Connect, Accept, RejectConnection, Standby, JoinTopic, LeaveTopic>;

// ---------------------------------------------------------------- relay -> node

// Why a request failed; the values are the wire values of schema/relay.capnp's RefuseReason.
enum class RefuseReason : std::uint16_t {
  not_found = 0,     // connect: the target is not listening
  rejected = 1,      // connect: the listener refused
  timeout = 2,       // connect: no accept within the half-tunnel TTL
  peer_gone = 3,     // connect: the listener went away while pending
  rate_limited = 4,  // connect: this identity's rate, or the per-pair pending cap
  overloaded = 5,    // connect: a relay-wide resource limit
  no_pending = 6,    // accept: nothing pending from that key
  not_allowed = 7,   // listen/connect/accept: the allowlist excludes this key
};

struct ListenOk {
  friend bool operator==(const ListenOk&, const ListenOk&) = default;
};
struct IncomingConnection {
  PublicKey from;
  std::optional<E2eMsg1> e2e_msg1 = std::nullopt;  // only to a listener that said Listen{early_e2e}
  friend bool operator==(const IncomingConnection&, const IncomingConnection&) = default;
};
struct Connected {
  PublicKey peer;
  bool early_e2e = false;  // to the connector: the pipe starts with the peer's msg2
  friend bool operator==(const Connected&, const Connected&) = default;
};
struct Refused {
  RefuseReason reason = RefuseReason::not_found;
  friend bool operator==(const Refused&, const Refused&) = default;
};

// The answer to JoinTopic: `members` others were in the topic, the newest `introduced` of
// them are named by the Introductions that follow.
struct TopicJoined {
  TopicId topic{};
  std::uint32_t members = 0;
  std::uint32_t introduced = 0;
  friend bool operator==(const TopicJoined&, const TopicJoined&) = default;
};
// `peer` shares `topic` with this node (both joined it on this relay).
struct Introduction {
  TopicId topic{};
  PublicKey peer;
  friend bool operator==(const Introduction&, const Introduction&) = default;
};
// JoinTopic refused (overloaded, rate_limited, not_allowed); the listener stays.
struct TopicRefused {
  TopicId topic{};
  RefuseReason reason = RefuseReason::overloaded;
  friend bool operator==(const TopicRefused&, const TopicRefused&) = default;
};
struct TopicLeft {
  TopicId topic{};
  friend bool operator==(const TopicLeft&, const TopicLeft&) = default;
};

using RelayMessage = std::variant<ListenOk, IncomingConnection, Connected, Refused, TopicJoined,
                                  Introduction, TopicRefused, TopicLeft>;

// ---------------------------------------------------------------- the boundary

// Single-segment flat arrays; a multiple of 8 bytes and far below max_control_message_bytes.
std::vector<std::uint8_t> encode(const NodeMessage& message);
std::vector<std::uint8_t> encode(const RelayMessage& message);

// errc::protocol_error for anything that is not exactly one valid message: over 4096 bytes,
// not a multiple of 8, not exactly one segment, bytes after the segment, a bad pointer, a
// nesting or traversal limit hit (anywhere in the message, known fields or not), an unknown
// union member or enumerant, or a key that is not 32 bytes of a valid Ed25519 point.
boost::system::result<NodeMessage, std::error_code> try_decode_node_message(
    std::span<const std::uint8_t> bytes);
boost::system::result<RelayMessage, std::error_code> try_decode_relay_message(
    std::span<const std::uint8_t> bytes);

// The transport close that follows a refusal (each refusal ends its connection).
CloseReason close_reason_for(RefuseReason reason);
// What a node reports for a refusal: errc::not_found, errc::rejected, and so on.
std::error_code to_error_code(RefuseReason reason);
// A stable lower-case name ("not_found"), for logs and metric labels.
const char* to_string(RefuseReason reason);

}  // namespace strelay
