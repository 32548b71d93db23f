// A node's connections to one relay: opening a hop connection from a relay ticket, waiting for
// a pairing's outcome, and the listener's long-lived connection with its reconnection loop.
//
// Hop connection (docs/protocol.md sections 2 and 4): DNS, TCP, then the relay handshake pinned
// to the ticket's key, with the first request (Listen, Connect or Accept) in msg3. A relay that
// does not hold the ticket's key is detected at msg2, before this node's identity is sent.
//
// RelayLink keeps one listener connection open on one relay:
//
//   connect + Listen ── ListenOk ── up: keepalive (common/keepalive), report
//      ^                              IncomingConnection{from} to the node, send its
//      |                              RejectConnection{from}; down on close, error, dead relay
//      └── sleep: Backoff (full jitter, cap; reset after a stable listen) ──┘
//          (a refusal the relay will repeat: permanent_refusal_retry instead, issue 20.4)
//
// Standby (docs/protocol.md 4.1): while up, the link keeps one more connection to the relay,
// its handshake done and parked with Standby, so that the node's next Accept rides on it and
// costs one round trip instead of a TCP connect and a handshake. take_standby() hands it out
// and opens the next one in the background; it is dropped whenever the listen ends.
//
// Topics (docs/protocol.md 4.9): the link keeps the set of topic ids the node joined on this
// relay, sends JoinTopic for each after every ListenOk (membership ends with a listen
// connection) and JoinTopic / LeaveTopic at once while up, and hands the relay's answers and
// introductions to on_topic. A relay that answers a join with Close{protocol_error} predates
// topics: the link says so (on_topics_unsupported) and listens again without them.
//
// Timers of a link (all from LinkOptions): the attempt deadline (DNS + TCP + handshake +
// ListenOk), the keepalive interval and dead-relay timeout while up, the write deadline of each
// frame, and the backoff sleep. A relay restart, a network change (detected by the keepalive),
// a replaced listen or a refused one all lead back to the sleep; reconnect_now() cuts it short.
//
// Ownership: a link runs one coroutine on its executor; stop() and reconnect_now() are called
// on that executor. The coroutine holds a shared_ptr to the link, so the link lives until the
// coroutine has seen stop(). Callbacks run on the executor and must not call stop() on the link
// that called them (they may flag it for later).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <system_error>
#include <vector>

#include "common/backoff.hpp"
#include "common/channel.hpp"
#include "common/clock.hpp"
#include "common/keepalive.hpp"
#include "common/keys.hpp"
#include "common/log.hpp"
#include "common/messages.hpp"
#include "common/tickets.hpp"
#include "common/wakeup.hpp"

namespace strelay {

// Opens a hop connection to `relay` with `request` as the first request, all before `deadline`.
// Errors: relay_unreachable (no address, no TCP connection, or the relay closed or fell silent
// before msg2), relay_identity_mismatch (the relay does not hold the ticket's key; our identity
// was not sent), unsupported_version, handshake_failed.
boost::asio::awaitable<std::error_code> open_relay_channel(const RelayTicket& relay,
                                                           const Identity& self,
                                                           const NodeMessage& request,
                                                           Deadline deadline,
                                                           std::optional<Channel>& out);

// Waits for the one outcome of a Connect or an Accept, sending nothing meanwhile (a pending
// connector must stay silent). Connected: no error and `peer` set; the channel is then between
// frames, ready for release_socket(). Refused: its error (errc::not_found, rejected, ...). A
// close from the relay: channel_closed (or not_allowed, peer_gone, ...). errc::timeout at the
// deadline; errc::protocol_error for any other message. `early_e2e`, when given, is set from
// Connected: the pipe starts with the peer's end-to-end msg2 (the connector's msg1 went with
// its Connect and the acceptor answered it).
boost::asio::awaitable<std::error_code> await_pairing(Channel& channel, Deadline deadline,
                                                      PublicKey& peer, bool* early_e2e = nullptr);

struct LinkOptions {
  BackoffOptions backoff{};
  std::chrono::milliseconds attempt_timeout = node_connect_timeout;  // through ListenOk
  std::chrono::milliseconds keepalive_interval = strelay::keepalive_interval;
  std::chrono::milliseconds dead_peer_timeout = strelay::dead_peer_timeout;
  std::chrono::milliseconds write_stall = write_stall_timeout;
  // The pause after a refusal the relay will repeat (is_permanent_refusal): not allowed, another
  // key or version, not a relay at all. Never shorter than the backoff's delay.
  std::chrono::milliseconds permanent_refusal_retry = node_permanent_refusal_retry;
  // The time the keepalive and the backoff sleep run on (empty: steady_clock).
  SteadyNow clock{};
  bool standby = true;  // keep a standby connection while up
  // Listen{early_e2e}: take connectors' end-to-end msg1 in IncomingConnection (docs/protocol.md
  // 4.4, "The end-to-end msg1 with connect").
  bool early_e2e = true;
};

enum class IncomingDecision {
  accept,  // the node opens an Accept connection itself
  reject,  // the link sends RejectConnection{from}: the connector gets Refused{rejected}
  ignore,  // left pending (the node is full): the relay's TTL ends it
};

struct LinkCallbacks {
  std::function<void()> on_up;
  // After each failed attempt or lost connection, with the delay before the next attempt.
  std::function<void(std::error_code why, std::chrono::milliseconds retry_in)> on_down;
  // e2e_msg1: the connector's end-to-end msg1, when it sent one and we said early_e2e.
  std::function<IncomingDecision(const PublicKey& from, const std::optional<E2eMsg1>& e2e_msg1)>
      on_incoming;
  std::function<void(std::chrono::steady_clock::duration rtt)> on_rtt;
  // TopicJoined, Introduction, TopicRefused or TopicLeft from the relay (for any topic id: the
  // node drops those it did not join).
  std::function<void(const RelayMessage& message)> on_topic;
  std::function<void()> on_topics_unsupported;
};

class RelayLink : public std::enable_shared_from_this<RelayLink> {
 public:
  RelayLink(boost::asio::any_io_executor executor, RelayTicket ticket,
            std::shared_ptr<const Identity> self, LinkOptions options, LinkCallbacks callbacks,
            Logger& log, Backoff::Random random = {});
  RelayLink(const RelayLink&) = delete;
  RelayLink& operator=(const RelayLink&) = delete;

  void start();
  // Ends the connection and the loop; no callback is made after this returns.
  void stop();
  // A network change: drop the connection (it may be dead without our knowing), reset the
  // backoff and reconnect now.
  void reconnect_now();

  const RelayTicket& ticket() const { return ticket_; }
  bool up() const { return up_; }
  // The parked standby connection, if one is ready; the caller sends its Accept on it. Its
  // relay may have closed it meanwhile: then the Accept's answer is that close, and the caller
  // falls back to a new connection.
  std::optional<Channel> take_standby();
  // The taken standby's Accept has its answer (or failed): open the next one in the background.
  // Not sooner: a standby that reached the relay before the taken one's Accept would replace it
  // (Close{replaced}), and that session would pay the fallback.
  void standby_used() { open_standby(); }
  std::optional<std::chrono::steady_clock::duration> rtt() const { return rtt_; }
  // Topic membership on this relay, kept across reconnections (see above).
  void join_topic(const TopicId& topic);
  void leave_topic(const TopicId& topic);
  bool topics_supported() const { return !topics_unsupported_; }

 private:
  boost::asio::awaitable<void> run();
  boost::asio::awaitable<std::error_code> listen_once();
  boost::asio::awaitable<std::error_code> await_listen_ok(Deadline deadline);
  boost::asio::awaitable<std::error_code> serve();
  std::error_code handle(const Message& message);
  std::error_code handle_control(std::span<const std::uint8_t> body);
  // Waits until the relay sends a byte, `until`, or a wake-up (stop, topics to send); false
  // without a byte waiting.
  boost::asio::awaitable<bool> wait_readable(Deadline until);
  void queue_topic(bool join, const TopicId& topic);
  void open_standby();
  boost::asio::awaitable<void> standby_once(std::uint64_t generation);
  LogTags tags() const { return {0, ticket_.public_key}; }
  std::chrono::steady_clock::time_point now() const { return now_on(options_.clock); }

  boost::asio::any_io_executor executor_;
  RelayTicket ticket_;
  std::shared_ptr<const Identity> self_;
  LinkOptions options_;
  LinkCallbacks callbacks_;
  Logger& log_;
  Backoff backoff_;
  Wakeup sleep_;                        // the backoff's sleep, and serve()'s wait between frames
  std::optional<Channel> channel_;      // the current listener connection (owned by run())
  std::optional<Keepalive> keepalive_;  // of the current connection (owned by run())
  std::vector<PublicKey> rejects_due_;
  std::set<TopicId> topics_;                         // joined on this relay
  std::vector<std::pair<bool, TopicId>> topic_ops_;  // (join?, id) due on the connection
  std::size_t joins_unanswered_ = 0;                 // on the current connection
  bool topics_unsupported_ = false;                  // the relay closed on a join
  std::optional<std::chrono::steady_clock::duration> rtt_;
  bool stopped_ = false;
  bool up_ = false;
  std::chrono::steady_clock::time_point up_since_{};
  bool reconnect_ = false;          // reconnect_now() was called
  std::optional<Channel> standby_;  // parked on the relay, handshake done
  bool standby_opening_ = false;
  std::uint64_t generation_ = 0;  // of the listen connection; a standby belongs to one
};

}  // namespace strelay
