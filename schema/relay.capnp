@0xc747d8d107ce9c1c;
# Control messages between a node and a strelay relay (docs/protocol.md, section 4).
#
# A control message travels in one transport frame of kind `control` (FrameKind 1), or as the
# payload of handshake msg3 (the node's first request). Its encoding:
#   - the standard Cap'n Proto flat-array serialisation, with exactly ONE segment;
#   - at most 4096 bytes, a multiple of 8, and no bytes after the segment;
#   - read with a traversal limit of 2048 words and a nesting limit of 8.
# Anything else is a protocol error, and the relay closes the connection with
# Close{protocol_error}.
#
# Identity: a node's own key never appears in a message. The relay takes it from the
# handshake, which the node signed, so a message cannot claim to come from someone else.
#
# Keys are Ed25519 public keys: Data of exactly 32 bytes that is a valid, canonical point of
# prime order (libsodium's crypto_core_ed25519_is_valid_point). Any other length or value is a
# protocol error.
#
# Evolution: a union member this version does not know (a newer peer's new request or reply)
# is a protocol error, never silently ignored. Unknown fields inside a known struct are still
# validated (bounds, nesting, traversal limit) and then ignored, as Cap'n Proto intends.
# Every request and reply is its own struct, so each can gain fields later.
#
# Ping, pong and close are transport frame kinds, not control messages; they are not here.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("strelay::schema");

struct NodeMessage {
  # A request from a node to the relay. A connection's first request is exactly one of
  # listen, connect, accept or standby; only a listening connection sends anything after that
  # (rejectConnection, any number of times), and a standby connection (one accept).

  union {
    listen @0 :Listen;
    # Make this connection the listener for the node's key. Answered with listenOk; the
    # newest listen for a key wins, and the previous listener is closed with Close{replaced}.

    connect @1 :Connect;
    # Ask to be paired with a listening key. Answered with exactly one of connected or
    # refused{notFound, rejected, timeout, peerGone, rateLimited, overloaded, notAllowed}.

    accept @2 :Accept;
    # Sent on a NEW connection by a listener's identity, or on its standby: pair this connection with the oldest
    # pending connect from `from`. Answered with connected, or refused{noPending, notAllowed}.

    rejectConnection @3 :RejectConnection;
    # Sent on the listening connection: refuse every pending connect from `from`. Each of
    # those connectors gets refused{rejected}. No reply to the listener.

    standby @4 :Standby;
    # A first request only, by a key with a live listen on this relay: park this connection as
    # the listener's standby, so that a later accept rides on it with its handshake already
    # done. No reply while parked; the next and only request allowed on it is accept. At most
    # one per key: a newer standby replaces the older (Close{replaced}); the standby is closed
    # when its listen is replaced (Close{replaced}) or ends (Close{normal}); without a live
    # listen it gets refused{notFound}.

    joinTopic @5 :JoinTopic;
    # On the listening connection: introduce me to the keys listening here that joined the
    # same topic id (docs/protocol.md 4.9). Answered with topicJoined then its introductions,
    # or topicRefused; the listener stays either way.

    leaveTopic @6 :LeaveTopic;
    # On the listening connection: leave a topic. Answered with topicLeft, also for a topic
    # not joined.
  }
}

struct JoinTopic {
  topicId @0 :Data;
  # BLAKE2b-256 keyed with the relay's key over "strelay v1 topic" 0x00 name: exactly 32
  # bytes, never the name. Any other length is a protocol error.
}

struct LeaveTopic {
  topicId @0 :Data;
  # As in joinTopic: exactly 32 bytes.
}

struct Listen {
  # The key to listen on is the one the handshake authenticated.
  earlyE2e @0 :Bool;
  # This listener takes a connector's end-to-end msg1 in incomingConnection (docs/protocol.md
  # 4.4, "The end-to-end msg1 with connect"). False (and any older listener): it never gets one.
}

struct Standby {
  # No fields yet: the key is the one the handshake authenticated.
}

struct Connect {
  target @0 :Data;
  # The listener's Ed25519 public key (32 bytes).
  e2eMsg1 @1 :Data;
  # Optional: the body of the connector's end-to-end handshake msg1 (its ephemeral key),
  # exactly 32 bytes, or empty (absent). Any other length is a protocol error. The relay never
  # interprets it: it hands it to a listener that said earlyE2e, and compares it in accept.
}

struct Accept {
  from @0 :Data;
  # The connector's Ed25519 public key (32 bytes), as announced by incomingConnection.
  e2eMsg1 @1 :Data;
  # Optional: the end-to-end msg1 (32 bytes) of the connect being answered, as received in
  # incomingConnection: pair with the pending connect from `from` that sent exactly these
  # bytes (none: refused{noPending}), and the acceptor's end-to-end msg2 follows this message
  # as the first bytes of the pipe. Empty (absent): the oldest pending connect from `from`, and
  # the end-to-end handshake runs wholly in the pipe.
}

struct RejectConnection {
  from @0 :Data;
  # The connector's Ed25519 public key (32 bytes), as announced by incomingConnection.
}

struct RelayMessage {
  # A reply or notification from the relay to a node.

  union {
    listenOk @0 :ListenOk;
    # This connection is now the listener for the node's key.

    incomingConnection @1 :IncomingConnection;
    # Pushed on the listening connection: a node wants to connect. To accept, open a new
    # connection whose first request is accept{from}; to refuse, send rejectConnection{from}.

    connected @2 :Connected;
    # The pair is made. From the next byte on, this connection is a raw pipe to the peer,
    # over which the two nodes run their own end-to-end handshake.

    refused @3 :Refused;
    # The request failed; the relay then closes the connection (docs/protocol.md lists the
    # close reason that goes with each refuse reason).

    topicJoined @4 :TopicJoined;
    # The answer to joinTopic; the introductions it announces follow it.

    introduction @5 :Introduction;
    # Pushed on the listening connection: `peer` joined a topic id this node joined.

    topicRefused @6 :TopicRefused;
    # joinTopic failed; unlike refused, nothing closes: the listener stays.

    topicLeft @7 :TopicLeft;
    # The answer to leaveTopic.
  }
}

struct TopicJoined {
  topicId @0 :Data;
  # The topic id joined (32 bytes).
  members @1 :UInt32;
  # How many other nodes were members when this one joined.
  introduced @2 :UInt32;
  # How many of them (the newest first) the introductions that follow name.
}

struct Introduction {
  topicId @0 :Data;
  # A topic id this node joined (32 bytes).
  peer @1 :Data;
  # The introduced node's Ed25519 public key (32 bytes), listening on this relay.
}

struct TopicRefused {
  topicId @0 :Data;
  # The topic id of the refused joinTopic (32 bytes).
  reason @1 :RefuseReason;
  # overloaded (this node's topics or the topic's members at their cap), rateLimited (joins
  # and leaves too fast on this connection) or notAllowed (the allowlist).
}

struct TopicLeft {
  topicId @0 :Data;
  # The topic id left (32 bytes).
}

struct ListenOk {
  # No fields yet.
}

struct IncomingConnection {
  from @0 :Data;
  # The connector's Ed25519 public key (32 bytes), authenticated by its handshake.
  e2eMsg1 @1 :Data;
  # The connector's end-to-end msg1 (32 bytes), only to a listener that said earlyE2e and only
  # when the connect carried one; else empty.
}

struct Connected {
  peer @0 :Data;
  # The other end's Ed25519 public key (32 bytes): for the connector the listener's key, for
  # the acceptor the connector's key. The end-to-end handshake must then prove this key.
  earlyE2e @1 :Bool;
  # To the connector only: the acceptor answered its connect's e2eMsg1, so the pipe starts
  # with the acceptor's end-to-end msg2 (the connector sends no preamble or msg1 in the pipe).
  # False: the whole end-to-end handshake runs in the pipe, as without e2eMsg1.
}

struct Refused {
  reason @0 :RefuseReason;
  # Why the request failed. A value this version does not know is a protocol error.
}

enum RefuseReason {
  # Why the relay refused a request. Each is final for that connection.

  notFound @0;
  # connect: the target key is not listening on this relay (answered at once).
  rejected @1;
  # connect: the listener sent rejectConnection for this connector.
  timeout @2;
  # connect: no accept arrived within the half-tunnel TTL (30 s by default).
  peerGone @3;
  # connect: the listener's connection went away while the connect was pending.
  rateLimited @4;
  # connect: too many connects from this identity (a token bucket), or too many pending to
  # the same listener.
  overloaded @5;
  # connect: the relay is at a resource limit (pending half-tunnels in total).
  noPending @6;
  # accept: there is no pending connect from that key to this identity.
  notAllowed @7;
  # listen, connect or accept: the relay's allowlist does not include this node's key.
}
