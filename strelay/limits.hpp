// Admission control (sans-io): what the relay decides before and during a handshake, plus the
// token bucket that relay_state shares. Per-source accounting is strelay/sources.*.
//
// Time is always a parameter (`now`, strelay::Clock's time points, which are steady_clock's);
// nothing here reads a clock or touches a socket. Every limit is a field of a limits struct
// whose defaults come from protocol.hpp, and can be replaced at run time (SIGHUP).
//
// Admission, per accepted TCP connection, in this order (the first that fails names the refusal):
//   1. connections_total      open connections < limit (the daemon sets it from the descriptor
//                             budget: plan_descriptors() below), or fair-share eviction (below)
//   2. connections_per_source this source's open connections, at every prefix level, < caps
//                             (256 per /32 or /64, 1024 per prefix; sources.hpp)
//   3. pending_total          handshakes in progress, all sources < limit (1024), or fair-share
//                             eviction (below)
//   4. sources_total          a source not yet tracked needs room in the rate table (16384)
//   5. pending_per_source     handshakes in progress from this source, at every prefix level,
//                             < caps (8 per /32 or /64, 32 per prefix)
//   6. rate_per_source        this source's token bucket has a token (20/s, burst 5)
// A source is a sources.hpp Source: an IPv4 address (optionally inside its /24) or an IPv6 /64
// inside its /56 and /48, built by the accept path from the address it trusts.
//
// Fair share, not first come: when a global table (pending handshakes, or connections) is
// full, a newcomer whose site (the coarsest prefix) would still hold fewer than the heaviest
// site takes the place of the heaviest site's oldest entry: a pending handshake loses its
// slot at once and its connection is closed silently (it is not authenticated); an
// established connection is told Close{overloaded} (at most max_evicting of those in flight,
// which the descriptor budget keeps free). Tunnels are never cut. Otherwise the newcomer is
// refused. A site that holds its fair share cannot be pushed out by one that wants more.
//
// Under pressure the handshake deadline shortens (handshake_deadline()): from a half-full
// pending table on, linearly down to min_handshake_deadline at full, so silent sockets are
// recycled faster exactly when they cost others.
//
// An admitted connection holds an Admission::Admitted guard: it owns one pending-handshake slot
// (released by handshake_done() or by destruction) and one connection slot (released by
// destruction), so no teardown path can leak either.
#pragma once

#include <algorithm>
#include <array>
#include <boost/asio/ip/address.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <unordered_map>
#include <variant>

#include "common/keys.hpp"
#include "common/protocol.hpp"
#include "strelay/clock.hpp"
#include "strelay/sources.hpp"

namespace strelay {

// A token bucket kept as one time point (GCRA): `full_at_` is when the bucket will be full
// again. Taking a token pushes it one interval later; a take is allowed while full_at_ stays
// within `burst` intervals of now. Integer nanoseconds, so the refill math is exact: with
// rate 20/s, one token returns every 50 ms to the nanosecond.
class TokenBucket {
 public:
  // Throws std::invalid_argument unless rate_per_s > 0 and burst >= 1 (a configuration error).
  TokenBucket(double rate_per_s, double burst);

  // Takes one token if there is one.
  bool try_take(TimePoint now);
  // True when the bucket holds `burst` tokens: it is then the same as a fresh bucket, so a
  // table may drop it.
  bool is_full(TimePoint now) const { return full_at_ <= now; }
  // Tokens available at `now` (fractional), for tests and metrics.
  double tokens(TimePoint now) const;
  // New rate and burst; the time until full is kept, so a reload neither refills nor drains.
  void set_rate(double rate_per_s, double burst);

 private:
  Clock::duration interval_{};  // time for one token to return
  Clock::duration capacity_{};  // burst * interval_
  TimePoint full_at_ = TimePoint::min();
};

// ---------------------------------------------------------------- descriptor budget
//
// Every connection costs one descriptor, and a spliced tunnel four more (a pipe per direction).
// The process also holds descriptors of its own from the start: per worker an epoll, an
// eventfd and a timerfd; the listening sockets; the HTTP listener and its connections; the
// signal pipe; stdio. The budget is drawn from what is left after those, so that accept()
// never meets EMFILE under the caps:
//
//   usable      = nofile - fds_at_start - http_connections - 1 - descriptor_margin
//                 (the 1: the HTTP server's extra connection, answered 503 and closed)
//   connections = the --max-connections flag, or else
//                 min(80% of nofile, usable), at least 1
//   pipe_fds    = usable - connections (0 when the flag takes more): descriptors for tunnel
//                 pipes. A tunnel that finds no room for its 4 copies instead of splicing
//                 (Tunnel's read/write fallback), so pipes never take a connection's descriptor.
// descriptor_margin covers descriptors held for a moment: the socket accept() returns before
// admission refuses it, /proc/self/fd being read for /status, a config file read on SIGHUP.
struct DescriptorBudget {
  std::size_t connections = 0;
  std::size_t pipe_fds = 0;
  std::size_t usable = 0;  // descriptors for connections and pipes together
  friend bool operator==(const DescriptorBudget&, const DescriptorBudget&) = default;
};

// `connections_flag` 0 means automatic. `http_connections` is 0 without an HTTP endpoint.
DescriptorBudget plan_descriptors(std::uint64_t nofile, std::uint64_t fds_at_start,
                                  std::size_t http_connections, std::size_t connections_flag);

// The HTTP endpoint's connection cap for a process limit of `nofile` descriptors:
// http_max_connections, but at most 1/32 of the limit (and at least 2), so that a small limit
// is not spent on scrapers.
std::size_t http_connection_cap(std::uint64_t nofile);

// The descriptors this process has open now (/proc/self/fd); nullopt when unreadable.
std::optional<std::uint64_t> count_open_descriptors();

// When to hand the heap's free pages back to the system (malloc_trim): once a burst is over,
// i.e. when the open connections have fallen to 3/4 of the peak seen since the last trim or
// below. Under a steady load it never trims: each trim is followed by page faults as the same
// memory is used again, which only adds CPU and makes the RSS saw up and down.
class MemoryTrimPolicy {
 public:
  // Every log_summary_interval: the open connections now.
  void sample(std::int64_t connections) { peak_ = std::max(peak_, connections); }
  // Every memory_trim_interval: true when a trim is due now (then the peak starts again).
  bool trim_due(std::int64_t connections);

 private:
  std::int64_t peak_ = 0;
};

struct AdmissionLimits {
  std::size_t connections_total = 1024;   // the daemon sets it from plan_descriptors()
  std::size_t pipe_fds_total = SIZE_MAX;  // descriptors for tunnel pipes; SIZE_MAX: no budget
  std::size_t pending_total = max_pending_handshakes;
  SourceCaps pending{max_pending_per_source, max_pending_per_prefix};
  SourceCaps connections{max_connections_per_source, max_connections_per_prefix};
  PrefixPolicy prefixes;                               // how the accept path groups IPv4 sources
  double rate_per_source = handshake_rate_per_source;  // handshakes per second
  double burst_per_source = handshake_burst_per_source;
  std::size_t sources_total = max_admission_sources;               // bound on the rate table
  Clock::duration min_handshake_timeout = min_handshake_deadline;  // the deadline at a full table
};

enum class AdmissionRefusal {
  connections_total,
  connections_per_source,
  pending_total,
  sources_total,
  pending_per_source,
  rate_per_source,
};
// "pending_per_source" etc., for logs and metric labels.
const char* to_string(AdmissionRefusal refusal);

// What a site holds now, for /status (counts only).
struct SourceLoad {
  std::string prefix;  // SourceKey::to_string() of the site
  std::size_t connections = 0;
  std::size_t pending = 0;
  friend bool operator==(const SourceLoad&, const SourceLoad&) = default;
};

// Thread safety: internally locked (one mutex), so sessions on any thread may admit, and
// guards may be released from any thread. Evictors are called with no lock held. Admission
// must outlive every Admitted guard.
// Memory: one entry per open connection (its source and evictor, about 200 bytes with the
// per-site indexes); the rate table holds sources with a pending handshake and idle sources
// whose bucket is not yet full again (idle ones are dropped, oldest first, once full: within
// burst/rate = 0.25 s by default); a new source beyond sources_total is refused.
class Admission {
 public:
  class Admitted;
  // Closes the connection of an entry that fair share evicted; called once, on no lock.
  using Evictor = std::function<void()>;

  explicit Admission(const AdmissionLimits& limits, const HashKey& hash_key = random_hash_key());
  Admission(const Admission&) = delete;
  Admission& operator=(const Admission&) = delete;

  std::variant<Admitted, AdmissionRefusal> try_admit(const Source& source, TimePoint now);

  // The absolute handshake deadline for a connection admitted now: `base` while the pending
  // table is at most half full, then shorter, down to min_handshake_timeout at full.
  Clock::duration handshake_deadline(Clock::duration base) const;

  // A tunnel asks for the descriptors of its pipes (4); false when the budget has no room
  // (the tunnel then copies instead). Each granted reservation is given back with
  // release_pipe_fds().
  bool try_reserve_pipe_fds(std::size_t count);
  void release_pipe_fds(std::size_t count);

  // SIGHUP: new limits apply to the next admission; nothing admitted is revoked.
  void set_limits(const AdmissionLimits& limits);
  AdmissionLimits limits() const;

  // Gauges.
  std::size_t pending_total() const;
  std::size_t connections() const;
  std::size_t sources() const;   // entries in the rate table
  std::size_t pipe_fds() const;  // descriptors reserved for tunnel pipes
  std::size_t evicting() const;  // established connections told to go, not yet gone
  // The `n` sites holding the most connections, heaviest first.
  std::vector<SourceLoad> heaviest_sources(std::size_t n) const;
  // Evictions made so far: of pending handshakes, of established connections.
  std::uint64_t pending_evictions() const;
  std::uint64_t connection_evictions() const;

 private:
  struct RateSource {
    std::size_t pending = 0;  // pending handshakes from this host
    TokenBucket bucket;
    std::list<SourceKey>::iterator idle_pos;  // valid while pending == 0
  };
  struct Entry {
    Source source;
    bool pending = true;
    bool evicted = false;    // told to go (its evictor was or will be called)
    bool in_flight = false;  // an established connection told to go: counted in evicting_
    bool evictable = true;   // false once a tunnel holds it
    Evictor evictor;
  };
  using Ids = std::set<std::uint64_t>;  // oldest first

  void evict_idle(TimePoint now);  // mutex_ held
  // The oldest entry of the heaviest site in `by_site`, when `source`'s site holds fewer than
  // it would after admission; 0 when fair share allows no eviction. mutex_ held.
  std::uint64_t fair_share_victim(const Source& source, const SourceCounts& counts,
                                  const std::unordered_map<SourceKey, Ids, KeyedHash>& by_site,
                                  bool established) const;
  Evictor evict_pending(std::uint64_t id);           // mutex_ held; returns the evictor to call
  Evictor evict_connection(std::uint64_t id);        // mutex_ held
  void end_pending(std::uint64_t id, Entry& entry);  // mutex_ held
  void release(std::uint64_t id, bool pending, bool connection);
  void set_evictor(std::uint64_t id, Evictor evictor, bool evictable);

  mutable std::mutex mutex_;  // guards every field below
  AdmissionLimits limits_;
  std::unordered_map<SourceKey, RateSource, KeyedHash> rates_;  // by host
  std::list<SourceKey> idle_;  // hosts with no pending handshake, least recently active first
  std::unordered_map<std::uint64_t, Entry> entries_;  // by id, one per open connection
  std::unordered_map<SourceKey, Ids, KeyedHash> pending_by_site_;
  std::unordered_map<SourceKey, Ids, KeyedHash> connections_by_site_;
  SourceCounts pending_counts_;
  SourceCounts connection_counts_;
  std::uint64_t next_id_ = 1;
  std::size_t evicting_ = 0;
  std::size_t pipe_fds_ = 0;
  std::uint64_t pending_evictions_ = 0;
  std::uint64_t connection_evictions_ = 0;
};

// One admitted connection: a pending-handshake slot until handshake_done(), and a connection
// slot until destruction. Move-only.
class Admission::Admitted {
 public:
  Admitted(Admitted&& other) noexcept;
  Admitted& operator=(Admitted&& other) noexcept;
  Admitted(const Admitted&) = delete;
  Admitted& operator=(const Admitted&) = delete;
  ~Admitted();

  // The handshake finished (or failed but the connection stays for a close): frees the
  // pending slot now. Idempotent.
  void handshake_done();
  bool handshake_pending() const { return pending_; }
  const Source& source() const { return source_; }
  // How fair share closes this connection (a session sets it when it starts). If it was
  // evicted before, `evictor` is called now.
  void set_evictor(Evictor evictor);
  // A tunnel holds the connection now: fair share no longer picks it.
  void not_evictable();
  // Admission::handshake_deadline() of the admission this came from (`base` once moved from).
  Clock::duration handshake_deadline(Clock::duration base) const {
    return admission_ != nullptr ? admission_->handshake_deadline(base) : base;
  }

 private:
  friend class Admission;
  Admitted(Admission* admission, std::uint64_t id, const Source& source)
      : admission_(admission), id_(id), source_(source) {}
  void reset();

  Admission* admission_ = nullptr;  // null once moved from
  std::uint64_t id_ = 0;
  Source source_;
  bool pending_ = true;
};

}  // namespace strelay
