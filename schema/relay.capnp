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
  }
}

struct Listen {
  # No fields yet: the key to listen on is the one the handshake authenticated.
}

struct Standby {
  # No fields yet: the key is the one the handshake authenticated.
}

struct Connect {
  target @0 :Data;
  # The listener's Ed25519 public key (32 bytes).
}

struct Accept {
  from @0 :Data;
  # The connector's Ed25519 public key (32 bytes), as announced by incomingConnection.
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
  }
}

struct ListenOk {
  # No fields yet.
}

struct IncomingConnection {
  from @0 :Data;
  # The connector's Ed25519 public key (32 bytes), authenticated by its handshake.
}

struct Connected {
  peer @0 :Data;
  # The other end's Ed25519 public key (32 bytes): for the connector the listener's key, for
  # the acceptor the connector's key. The end-to-end handshake must then prove this key.
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
