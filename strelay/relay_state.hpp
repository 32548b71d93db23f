// The pairing table (sans-io): listen / connect / accept / reject, as decisions.
//
// RelayState is a plain single-threaded object. It takes requests that arrived on connections
// (ConnId, given by the caller, never reused) together with the key that the connection's
// handshake authenticated and the current time, and returns Actions for the caller to perform
// in order: send a message, close a connection with a reason, or join two connections into a
// pipe. It never reads a clock, owns a socket or runs a timer; the daemon guards it with a
// mutex and arms one timer at next_deadline().
//
// clang-format off
// Half-tunnel (a Connect that found its target listening), from C (key S) to listener key T:
//
//   connect(C, S, T) -+- T not listening ...................... Refused{not_found}
//                     +- S not allowed / rate / caps ........... Refused{not_allowed |
//                     |                                            rate_limited | overloaded}
//                     +- ok: T's listener gets IncomingConnection{S}
//                          |
//                       PENDING -+- accept(A, self = T, from = S) .. Paired{C, A} (oldest first)
//                          |     +- reject(T's listener, from = S) . Refused{rejected} (all of S)
//                          |     +- now > created + ttl ............ Refused{timeout}
//                          |     +- T's listener goes, none newer .. Refused{peer_gone}
//                          |     +- allowlist reload drops S ....... Refused{not_allowed}
//                          |     +- C disconnects or errs .......... removed (C is gone)
//                          +- T's listener replaced by a newer Listen: stays PENDING, and the
//                             new listener gets IncomingConnection{S} (same identity, can accept)
// clang-format on
//
// Every Refused{r} to a connection is followed at once by CloseConn{that connection,
// close_reason_for(r)}: a connection carries one request (Listen, Connect or Accept), and
// after its outcome (a refusal, Paired, a CloseConn) RelayState forgets it. The caller must not
// feed it anything more from such a connection; disconnect() of it is a harmless no-op.
//
// Roles, and what each may send (anything else: Close{protocol_error}, and the role's state
// is cleaned up as on disconnect):
//   new connection       Listen, Connect, Accept or Standby (a key with a live listener)
//   listener (key K)     RejectConnection, any number of times
//   standby (key K)      one Accept, which makes it an acceptor
//   pending connector    nothing (it waits for its outcome)
//
// Rules chosen (docs/protocol.md, section 4, is the specification):
//   - The newest Listen for a key wins; the previous listener gets Close{replaced}.
//   - Connect to self is allowed like any other key: another device of the same identity
//     may be listening.
//   - Several Connects from S to T may be pending, up to limits.half_tunnels_per_pair (8);
//     one more gets Refused{rate_limited}. Accept(S) pairs the oldest; Reject(S) refuses all.
//   - Accept pairs only half-tunnels whose target is the acceptor's own authenticated key;
//     from any other identity it finds nothing: Refused{no_pending}.
//   - A RejectConnection naming a key with nothing pending is a no-op (it raced an outcome).
//   - Checks on Connect, in order: allowlist, rate (a token bucket per identity, so a flood
//     of Connects to absent keys is rate-limited too), rate per source (all its identities),
//     target listening, cap per target (overloaded), cap per source (overloaded), total cap,
//     pair cap. At the total cap, fair share: when the connector's site would still hold
//     fewer than the heaviest site, the heaviest site's oldest half-tunnel is refused
//     (overloaded) and the new one takes its place; otherwise the new one is refused.
//   - A Listen beyond its source's listener cap is refused (overloaded); a replacing Listen
//     for the same key from the same source never is.
//   - Every call that takes `now` first expires what is due, so outcomes depend only on the
//     times given, not on when the caller's timer fired.
//   - Action order: expiries first (oldest first), then the request's own actions; several
//     half-tunnels ending together end in the order they were made.
//
// Metrics: the caller counts outcomes from the actions it performs (Refused by reason, Paired,
// CloseConn by reason); RelayState keeps only gauges.
//
// Memory: entries exist only for listeners, pending half-tunnels (at most half_tunnels_total)
// and identities whose connect bucket is not full (at most rate_entries_total; full buckets
// are dropped, least recently used first). A refused Connect stores nothing but its bucket.
// Tables keyed by client-chosen keys use a keyed hash (SipHash, random per-process key).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <list>
#include <map>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <variant>
#include <vector>

#include "common/allowlist.hpp"
#include "common/keys.hpp"
#include "common/messages.hpp"
#include "common/protocol.hpp"
#include "strelay/limits.hpp"
#include "strelay/topics.hpp"

namespace strelay {

using ConnId = std::uint64_t;

struct PairingLimits {
  Clock::duration half_tunnel_ttl = strelay::half_tunnel_ttl;
  double connect_rate = connect_rate_per_identity;  // Connects per second per identity
  double connect_burst = connect_burst_per_identity;
  std::size_t half_tunnels_total = max_half_tunnels;              // beyond: overloaded (fair share)
  std::size_t half_tunnels_per_pair = max_half_tunnels_per_pair;  // beyond: rate_limited
  std::size_t rate_entries_total = max_rate_limited_identities;   // beyond: overloaded
  // Per source (sources.hpp; a request given no source is not counted): beyond, overloaded.
  SourceCaps listeners{max_listeners_per_source, 4 * max_listeners_per_source};
  SourceCaps half_tunnels{max_half_tunnels_per_source, 4 * max_half_tunnels_per_source};
  std::size_t half_tunnels_per_target = max_half_tunnels_per_target;  // beyond: overloaded
  double connect_rate_per_source = strelay::connect_rate_per_source;  // per host: rate_limited
  double connect_burst_per_source = strelay::connect_burst_per_source;
  TopicLimits topics;  // topics per node, members per topic, introductions per join
  // Joins and leaves per second per listening connection; beyond: TopicRefused{rate_limited}
  // (a leave still leaves).
  double topic_churn_rate = strelay::topic_churn_rate;
  double topic_churn_burst = strelay::topic_churn_burst;
  // Introductions sent to one listening connection per second; a pair is introduced only when
  // both of its ends have a token, so a flood of newcomers cannot flood a member.
  double introduction_rate = strelay::introduction_rate;
  double introduction_burst = strelay::introduction_burst;
};

// Which pairing limit refused a request, for the limit_hits_total metric.
enum class PairingLimit {
  listeners_per_source,
  half_tunnels_per_source,
  half_tunnels_per_target,
  half_tunnels_total,  // refused, or a heavier source's oldest was cut (fair share)
  connect_rate_per_source,
  topics_per_node,    // a join beyond the node's topics (issue 18)
  members_per_topic,  // a join into a full topic
  topic_churn,        // joins and leaves too fast on one listening connection
  introductions,      // a pair not introduced: one of its ends had no introduction token
};
inline constexpr std::size_t pairing_limit_count = 9;

// Send `message` on connection `to`.
struct SendTo {
  ConnId to = 0;
  RelayMessage message;
  friend bool operator==(const SendTo&, const SendTo&) = default;
};
// Send the transport's Close{reason} on `conn`, then close it.
struct CloseConn {
  ConnId conn = 0;
  CloseReason reason = CloseReason::normal;
  friend bool operator==(const CloseConn&, const CloseConn&) = default;
};
// Pairing made: send Connected{listener_key} to `connector` and Connected{connector_key} to
// `acceptor`, then join the two connections into a pipe.
struct Paired {
  ConnId connector = 0;
  ConnId acceptor = 0;
  PublicKey connector_key;
  PublicKey listener_key;
  // The acceptor answered the connector's end-to-end msg1: Connected{early_e2e} to the
  // connector (its pipe starts with the acceptor's msg2).
  bool early_e2e = false;
  friend bool operator==(const Paired&, const Paired&) = default;
};

using Action = std::variant<SendTo, CloseConn, Paired>;
using Actions = std::vector<Action>;

class RelayState {
 public:
  // hash_key: tests pass a fixed one; the daemon leaves the random default.
  explicit RelayState(const PairingLimits& limits = {},
                      const HashKey& hash_key = random_hash_key());
  RelayState(const RelayState&) = delete;
  RelayState& operator=(const RelayState&) = delete;

  // A decoded request from connection `conn`, whose handshake authenticated `self`.
  // Dispatches to listen / connect / accept / reject below.
  // `source`: where the connection comes from, for the per-source caps; nullptr: not counted.
  Actions handle(ConnId conn, const PublicKey& self, const NodeMessage& message, TimePoint now,
                 const Source* source = nullptr);

  // early_e2e: this listener takes connectors' end-to-end msg1 in IncomingConnection.
  Actions listen(ConnId conn, const PublicKey& self, TimePoint now, const Source* source = nullptr,
                 bool early_e2e = false);
  // e2e_msg1 is kept with the half-tunnel and handed only to a listener that said early_e2e.
  Actions connect(ConnId conn, const PublicKey& self, const PublicKey& target, TimePoint now,
                  const Source* source = nullptr,
                  const std::optional<E2eMsg1>& e2e_msg1 = std::nullopt);
  // With e2e_msg1: pairs the pending connect from `from` that sent exactly that msg1 (none:
  // Refused{no_pending}), and Paired::early_e2e is set. Without: the oldest from `from`.
  Actions accept(ConnId conn, const PublicKey& self, const PublicKey& from, TimePoint now,
                 const std::optional<E2eMsg1>& e2e_msg1 = std::nullopt);
  // A first request by a key with a live listener: park `conn` as that key's standby (no reply),
  // so its one later Accept pairs with its handshake already done. At most one per key: an
  // older standby gets Close{replaced}. No live listener: Refused{not_found}. The standby is
  // closed when its listener is replaced (Close{replaced}) or goes (Close{normal}).
  Actions standby(ConnId conn, const PublicKey& self, TimePoint now);
  // On a listening connection; the listener's key is the one it listened with.
  Actions reject(ConnId conn, const PublicKey& from, TimePoint now);
  // On a listening connection (else a protocol error): TopicJoined and an Introduction each
  // way per member introduced, or TopicRefused; the listener stays (docs/protocol.md 4.9).
  Actions join_topic(ConnId conn, const TopicId& topic, TimePoint now);
  // On a listening connection: TopicLeft, also for a topic not joined.
  Actions leave_topic(ConnId conn, const TopicId& topic, TimePoint now);

  // The connection is gone, whatever its role (or none): idempotent.
  Actions disconnect(ConnId conn, TimePoint now);
  // Ends half-tunnels whose TTL has passed (now > created + ttl) with Refused{timeout}.
  Actions expire(TimePoint now);
  // The earliest time at which expire() will have something to do, if any.
  std::optional<TimePoint> next_deadline() const;

  // SIGHUP. New limits apply to new requests: pending half-tunnels keep their deadlines, and
  // buckets keep their time until full.
  void set_limits(const PairingLimits& limits);
  const PairingLimits& limits() const { return limits_; }
  // SIGHUP (strelay/allowlist.hpp parses the --allow file). nullopt: everyone may use the
  // relay; an empty list: nobody. Listeners no longer allowed get
  // Close{not_allowed} (their pending connectors then get Refused{peer_gone}); pending
  // connectors no longer allowed get Refused{not_allowed}. Pipes already made are the
  // caller's to keep or close.
  Actions set_allowlist(std::optional<Allowlist> allowlist);

  // Gauges.
  std::size_t listeners() const { return listeners_.size(); }
  std::size_t half_tunnels() const { return tunnels_.size(); }
  std::size_t standbys() const { return standbys_.size(); }
  std::size_t topics() const { return topics_.topics(); }
  std::size_t topic_memberships() const { return topics_.memberships(); }
  std::size_t rate_entries() const { return rates_.size(); }
  // Limit hits since the last call, by PairingLimit (the caller adds them to its metrics).
  std::array<std::uint64_t, pairing_limit_count> take_limit_hits();
  // Listeners and pending connects of the `n` heaviest sites, for /status.
  std::vector<std::pair<SourceKey, std::size_t>> heaviest_listener_sources(std::size_t n) const {
    return listener_counts_.heaviest(n);
  }
  // Entries in every internal table, for tests that check nothing is left behind.
  std::size_t index_entries() const;

 private:
  struct HalfTunnel {
    std::uint64_t seq = 0;                           // creation order
    PublicKey from;                                  // the connector's key
    PublicKey target;                                // the listener's key
    TimePoint deadline;                              // created + ttl; expired once now > deadline
    std::optional<Source> source;                    // counted in half_tunnel_counts_ when set
    std::optional<E2eMsg1> e2e_msg1 = std::nullopt;  // the connector's msg1, never read
  };
  struct PairKey {
    PublicKey target;
    PublicKey from;
    friend bool operator==(const PairKey&, const PairKey&) = default;
  };
  struct PairHash {
    KeyedHash hash;
    std::size_t operator()(const PairKey& key) const;
  };
  struct RateEntry {
    TokenBucket bucket;
    std::list<PublicKey>::iterator lru_pos;
  };

  bool allowed(const PublicKey& key) const;
  std::optional<RefuseReason> connect_refusal(const PublicKey& self, const PublicKey& target,
                                              TimePoint now, const Source* source, ConnId& cut);
  std::optional<RefuseReason> take_source_token(const Source& source, TimePoint now);
  // Fair share when the half-tunnel table is full: the oldest half-tunnel of the heaviest site,
  // when `source`'s site would still hold fewer; 0 when none.
  ConnId fair_share_cut(const Source* source) const;
  void hit(PairingLimit limit) { ++hits_[static_cast<std::size_t>(limit)]; }
  std::optional<RefuseReason> take_connect_token(const PublicKey& self, TimePoint now);
  // Appends Refused{reason} and the Close that follows it.
  static void refuse(Actions& out, ConnId conn, RefuseReason reason);
  // Closes `conn` with Close{protocol_error} and cleans up whatever role it had.
  void protocol_error(Actions& out, ConnId conn);
  void drop_role(Actions& out, ConnId conn);  // as on disconnect
  bool has_role(ConnId conn) const;           // a listener, pending connector or standby
  // A Listen's or Standby's first checks: a connection that has a role already is a protocol
  // error, a key not allowed is refused. True when `out` holds the answer.
  bool first_request_fails(Actions& out, ConnId conn, const PublicKey& self);
  // A listener's topics end with its role (replaced or gone); the next listen joins again.
  void forget_listener_topics(ConnId conn);
  // One of the listener's topic_churn tokens; false (counted) when it has none left.
  bool take_topic_token(ConnId conn, TimePoint now);
  // A listening connection's topic buckets, made at its first join or leave.
  struct TopicBuckets {
    TokenBucket churn;
    TokenBucket introductions;
  };
  TopicBuckets& topic_buckets(ConnId conn);
  // Closes `key`'s standby, if any, with `reason`.
  void drop_standby(Actions& out, const PublicKey& key, CloseReason reason);
  void drop_listener(Actions& out, ConnId conn);
  // The IncomingConnection for `connector`'s half-tunnel, to `listener`: with the msg1 only
  // when that listener said early_e2e.
  IncomingConnection incoming_for(ConnId listener, ConnId connector) const;
  void forget_listener_source(ConnId conn);
  void add_tunnel(ConnId conn, const PublicKey& from, const PublicKey& target, TimePoint now,
                  const Source* source);
  void remove_tunnel(ConnId conn);
  // Half-tunnels to `target`, oldest first.
  std::vector<ConnId> pending_to(const PublicKey& target) const;

  PairingLimits limits_;
  std::optional<Allowlist> allowlist_;
  std::uint64_t next_seq_ = 0;

  std::unordered_map<PublicKey, ConnId, KeyedHash> listeners_;  // key -> its listener
  std::unordered_map<ConnId, PublicKey> listener_keys_;         // listener -> its key
  std::unordered_set<ConnId> early_e2e_listeners_;  // listeners that said Listen{early_e2e}
  std::unordered_map<PublicKey, ConnId, KeyedHash> standbys_;  // key -> its parked standby
  std::unordered_map<ConnId, PublicKey> standby_keys_;         // standby -> its key
  // Standbys told to close (replaced, or their listen ended) until they go: their one Accept
  // may already be on its way, and must not pair a connection that is closing.
  std::unordered_set<ConnId> closed_standbys_;
  TopicTable topics_;                                       // listening connections' topics
  std::unordered_map<ConnId, TopicBuckets> topic_buckets_;  // listener -> its rates
  std::unordered_map<ConnId, HalfTunnel> tunnels_;          // connector -> half-tunnel
  // target -> (seq -> connector): for announcing to a new listener and for peer_gone.
  std::unordered_map<PublicKey, std::map<std::uint64_t, ConnId>, KeyedHash> by_target_;
  // (target, from) -> connectors, oldest first: for accept and reject.
  std::unordered_map<PairKey, std::vector<ConnId>, PairHash> by_pair_;
  // (deadline, seq) -> connector: for expire and next_deadline.
  std::map<std::pair<TimePoint, std::uint64_t>, ConnId> by_deadline_;

  std::unordered_map<PublicKey, RateEntry, KeyedHash> rates_;
  std::list<PublicKey> rate_lru_;  // least recently used first

  // Per source: listeners and half-tunnels counted at every prefix level; connect buckets per
  // host (bounded like the identities' buckets, by rate_entries_total).
  std::unordered_map<ConnId, Source> listener_sources_;
  SourceCounts listener_counts_;
  SourceCounts half_tunnel_counts_;
  // site -> (seq -> connector), oldest first: the fair-share cut.
  std::unordered_map<SourceKey, std::map<std::uint64_t, ConnId>, KeyedHash> tunnels_by_site_;
  struct SourceRate {
    TokenBucket bucket;
    std::list<SourceKey>::iterator lru_pos;
  };
  std::unordered_map<SourceKey, SourceRate, KeyedHash> source_rates_;
  std::list<SourceKey> source_rate_lru_;
  std::array<std::uint64_t, pairing_limit_count> hits_{};
};

}  // namespace strelay
