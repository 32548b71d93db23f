// Admission control (sans-io): what the relay decides before and during a handshake, plus the
// two tools that relay_state shares: a token bucket and a keyed hash for hostile-keyed tables.
//
// Time is always a parameter (`now`, strelay::Clock's time points, which are steady_clock's);
// nothing here reads a clock or touches a socket. Every limit is a field of a limits struct whose
// defaults come from protocol.hpp, and can be replaced at run time (SIGHUP).
//
// Admission, per accepted TCP connection, in this order (the first that fails names the refusal):
//   1. connections_total   open connections < limit (the daemon sets it from the descriptor
//                          budget: plan_descriptors() below)
//   2. pending_total       handshakes in progress, all sources < limit (1024)
//   3. sources_total       a source not yet tracked needs room in the source table (16384)
//   4. pending_per_source  handshakes in progress from this source < limit (8)
//   5. rate_per_source     this source's token bucket has a token (20/s, burst 5)
// A source is an IPv4 address (/32) or an IPv6 /64; an IPv4-mapped IPv6 address is its IPv4.
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
#include <list>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <variant>

#include "common/keys.hpp"
#include "common/protocol.hpp"
#include "strelay/clock.hpp"

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

// A SipHash-2-4 key (crypto_shorthash). Tables keyed by what clients choose (public keys,
// source addresses) use a random per-process key, so clients cannot aim at one hash bucket.
using HashKey = std::array<std::uint8_t, 16>;
HashKey random_hash_key();  // needs init_crypto()

// A source of connections for per-source limits.
struct SourceKey {
  std::uint8_t family = 4;               // 4 or 6
  std::array<std::uint8_t, 16> bytes{};  // IPv4: the 4 bytes; IPv6: the /64 prefix, rest zero

  static SourceKey from_address(const boost::asio::ip::address& address);
  // "192.0.2.7" or "2001:db8:1:2::/64", for logs.
  std::string to_string() const;
  friend bool operator==(const SourceKey&, const SourceKey&) = default;
};

class KeyedHash {
 public:
  explicit KeyedHash(const HashKey& key) : key_(key) {}
  std::size_t operator()(std::span<const std::uint8_t> bytes) const;
  std::size_t operator()(const PublicKey& key) const { return (*this)(key.bytes()); }
  std::size_t operator()(const SourceKey& key) const;

 private:
  HashKey key_;
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
  std::size_t pending_per_source = max_pending_per_source;
  double rate_per_source = handshake_rate_per_source;  // handshakes per second
  double burst_per_source = handshake_burst_per_source;
  std::size_t sources_total = max_admission_sources;  // bound on the per-source table
};

enum class AdmissionRefusal {
  connections_total,
  pending_total,
  sources_total,
  pending_per_source,
  rate_per_source,
};
// "pending_per_source" etc., for logs and metric labels.
const char* to_string(AdmissionRefusal refusal);

// Thread safety: internally locked (one mutex), so sessions on any thread may admit, and
// guards may be released from any thread. Admission must outlive every Admitted guard.
// Memory: the source table holds sources with a pending handshake (at most pending_total of
// them) and idle sources whose bucket is not yet full again (idle ones are dropped, oldest
// first, once full: within burst/rate = 0.25 s by default); a new source beyond sources_total
// is refused.
class Admission {
 public:
  class Admitted;

  explicit Admission(const AdmissionLimits& limits, const HashKey& hash_key = random_hash_key());
  Admission(const Admission&) = delete;
  Admission& operator=(const Admission&) = delete;

  std::variant<Admitted, AdmissionRefusal> try_admit(const SourceKey& source, TimePoint now);

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
  std::size_t sources() const;   // entries in the per-source table
  std::size_t pipe_fds() const;  // descriptors reserved for tunnel pipes

 private:
  struct Source {
    std::size_t pending = 0;
    TokenBucket bucket;
    std::list<SourceKey>::iterator idle_pos;  // valid while pending == 0
  };

  void evict_idle(TimePoint now);  // mutex_ held
  void release(const SourceKey& source, bool pending, bool connection);

  mutable std::mutex mutex_;  // guards every field below
  AdmissionLimits limits_;
  std::unordered_map<SourceKey, Source, KeyedHash> sources_;
  std::list<SourceKey> idle_;  // sources with no pending handshake, least recently active first
  std::size_t pending_total_ = 0;
  std::size_t connections_ = 0;
  std::size_t pipe_fds_ = 0;
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
  const SourceKey& source() const { return source_; }

 private:
  friend class Admission;
  Admitted(Admission* admission, const SourceKey& source)
      : admission_(admission), source_(source) {}
  void reset();

  Admission* admission_ = nullptr;  // null once moved from
  SourceKey source_;
  bool pending_ = true;
};

}  // namespace strelay
