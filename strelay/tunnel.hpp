// The pass-through pipe between two paired nodes.
//
// After Connected, the relay forwards the bytes of a tunnel as they are: it never parses or
// decrypts them (the nodes run their own end-to-end channel inside). Bytes move zero-copy with
// splice(2) through a kernel pipe per direction, driven by Asio readiness waits; where splice
// is refused (a socket type that does not support it) a read/write loop takes over.
//
// Bounds and timers (all from Tunnel::Options, defaults in common/protocol.hpp):
//  - each direction holds at most `buffer_bytes` in its pipe, and at most `buffer_bytes` in
//    each of the two kernel queues it passes (SO_RCVBUF of the sender's socket, SO_SNDBUF of
//    the receiver's, clamped): 3 x buffer_bytes in all, where the kernel's autotuning let a
//    stalled tunnel hold 6.4 MiB (issue 14). A tighter split (the whole bound for all three)
//    cost 2-3x CPU per GiB in bulk_bench. When the receiver does not read, the relay stops
//    reading the sender (TCP backpressure); it never drops bytes;
//  - a direction blocked on a receiver that takes less than stall_progress_bytes (16 KiB)
//    within `write_stall` ends the tunnel with CloseReason::stalled: only progress at a minimum
//    rate resets the stall clock, not any single byte (a reader taking 1 byte every 3 s would
//    otherwise hold the tunnel's buffers forever). Delivering everything held also counts;
//  - a tunnel with no byte in either direction for `idle_timeout` ends with dead_peer (the nodes'
//    end-to-end keepalives make an idle but live tunnel carry a ping every 15 s);
//  - an EOF from one side is carried through as a half-close (shutdown(SHUT_WR)) of the other;
//    the tunnel ends normally when both sides have closed;
//  - any error on either side (RST, EPIPE) ends both sides at once (CloseReason::aborted);
//  - a direction yields its worker after every tunnel_yield_bytes it moves without waiting,
//    so a bulk tunnel shares the worker with the tunnels and sessions beside it;
//  - with bandwidth limits (Options::bandwidth, strelay/bandwidth.hpp) a direction asks for
//    its next chunk before it reads, and waits on a timer when the buckets are empty: the
//    sender is slowed by TCP backpressure, nothing is dropped, and splice moves whole chunks.
//
// Ownership: a Tunnel owns both sockets and both pipes. Its two pump coroutines and its
// watchdog timer run on the executor of socket `a`, which must also be the executor of `b`
// (the caller moves the sockets onto one executor). stop() may be called from any thread.
#pragma once

#include <sys/types.h>

#include <array>
#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "common/protocol.hpp"
#include "strelay/bandwidth.hpp"
#include "strelay/clock.hpp"

namespace strelay {

// Receives a tunnel's byte counts as they happen (metrics); called on the tunnel's executor.
// It also grants the descriptors of the tunnel's pipes (the relay's descriptor budget).
class TunnelObserver {
 public:
  virtual ~TunnelObserver() = default;
  // Called once before the pipes are made: true lets the tunnel open its tunnel_pipe_fds
  // descriptors, false makes it copy instead. A grant is returned with release_pipe_fds().
  virtual bool reserve_pipe_fds() { return true; }
  virtual void release_pipe_fds() {}
  // Once, when the tunnel is made: whether it splices or copies (no pipe descriptors).
  virtual void opened(bool /*spliced*/) {}
  // `direction` 0 is a -> b, 1 is b -> a.
  virtual void forwarded(int direction, std::uint64_t bytes) = 0;
  // Bytes held in the relay for this tunnel changed by `delta`.
  virtual void buffered(std::int64_t delta) = 0;
  // A direction waits for bandwidth tokens (`scope` says whose limit).
  virtual void paced(BandwidthScope /*scope*/) {}
  // Once, when the tunnel ends, before its sockets close: a peer that sees the close and then
  // reads the metrics finds the close counted.
  virtual void ending(CloseReason /*reason*/) {}
};

class Tunnel : public std::enable_shared_from_this<Tunnel> {
 public:
  using tcp = boost::asio::ip::tcp;
  using clock = strelay::Clock;  // steady time; tests move it (strelay/clock.hpp)

  struct Options {
    std::size_t buffer_bytes = tunnel_buffer_bytes;
    clock::duration write_stall = write_stall_timeout;
    clock::duration idle_timeout = dead_peer_timeout;
    bool use_splice = true;            // false forces the read/write fallback (tests, benchmarks)
    bool clamp_socket_buffers = true;  // false leaves the kernel's autotuning (bench: the before)
    Bandwidth* bandwidth = nullptr;    // the relay's rate limits; null: none. Outlives the tunnel.
  };

  struct Result {
    std::array<std::uint64_t, 2> bytes{};  // [0]: a -> b, [1]: b -> a
    CloseReason reason = CloseReason::normal;
    bool spliced = true;  // false when the read/write fallback carried the data
  };

  // `clock` (the relay's: its stall and idle deadlines) and `observer` (may be null) must
  // outlive the tunnel.
  Tunnel(tcp::socket a, tcp::socket b, Options options, Clock& clock,
         TunnelObserver* observer = nullptr);
  ~Tunnel();
  Tunnel(const Tunnel&) = delete;
  Tunnel& operator=(const Tunnel&) = delete;

  // Forwards until both sides have closed, or the tunnel fails; then closes both sockets.
  // Must be co_awaited on the sockets' executor, through a shared_ptr that outlives it.
  boost::asio::awaitable<Result> run();

  // Ends the tunnel with `reason` (for example shutdown); thread-safe.
  void stop(CloseReason reason);

  // Bytes currently held in the relay for this tunnel (both pipes), for the buffered gauge.
  std::uint64_t buffered_bytes() const;
  // Bytes forwarded so far, [0]: a -> b, [1]: b -> a; any thread (/status's open tunnels).
  std::array<std::uint64_t, 2> forwarded_bytes() const;
  // User-space buffer memory the copying fallback holds now (0 for a spliced tunnel, and for a
  // copying one while no bytes are in flight). On the tunnel's executor.
  std::size_t copy_buffer_bytes() const;

 private:
  struct Direction;
  boost::asio::awaitable<void> pump(Direction& d);
  boost::asio::awaitable<bool> pump_bytes(Direction& d);
  boost::asio::awaitable<std::size_t> pace(Direction& d);
  ssize_t fill(Direction& d, std::size_t max_bytes);
  ssize_t drain(Direction& d);
  boost::asio::awaitable<bool> wait_readable(Direction& d);
  boost::asio::awaitable<bool> wait_writable(Direction& d);
  boost::asio::awaitable<void> yield();
  void fail(CloseReason reason);
  void touch() { last_activity_ = clock_.now(); }
  void arm_watchdog(clock::time_point when);
  void on_watchdog();

  tcp::socket a_;
  tcp::socket b_;
  Options options_;
  Clock& clock_;
  void set_held(Direction& d, std::size_t held);
  void count_forwarded(Direction& d, std::size_t n);

  TunnelObserver* observer_;
  std::unique_ptr<Direction> dirs_[2];
  RelayTimer watchdog_;
  bool pipes_reserved_ = false;  // the observer granted the pipes' descriptors
  clock::time_point watchdog_at_ = clock::time_point::max();
  clock::time_point last_activity_;
  CloseReason reason_ = CloseReason::normal;
  bool failed_ = false;
  bool finished_ = false;
};

}  // namespace strelay
