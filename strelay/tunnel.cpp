#include "strelay/tunnel.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>
#include <optional>

#include "common/coro.hpp"
#include "strelay/kernel_queues.hpp"

namespace strelay {

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;

namespace {

constexpr unsigned splice_flags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;
// The read/write fallback copies through a user buffer of at most this size.
constexpr std::size_t copy_chunk_bytes = 64 * 1024;

bool would_block(int e) {
  return e == EAGAIN || e == EWOULDBLOCK;
}

// Each kernel queue at most the direction's bound. Smaller queues cost more than 5% of bulk
// throughput (docs/performance.md, issue 14.5).
void clamp_socket_buffers(int fd, std::size_t buffer_bytes) {
  bound_kernel_queue(fd, KernelQueue::receive, buffer_bytes);
  bound_kernel_queue(fd, KernelQueue::send, buffer_bytes);
}

}  // namespace

// One direction: bytes read from `in` are written to `out`, through `pipe` (splice) or
// `copy` (fallback). Owned by the Tunnel; touched only on the tunnel's executor.
struct Tunnel::Direction {
  Direction(tcp::socket& in_socket, tcp::socket& out_socket, int index)
      : in(in_socket), out(out_socket), id(index) {}
  ~Direction() {
    for (int fd : pipe)
      if (fd >= 0) ::close(fd);
  }
  tcp::socket& in;
  tcp::socket& out;
  int id;
  std::array<int, 2> pipe{-1, -1};
  std::size_t capacity = 0;  // bytes the pipe (or copy buffer) may hold
  std::size_t held = 0;      // bytes in the pipe (or copy buffer) not yet written
  std::uint64_t forwarded = 0;
  std::unique_ptr<std::uint8_t[]> copy;  // fallback buffer, only while bytes may be in flight
  std::size_t copy_offset = 0;
  bool blocked = false;  // waiting for `out` to accept bytes
  clock::time_point blocked_since{};
  std::size_t progress = 0;  // bytes `out` took since blocked_since
  std::atomic<std::uint64_t> held_gauge{0};
  std::optional<ByteBucket> bucket;      // the per-tunnel rate limit's bucket, when there is one
  std::optional<RelayTimer> pace_timer;  // made at the first wait for bandwidth
  // `forwarded` for other threads: a relaxed store beside held_gauge's, never a read-modify-write.
  std::atomic<std::uint64_t> forwarded_seen{0};
};

Tunnel::Tunnel(tcp::socket a, tcp::socket b, Options options, Clock& clock,
               TunnelObserver* observer)
    : a_(std::move(a)),
      b_(std::move(b)),
      options_(options),
      clock_(clock),
      observer_(observer),
      watchdog_(a_.get_executor(), clock),
      last_activity_(clock.now()) {
  dirs_[0] = std::make_unique<Direction>(a_, b_, 0);
  dirs_[1] = std::make_unique<Direction>(b_, a_, 1);
  // splice(2), read(2) and send(2) below need non-blocking descriptors. A socket that stayed on
  // its session's worker already is (Asio set it at its first asynchronous operation): no
  // FIONBIO again (docs/performance.md, issue 17.2).
  for (auto* socket : {&a_, &b_}) {
    if (!socket->native_non_blocking()) socket->non_blocking(true);
  }
  // Pipes take descriptors from the relay's budget: without a grant, copy (the connections'
  // own descriptors come first).
  if (options_.use_splice && observer_ != nullptr) {
    pipes_reserved_ = observer_->reserve_pipe_fds();
    if (!pipes_reserved_) options_.use_splice = false;
  }
  const std::size_t pipe_bytes = options_.buffer_bytes;
  if (options_.clamp_socket_buffers) {
    clamp_socket_buffers(a_.native_handle(), options_.buffer_bytes);
    clamp_socket_buffers(b_.native_handle(), options_.buffer_bytes);
  }
  for (auto& d : dirs_) {
    d->capacity = std::max<std::size_t>(pipe_bytes, 1);
    if (!options_.use_splice) continue;
    if (::pipe2(d->pipe.data(), O_NONBLOCK | O_CLOEXEC) != 0) {
      options_.use_splice = false;  // out of fds for pipes: copy instead of failing the tunnel
      continue;
    }
    // The pipe is the direction's buffer. The kernel rounds the size up to a power of two
    // pages; we never let more than `capacity` bytes in, so the bound holds either way.
    const int got = ::fcntl(d->pipe[1], F_SETPIPE_SZ, static_cast<int>(d->capacity));
    if (got > 0) {
      d->capacity = std::min(d->capacity, static_cast<std::size_t>(got));
    } else {
      const int size = ::fcntl(d->pipe[1], F_GETPIPE_SZ);
      d->capacity = std::min(d->capacity, static_cast<std::size_t>(std::max(size, 4096)));
    }
  }
  if (!options_.use_splice) {
    for (auto& d : dirs_) d->capacity = std::min(d->capacity, copy_chunk_bytes);
  }
  if (observer_ != nullptr) observer_->opened(options_.use_splice);
}

Tunnel::~Tunnel() {
  for (auto& d : dirs_) d.reset();  // the pipes close before their grant is given back
  if (pipes_reserved_) observer_->release_pipe_fds();
}

std::uint64_t Tunnel::buffered_bytes() const {
  return dirs_[0]->held_gauge.load(std::memory_order_relaxed) +
         dirs_[1]->held_gauge.load(std::memory_order_relaxed);
}

std::array<std::uint64_t, 2> Tunnel::forwarded_bytes() const {
  return {dirs_[0]->forwarded_seen.load(std::memory_order_relaxed),
          dirs_[1]->forwarded_seen.load(std::memory_order_relaxed)};
}

std::size_t Tunnel::copy_buffer_bytes() const {
  std::size_t bytes = 0;
  for (const auto& d : dirs_) bytes += d->copy ? d->capacity : 0;
  return bytes;
}

asio::awaitable<Tunnel::Result> Tunnel::run() {
  auto self = shared_from_this();  // the watchdog and pumps need the tunnel alive
  arm_watchdog(last_activity_ + options_.idle_timeout);
  co_await (pump(*dirs_[0]) && pump(*dirs_[1]));
  finished_ = true;
  watchdog_.cancel();
  if (observer_ != nullptr) observer_->ending(reason_);
  boost::system::error_code ignored;
  if (failed_) {  // a clean end has carried each EOF through: both sides are shut already
    a_.shutdown(tcp::socket::shutdown_both, ignored);
    b_.shutdown(tcp::socket::shutdown_both, ignored);
  }
  a_.close(ignored);
  b_.close(ignored);
  Result result;
  result.bytes = {dirs_[0]->forwarded, dirs_[1]->forwarded};
  result.reason = reason_;
  result.spliced = options_.use_splice;
  co_return result;
}

void Tunnel::stop(CloseReason reason) {
  asio::post(a_.get_executor(), [self = shared_from_this(), reason] { self->fail(reason); });
}

void Tunnel::fail(CloseReason reason) {
  if (failed_ || finished_) return;
  failed_ = true;
  reason_ = reason;
  boost::system::error_code ignored;
  a_.cancel(ignored);
  b_.cancel(ignored);
  watchdog_.cancel();
  for (auto& d : dirs_)
    if (d->pace_timer) d->pace_timer->cancel();
}

asio::awaitable<void> Tunnel::pump(Direction& d) {
  const bool clean = co_await pump_bytes(d);
  set_held(d, 0);
  if (!clean) co_return;
  // EOF from `in`, with everything before it delivered: carry the half-close through.
  boost::system::error_code ignored;
  d.out.shutdown(tcp::socket::shutdown_send, ignored);
}

// Moves up to `max_bytes` (at most the capacity) from `in` into the direction's pipe (splice)
// or buffer (copy): one syscall, with the result of splice(2) or read(2).
ssize_t Tunnel::fill(Direction& d, std::size_t max_bytes) {
  if (options_.use_splice) {
    return ::splice(d.in.native_handle(), nullptr, d.pipe[1], nullptr, max_bytes, splice_flags);
  }
  if (!d.copy) d.copy = std::make_unique_for_overwrite<std::uint8_t[]>(d.capacity);
  d.copy_offset = 0;  // nothing is held when fill is called
  return ::read(d.in.native_handle(), d.copy.get(), max_bytes);
}

// How many bytes the direction may read now under the bandwidth limits; when the buckets are
// short, waits (on the relay's clock) until its reservation is usable. 0 when the tunnel failed
// meanwhile (the reservation is given back).
asio::awaitable<std::size_t> Tunnel::pace(Direction& d) {
  const auto grant = options_.bandwidth->take(clock_.now(), d.capacity, d.bucket);
  if (grant.usable_at > clock_.now()) {
    if (observer_ != nullptr) observer_->paced(grant.scope);
    if (!d.pace_timer) d.pace_timer.emplace(a_.get_executor(), clock_);
    d.pace_timer->expires_at(grant.usable_at);
    co_await d.pace_timer->async_wait(await_tuple);
  }
  if (failed_) {
    options_.bandwidth->give_back(grant.bytes, d.bucket);
    co_return 0;
  }
  co_return grant.bytes;
}

// Moves held bytes on to `out`: one syscall, with the result of splice(2) or send(2).
ssize_t Tunnel::drain(Direction& d) {
  if (options_.use_splice) {
    return ::splice(d.pipe[0], nullptr, d.out.native_handle(), nullptr, d.held, splice_flags);
  }
  const ssize_t m =
      ::send(d.out.native_handle(), d.copy.get() + d.copy_offset, d.held, MSG_NOSIGNAL);
  if (m > 0) d.copy_offset += static_cast<std::size_t>(m);
  return m;
}

// Returns true at a clean EOF (all bytes delivered), false when the tunnel failed. The same
// loop splices through a pipe or copies through a buffer (for sockets splice refuses).
asio::awaitable<bool> Tunnel::pump_bytes(Direction& d) {
  bool eof = false;
  std::size_t since_yield = 0;
  while (!failed_) {
    if (d.held == 0 && !eof) {
      if (since_yield >= tunnel_yield_bytes) {
        since_yield = 0;
        co_await yield();
        continue;
      }
      const bool limited = options_.bandwidth != nullptr && options_.bandwidth->limited();
      const std::size_t granted = limited ? co_await pace(d) : d.capacity;
      if (granted == 0) co_return false;
      const ssize_t n = fill(d, granted);
      const int fill_errno = errno;  // give_back() may change errno
      if (limited && n < static_cast<ssize_t>(granted)) {
        options_.bandwidth->give_back(granted - static_cast<std::size_t>(std::max<ssize_t>(n, 0)),
                                      d.bucket);
      }
      if (n > 0) {
        set_held(d, static_cast<std::size_t>(n));
        since_yield += static_cast<std::size_t>(n);
        touch();
      } else if (n == 0) {
        eof = true;
      } else if (would_block(fill_errno)) {
        // Nothing is held: an idle copying direction keeps no buffer (as Channel frees its
        // frame buffers). Held for a tunnel's life, the 64 KiB buffers of the tunnels that
        // copy for want of pipe descriptors raised the soak's RSS at every new peak of them.
        d.copy.reset();
        if (!co_await wait_readable(d)) co_return false;
        continue;
      } else if (fill_errno != EINTR) {
        fail(CloseReason::aborted);
        co_return false;
      }
    }
    while (d.held > 0 && !failed_) {
      const ssize_t m = drain(d);
      if (m > 0) {
        count_forwarded(d, static_cast<std::size_t>(m));
        touch();
      } else if (m < 0 && would_block(errno)) {
        if (!co_await wait_writable(d)) co_return false;
      } else if (m == 0 || errno != EINTR) {
        fail(CloseReason::aborted);
        co_return false;
      }
    }
    if (eof) co_return !failed_;
  }
  co_return false;
}

// Lets every other handler queued on this worker run before the caller goes on. A direction
// whose sender keeps ahead never sees EAGAIN, so without this it would hold the worker for the
// whole transfer (measured: one bulk tunnel raised the p99 round trip of 100 small tunnels
// about 25-fold; docs/performance.md).
asio::awaitable<void> Tunnel::yield() {
  co_await asio::post(a_.get_executor(), asio::use_awaitable);
}

void Tunnel::set_held(Direction& d, std::size_t held) {
  if (observer_ != nullptr && held != d.held) {
    observer_->buffered(static_cast<std::int64_t>(held) - static_cast<std::int64_t>(d.held));
  }
  d.held = held;
  d.held_gauge.store(held, std::memory_order_relaxed);
}

void Tunnel::count_forwarded(Direction& d, std::size_t n) {
  set_held(d, d.held - n);
  d.forwarded += n;
  d.forwarded_seen.store(d.forwarded, std::memory_order_relaxed);
  // The stall clock restarts only on real progress: stall_progress_bytes taken since it
  // started, or everything held delivered.
  d.progress += n;
  if (d.progress >= stall_progress_bytes || d.held == 0) {
    d.blocked = false;
    d.progress = 0;
  }
  if (observer_ != nullptr) observer_->forwarded(d.id, n);
}

asio::awaitable<bool> Tunnel::wait_readable(Direction& d) {
  auto [ec] = co_await d.in.async_wait(tcp::socket::wait_read, await_tuple);
  co_return !ec && !failed_;
}

asio::awaitable<bool> Tunnel::wait_writable(Direction& d) {
  if (!d.blocked) {
    d.blocked = true;
    d.blocked_since = clock_.now();
    arm_watchdog(d.blocked_since + options_.write_stall);
  }
  auto [ec] = co_await d.out.async_wait(tcp::socket::wait_write, await_tuple);
  co_return !ec && !failed_;
}

// One timer per tunnel watches both the write stall of each direction and the idle timeout.
// It is re-armed only when a deadline earlier than the armed one appears, or when it fires
// early (progress was made since): at most a few timer operations per stall period,
// not one per blocked write.
void Tunnel::arm_watchdog(clock::time_point when) {
  if (when >= watchdog_at_ || finished_) return;
  watchdog_at_ = when;
  watchdog_.expires_at(when);
  watchdog_.async_wait([self = shared_from_this(), when](boost::system::error_code ec) {
    if (ec || self->watchdog_at_ != when) return;  // cancelled, or re-armed earlier
    self->watchdog_at_ = clock::time_point::max();
    self->on_watchdog();
  });
}

void Tunnel::on_watchdog() {
  if (failed_ || finished_) return;
  const auto now = clock_.now();
  // A blocked direction is not idle: it is judged by the stall limit alone.
  auto next = clock::time_point::max();
  for (auto& d : dirs_) {
    if (!d->blocked) continue;
    const auto stall_at = d->blocked_since + options_.write_stall;
    if (stall_at <= now) {
      fail(CloseReason::stalled);
      return;
    }
    next = std::min(next, stall_at);
  }
  if (next == clock::time_point::max()) {
    next = last_activity_ + options_.idle_timeout;
    if (next <= now) {
      fail(CloseReason::dead_peer);
      return;
    }
  }
  arm_watchdog(next);
}

}  // namespace strelay
