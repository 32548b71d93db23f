// Keepalive of one authenticated connection (sans-io): every ping and pong decision, in the
// spirit of WireGuard's timers.c. The driver reports events with the time and asks what is due;
// it never decides anything itself. Used by the node's listener link (common/relay_link), the
// end-to-end stream (common/stream_state) and, through the same type, the relay's session.
//
// Timers (all from the constructor; defaults in protocol.hpp):
//   ping       keepalive_interval of silence from the peer (any authenticated frame is life),
//              and again each further interval while the silence lasts
//   dead       dead_peer_timeout of silence: the peer is gone
//
// Pong policy (docs/protocol.md 3.5): every ping is answered, oldest first, before anything
// else the driver has to send. At most max_pongs_due pongs wait at once (the writer is blocked
// on a peer that does not read); one more ping is a protocol error, so a peer cannot queue
// pongs without bound. Tokens are a counter; a pong counts as the round trip only when it
// echoes the last ping sent (and only once).
//
// A connection that must answer pings but not send its own (the relay's connectors and
// acceptors: only a listener is pinged by the relay) starts with answering_only() and has no
// timers until start_timers().
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "common/protocol.hpp"

namespace strelay {

using PingToken = std::array<std::uint8_t, ping_token_bytes>;

class Keepalive {
 public:
  using Clock = std::chrono::steady_clock;
  enum class Action { wait, send_ping, peer_dead };

  // What the driver must do now, in this order of priority.
  enum class Due {
    nothing,  // sleep until next_wakeup() or the next event
    dead,     // the peer is gone: end the connection (close{dead_peer} if it can still write)
    pong,     // send a pong with `token`
    ping,     // send a ping with `token` (already counted as sent at `now`)
  };
  struct Next {
    Due due = Due::nothing;
    PingToken token{};
    bool operator==(const Next&) const = default;
  };

  explicit Keepalive(Clock::time_point now, Clock::duration interval = keepalive_interval,
                     Clock::duration dead_after = dead_peer_timeout);
  // Answers pings, never pings nor declares the peer dead, until start_timers().
  static Keepalive answering_only(Clock::time_point now);
  void start_timers(Clock::time_point now, Clock::duration interval, Clock::duration dead_after);

  // ---- events
  // Any authenticated frame from the peer (or, for a reader that stopped reading on purpose,
  // bytes known to be waiting) counts as life.
  void on_frame_received(Clock::time_point now);
  // A ping arrived (counts as life too): its pong is queued. False when max_pongs_due pongs are
  // already waiting: a protocol error, and nothing is queued.
  [[nodiscard]] bool on_ping(std::span<const std::uint8_t> token, Clock::time_point now);
  // A pong arrived (counts as life): the round-trip time if it answers the last ping sent.
  std::optional<Clock::duration> on_pong(std::span<const std::uint8_t> token,
                                         Clock::time_point now);
  // Send a ping at the next take_due() whatever the silence (an early RTT, an explicit probe).
  void request_ping() { ping_requested_ = true; }

  // ---- decisions
  // The one thing to do now; a pong or ping returned is taken as sent.
  Next take_due(Clock::time_point now);
  // When take_due() should next be called if nothing happens meanwhile (now-or-earlier when
  // a pong or a requested ping is waiting).
  Clock::time_point next_wakeup() const;
  std::size_t pongs_due() const { return pongs_.size(); }
  std::optional<Clock::duration> last_rtt() const { return rtt_; }

  // What the timers say at `now` (take_due acts on it; tests read it).
  Action poll(Clock::time_point now) const;

 private:
  Clock::time_point timer_wakeup() const;
  PingToken ping_sent(Clock::time_point now);
  std::optional<Clock::duration> pong_received(const PingToken& token, Clock::time_point now);

  Clock::duration interval_;
  Clock::duration dead_after_;
  Clock::time_point last_received_;
  std::optional<Clock::time_point> last_ping_;
  std::uint64_t next_token_ = 1;
  std::optional<std::pair<PingToken, Clock::time_point>> outstanding_;
  std::optional<Clock::duration> rtt_;
  // A vector, not a deque: libstdc++'s empty deque already holds a 512-byte block and its map,
  // which every idle listener carried (docs/performance.md, idle memory round 2). At most
  // max_pongs_due, taken from the front.
  std::vector<PingToken> pongs_;
  bool ping_requested_ = false;
  bool timers_ = true;  // false: answering_only, until start_timers
};

}  // namespace strelay
