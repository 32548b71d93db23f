// The node API: what an application (or a mobile app's native core) uses to reach its friends
// through relays. docs/node-library.md is the guide; this header is the reference.
//
//   Node node(executor, identity, log);
//   node.set_friends({alice});                         // who may connect to us
//   node.listen({relay1, relay2});                     // one listener connection per relay
//   auto in = co_await node.accept();                  // in.stream: an end-to-end Stream
//
//   auto out = co_await node.connect(alice_ticket);    // tries alice's relays in order
//   co_await out.stream->write(bytes); ...
//
// Connect: for each relay of the list, in order: DNS, TCP, the relay handshake pinned to the
// ticket's key, Connect{peer}, the outcome, then the end-to-end handshake pinned to the peer's
// key. Any failure moves on to the next relay (not found, refused, timeout, unreachable relay,
// wrong relay key, failed end-to-end handshake), except `rejected`: the peer itself said no,
// and asking again elsewhere would only repeat the question.
//
// Listen: one RelayLink per relay (common/relay_link), each reconnecting on its own with
// backoff. An IncomingConnection from a friend is accepted on the link's standby connection
// (handshake already done, NodeOptions::relay_standby) or else a new Accept connection, the
// end-to-end handshake checks that the initiator is the announced friend, and the stream waits
// in a queue (at most max_queued_streams, counting accepts in progress) for accept(). A key that
// is not a friend gets RejectConnection; when the queue is full, connects are left pending.
//
// Topics (docs/protocol.md 4.9): join_topic(name) joins a topic on every relay listened on
// (each relay sees its own blinded id, never the name), again after every reconnection. Each
// peer the relay introduces reaches NodeObserver::introduction once per (topic, relay, peer)
// while joined. With TopicOptions::accept_introduced, peers introduced on that topic may
// connect to this node as friends do, until it leaves; without it an introduction widens
// nothing. connect_introduced() connects to one; by convention the newcomer connects and the
// member accepts (TopicIntroduction::newcomer says which this node is).
//
// Threads: a Node and everything it returns belong to one executor; call them from it. Events
// reach the NodeObserver on that executor. The Logger and the observer must outlive the Node
// (or set_observer(nullptr) first). Destroying the Node stops listening and aborts the queued
// streams; streams already handed out live on independently.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <system_error>
#include <vector>

#include "common/backoff.hpp"
#include "common/keys.hpp"
#include "common/log.hpp"
#include "common/stream.hpp"
#include "common/tickets.hpp"

namespace strelay {

struct NodeOptions {
  BackoffOptions backoff{};  // listener reconnection
  // One relay attempt: DNS, TCP and the relay handshake (and ListenOk for a listener).
  std::chrono::milliseconds connect_timeout = node_connect_timeout;
  // A connector's wait for the listener's accept (the relay itself ends it at its TTL).
  std::chrono::milliseconds outcome_timeout = node_outcome_timeout;
  // The end-to-end handshake, from Connected.
  std::chrono::milliseconds handshake_timeout = handshake_deadline;
  // Keepalive of listener connections to relays (streams have their own, in `stream`).
  std::chrono::milliseconds relay_keepalive_interval = keepalive_interval;
  std::chrono::milliseconds relay_dead_peer_timeout = dead_peer_timeout;
  std::size_t max_queued_streams = node_max_queued_streams;
  // Keep a standby connection on each listened relay, so an accept costs one round trip
  // (docs/protocol.md 4.1, "Standby"); false: every accept opens a new connection.
  bool relay_standby = true;
  // Send our end-to-end msg1 with Connect, and take connectors' msg1 with IncomingConnection
  // (docs/protocol.md 4.4, "The end-to-end msg1 with connect"): the pipe then carries only msg2
  // and msg3. false: the whole end-to-end handshake runs in the pipe (and our Listen does not
  // ask for msg1s). Either way we interoperate with peers of both kinds.
  bool early_e2e = true;
  StreamOptions stream{};
  // The time the node's keepalives, backoff sleeps and accept() deadlines run on (empty:
  // steady_clock); also its streams', unless stream.clock is set. Socket deadlines (connect,
  // handshake, each frame) stay on steady_clock.
  SteadyNow clock{};
};

// Introduced peers a node remembers per topic (for the friend rule and to deliver each once);
// beyond, the oldest are forgotten.
inline constexpr std::size_t node_max_topic_peers = 4096;

struct TopicOptions {
  bool accept_introduced = false;  // peers introduced on this topic may connect to us
};

// A peer the relay `relay` introduced on the topic `topic` (the name this node joined).
struct TopicIntroduction {
  std::string topic;
  PublicKey peer;
  RelayTicket relay;
  // True when the introduction answers this node's own join (it is the topic's newcomer and,
  // by the helper's convention, the one that connects); false when `peer` joined after it.
  bool newcomer = false;
};

// Events, on the node's executor. Every member has an empty default.
class NodeObserver {
 public:
  virtual ~NodeObserver() = default;
  // A listener connection is up (ListenOk) on this relay.
  virtual void relay_up(const RelayTicket& /*relay*/) {}
  // A listener connection failed or ended; the next attempt comes after `retry_in`.
  virtual void relay_down(const RelayTicket& /*relay*/, std::error_code /*why*/,
                          std::chrono::milliseconds /*retry_in*/) {}
  virtual void relay_rtt(const RelayTicket& /*relay*/, std::chrono::steady_clock::duration) {}
  // A connect attempt through one relay failed; connect() moves on to the next one.
  virtual void connect_failed(const RelayTicket& /*relay*/, const PublicKey& /*peer*/,
                              std::error_code /*why*/) {}
  // An end-to-end stream is established (either direction).
  virtual void peer_connected(const PublicKey& /*peer*/, const RelayTicket& /*via*/) {}
  // A stream ended: no error after a clean end, else why.
  virtual void peer_gone(const PublicKey& /*peer*/, std::error_code /*why*/) {}
  virtual void peer_rtt(const PublicKey& /*peer*/, std::chrono::steady_clock::duration) {}
  // Topics: joined on a relay (`members` others were in it, `introduced` of them follow as
  // introductions); refused there (overloaded, rate_limited, not_allowed, or
  // topics_unsupported: a relay from before topics); a peer introduced.
  virtual void topic_joined(const std::string& /*topic*/, const RelayTicket& /*relay*/,
                            std::uint32_t /*members*/, std::uint32_t /*introduced*/) {}
  virtual void topic_refused(const std::string& /*topic*/, const RelayTicket& /*relay*/,
                             std::error_code /*why*/) {}
  virtual void introduction(const TopicIntroduction& /*introduction*/) {}
};

// One relay's part in a connect().
struct RelayAttempt {
  RelayTicket relay;
  std::error_code error;
};

struct ConnectResult {
  std::optional<Stream> stream;  // set on success
  std::error_code error;         // why no relay worked (see Node::connect)
  std::optional<RelayTicket> via;
  std::vector<RelayAttempt> failures;  // in the order tried
};

struct AcceptResult {
  std::optional<Stream> stream;
  std::error_code error;  // errc::timeout at the deadline; channel_closed when not listening
  std::optional<RelayTicket> via;
};

// The state of one listener connection.
struct RelayStatus {
  RelayTicket relay;
  bool up = false;
  std::optional<std::chrono::steady_clock::duration> rtt;
};

class Node {
 public:
  // `log` must outlive the node. Throws std::invalid_argument for bad backoff options.
  Node(boost::asio::any_io_executor executor, Identity identity, Logger& log,
       NodeOptions options = {});
  Node(Node&&) noexcept;
  Node& operator=(Node&&) noexcept;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;
  ~Node();

  const PublicKey& public_key() const;
  void set_observer(NodeObserver* observer);
  // The keys that may connect to this node; nobody until set. Applies to connects from now on.
  void set_friends(std::set<PublicKey> friends);

  // Listens on every relay of `relays` at once (replacing an earlier set): non-blocking.
  void listen(std::vector<RelayTicket> relays);
  // Closes the listener connections (pending connectors then get peer_gone) and aborts queued
  // streams; a waiting accept() returns channel_closed.
  void stop_listening();
  // After a network change: every listener connection reconnects now, with a fresh backoff.
  void reconnect_now();
  std::vector<RelayStatus> relays() const;

  // Joins `name` (UTF-8, 1 to 256 bytes; else std::invalid_argument) on every relay listened
  // on, now and after every listen() and reconnection; joining again changes the options.
  void join_topic(const std::string& name, TopicOptions options = {});
  // Leaves it everywhere; its introduced peers are no longer accepted (unless friends).
  void leave_topic(const std::string& name);
  // Connects to an introduced peer through the relay that introduced it.
  boost::asio::awaitable<ConnectResult> connect_introduced(const TopicIntroduction& introduction) {
    return connect(introduction.peer, {introduction.relay});
  }

  // The next incoming stream from a friend.
  boost::asio::awaitable<AcceptResult> accept(
      std::chrono::steady_clock::time_point until = std::chrono::steady_clock::time_point::max());

  // Connects to `peer` through `relays`, tried in order. The error, when none worked, is the
  // most telling one: rejected (stops at once), then what the peer's end said
  // (peer_identity_mismatch, not_allowed by the peer, decrypt_failed, ...), then not_found /
  // timeout / peer_gone, then relay refusals (not_allowed, rate_limited, overloaded), then
  // relay_identity_mismatch, then relay_unreachable. `failures` lists every relay's error.
  boost::asio::awaitable<ConnectResult> connect(PublicKey peer, std::vector<RelayTicket> relays);
  boost::asio::awaitable<ConnectResult> connect(const FriendTicket& ticket) {
    return connect(ticket.public_key, ticket.relays);
  }

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace strelay
