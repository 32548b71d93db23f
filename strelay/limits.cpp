#include "strelay/limits.hpp"

#include <sodium.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <utility>

namespace strelay {

// ---------------------------------------------------------------- TokenBucket

TokenBucket::TokenBucket(double rate_per_s, double burst) {
  set_rate(rate_per_s, burst);
}

void TokenBucket::set_rate(double rate_per_s, double burst) {
  // The negated comparisons also refuse NaN.
  if (!(rate_per_s > 0.0) || !(burst >= 1.0) || !std::isfinite(burst)) {
    throw std::invalid_argument("a token bucket needs a rate above 0 and a burst of at least 1");
  }
  const auto ns = std::llround(1e9 / rate_per_s);
  interval_ = std::chrono::nanoseconds(std::max<long long>(ns, 1));
  capacity_ =
      std::chrono::nanoseconds(std::llround(burst * static_cast<double>(interval_.count())));
}

bool TokenBucket::try_take(TimePoint now) {
  const auto next = std::max(full_at_, now) + interval_;
  if (next - now > capacity_) return false;
  full_at_ = next;
  return true;
}

double TokenBucket::tokens(TimePoint now) const {
  const auto debt = full_at_ > now ? full_at_ - now : Clock::duration::zero();
  return static_cast<double>((capacity_ - debt).count()) / static_cast<double>(interval_.count());
}

const char* to_string(AdmissionRefusal refusal) {
  switch (refusal) {
    case AdmissionRefusal::connections_total: return "connections_total";
    case AdmissionRefusal::connections_per_source: return "connections_per_source";
    case AdmissionRefusal::pending_total: return "pending_total";
    case AdmissionRefusal::sources_total: return "sources_total";
    case AdmissionRefusal::pending_per_source: return "pending_per_source";
    case AdmissionRefusal::rate_per_source: return "rate_per_source";
  }
  return "unknown";
}

// ---------------------------------------------------------------- descriptor budget

DescriptorBudget plan_descriptors(std::uint64_t nofile, std::uint64_t fds_at_start,
                                  std::size_t http_connections, std::size_t connections_flag) {
  // RLIMIT_NOFILE may be "infinity"; Linux never allows more than fs.nr_open (2^20 by default).
  constexpr std::uint64_t max_nofile = 1ull << 24;
  nofile = std::min(nofile, max_nofile);
  const std::uint64_t http = http_connections == 0 ? 0 : http_connections + 1;
  const std::uint64_t reserved = fds_at_start + http + descriptor_margin;
  DescriptorBudget b;
  b.usable = static_cast<std::size_t>(nofile > reserved ? nofile - reserved : 0);
  if (connections_flag != 0) {
    b.connections = connections_flag;
  } else {
    const auto share =
        static_cast<std::size_t>(static_cast<double>(nofile) * connections_share_of_nofile);
    b.connections = std::max<std::size_t>(std::min(share, b.usable), 1);
  }
  b.pipe_fds = b.usable > b.connections ? b.usable - b.connections : 0;
  return b;
}

std::size_t http_connection_cap(std::uint64_t nofile) {
  return static_cast<std::size_t>(std::clamp<std::uint64_t>(nofile / 32, 2, http_max_connections));
}

std::optional<std::uint64_t> count_open_descriptors() {
  std::error_code ec;
  std::uint64_t fds = 0;
  for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end;
       it.increment(ec)) {
    ++fds;
  }
  if (ec || fds == 0) return std::nullopt;
  return fds - 1;  // the iterator's own descriptor
}

// ---------------------------------------------------------------- Admission

Admission::Admission(const AdmissionLimits& limits, const HashKey& hash_key)
    : limits_(limits),
      rates_(0, KeyedHash(hash_key)),
      pending_by_site_(0, KeyedHash(hash_key)),
      connections_by_site_(0, KeyedHash(hash_key)),
      pending_counts_(hash_key),
      connection_counts_(hash_key) {
  // Validate the bucket parameters now, not at the first connection.
  (void)TokenBucket(limits.rate_per_source, limits.burst_per_source);
}

std::variant<Admission::Admitted, AdmissionRefusal> Admission::try_admit(const Source& source,
                                                                         TimePoint now) {
  Evictor evict_a;
  Evictor evict_b;
  std::variant<Admitted, AdmissionRefusal> result = AdmissionRefusal::connections_total;
  {
    std::lock_guard lock(mutex_);
    evict_idle(now);
    // The checks that need no change of state come first, so a refusal evicts nobody.
    std::uint64_t connection_victim = 0;
    if (connection_counts_.total() >= limits_.connections_total + evicting_) {
      if (evicting_ < max_evicting) {
        connection_victim =
            fair_share_victim(source, connection_counts_, connections_by_site_, true);
      }
      if (connection_victim == 0) return AdmissionRefusal::connections_total;
    }
    if (connection_counts_.at_cap(source, limits_.connections))
      return AdmissionRefusal::connections_per_source;
    std::uint64_t pending_victim = 0;
    if (pending_counts_.total() >= limits_.pending_total) {
      pending_victim = fair_share_victim(source, pending_counts_, pending_by_site_, false);
      if (pending_victim == 0) return AdmissionRefusal::pending_total;
    }
    auto it = rates_.find(source.host());
    if (it == rates_.end()) {
      if (rates_.size() >= limits_.sources_total) return AdmissionRefusal::sources_total;
      RateSource fresh{0, TokenBucket(limits_.rate_per_source, limits_.burst_per_source), {}};
      it = rates_.emplace(source.host(), std::move(fresh)).first;
      it->second.idle_pos = idle_.insert(idle_.end(), source.host());
    }
    RateSource& r = it->second;
    if (pending_counts_.at_cap(source, limits_.pending))
      return AdmissionRefusal::pending_per_source;
    if (!r.bucket.try_take(now)) {
      if (r.pending == 0) idle_.splice(idle_.end(), idle_, r.idle_pos);  // recently active
      return AdmissionRefusal::rate_per_source;
    }
    if (connection_victim != 0) evict_a = evict_connection(connection_victim);
    if (pending_victim != 0) evict_b = evict_pending(pending_victim);
    if (r.pending == 0) idle_.erase(r.idle_pos);
    ++r.pending;
    const std::uint64_t id = next_id_++;
    entries_.emplace(id, Entry{source, true, false, false, true, {}});
    pending_counts_.add(source);
    connection_counts_.add(source);
    pending_by_site_[source.site()].insert(id);
    connections_by_site_[source.site()].insert(id);
    result = Admitted(this, id, source);
  }
  // With no lock held: an evictor may end a session, whose guard then releases here.
  if (evict_a) evict_a();
  if (evict_b) evict_b();
  return result;
}

// Fair share: the newcomer's site, once admitted, must still hold fewer than the heaviest
// site holds now. Then the heaviest site's oldest entry goes (for established connections,
// the oldest that is neither in a tunnel nor already told to go).
std::uint64_t Admission::fair_share_victim(
    const Source& source, const SourceCounts& counts,
    const std::unordered_map<SourceKey, Ids, KeyedHash>& by_site, bool established) const {
  const auto heaviest = counts.heaviest();
  if (!heaviest || counts.count(source.site()) + 1 >= heaviest->second) return 0;
  const auto site = by_site.find(heaviest->first);
  if (site == by_site.end()) return 0;
  for (const std::uint64_t id : site->second) {
    const Entry& e = entries_.at(id);
    if (!established || (e.evictable && !e.evicted && e.evictor)) return id;
  }
  return 0;
}

Admission::Evictor Admission::evict_pending(std::uint64_t id) {
  Entry& e = entries_.at(id);
  end_pending(id, e);
  e.evicted = true;
  ++pending_evictions_;
  return e.evictor;  // empty until the session sets it; set_evictor() then calls it
}

Admission::Evictor Admission::evict_connection(std::uint64_t id) {
  Entry& e = entries_.at(id);
  e.evicted = true;
  e.in_flight = true;
  ++evicting_;
  ++connection_evictions_;
  return e.evictor;
}

void Admission::end_pending(std::uint64_t id, Entry& entry) {
  if (!entry.pending) return;
  entry.pending = false;
  pending_counts_.remove(entry.source);
  auto site = pending_by_site_.find(entry.source.site());
  site->second.erase(id);
  if (site->second.empty()) pending_by_site_.erase(site);
  // The rate entry exists: a host with a pending handshake is never dropped.
  RateSource& r = rates_.find(entry.source.host())->second;
  if (--r.pending == 0) r.idle_pos = idle_.insert(idle_.end(), entry.source.host());
}

Clock::duration Admission::handshake_deadline(Clock::duration base) const {
  std::lock_guard lock(mutex_);
  const auto floor = std::min(base, limits_.min_handshake_timeout);
  const double total = static_cast<double>(std::max<std::size_t>(limits_.pending_total, 1));
  const double fill = static_cast<double>(pending_counts_.total()) / total;
  if (fill <= 0.5) return base;
  const double left = std::max(0.0, (1.0 - fill) * 2.0);  // 1 at half full, 0 at full
  const auto span = std::chrono::duration<double>(base - floor) * left;
  return floor + std::chrono::duration_cast<Clock::duration>(span);
}

// Idle hosts are in the order they last became idle or were refused. A front entry whose
// bucket is full is indistinguishable from an absent one, so it is dropped; the scan stops at
// the first that is not, which keeps each call O(1) amortised.
void Admission::evict_idle(TimePoint now) {
  while (!idle_.empty()) {
    const auto it = rates_.find(idle_.front());
    if (!it->second.bucket.is_full(now)) break;
    rates_.erase(it);
    idle_.pop_front();
  }
}

void Admission::release(std::uint64_t id, bool pending, bool connection) {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  Entry& e = it->second;
  if (pending) end_pending(id, e);
  if (!connection) return;
  end_pending(id, e);
  connection_counts_.remove(e.source);
  auto site = connections_by_site_.find(e.source.site());
  site->second.erase(id);
  if (site->second.empty()) connections_by_site_.erase(site);
  if (e.in_flight) --evicting_;
  entries_.erase(it);
}

void Admission::set_evictor(std::uint64_t id, Evictor evictor, bool evictable) {
  Evictor now;
  {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(id);
    if (it == entries_.end()) return;
    it->second.evictable = evictable;
    it->second.evictor = evictor;
    if (it->second.evicted) now = std::move(evictor);  // evicted before it could be told
  }
  if (now) now();
}

bool Admission::try_reserve_pipe_fds(std::size_t count) {
  std::lock_guard lock(mutex_);
  if (count > limits_.pipe_fds_total || pipe_fds_ > limits_.pipe_fds_total - count) return false;
  pipe_fds_ += count;
  return true;
}

void Admission::release_pipe_fds(std::size_t count) {
  std::lock_guard lock(mutex_);
  pipe_fds_ -= std::min(count, pipe_fds_);
}

std::size_t Admission::pipe_fds() const {
  std::lock_guard lock(mutex_);
  return pipe_fds_;
}

void Admission::set_limits(const AdmissionLimits& limits) {
  (void)TokenBucket(limits.rate_per_source, limits.burst_per_source);  // validate before changing
  std::lock_guard lock(mutex_);
  limits_ = limits;
  for (auto& [key, r] : rates_) r.bucket.set_rate(limits.rate_per_source, limits.burst_per_source);
}

AdmissionLimits Admission::limits() const {
  std::lock_guard lock(mutex_);
  return limits_;
}

std::size_t Admission::pending_total() const {
  std::lock_guard lock(mutex_);
  return pending_counts_.total();
}

std::size_t Admission::connections() const {
  std::lock_guard lock(mutex_);
  return connection_counts_.total();
}

std::size_t Admission::sources() const {
  std::lock_guard lock(mutex_);
  return rates_.size();
}

std::size_t Admission::evicting() const {
  std::lock_guard lock(mutex_);
  return evicting_;
}

std::uint64_t Admission::pending_evictions() const {
  std::lock_guard lock(mutex_);
  return pending_evictions_;
}

std::uint64_t Admission::connection_evictions() const {
  std::lock_guard lock(mutex_);
  return connection_evictions_;
}

std::vector<SourceLoad> Admission::heaviest_sources(std::size_t n) const {
  std::lock_guard lock(mutex_);
  std::vector<SourceLoad> out;
  for (const auto& [site, count] : connection_counts_.heaviest(n)) {
    out.push_back(SourceLoad{site.to_string(), count, pending_counts_.count(site)});
  }
  return out;
}

// ---------------------------------------------------------------- Admitted

Admission::Admitted::Admitted(Admitted&& other) noexcept
    : admission_(std::exchange(other.admission_, nullptr)),
      id_(other.id_),
      source_(other.source_),
      pending_(other.pending_) {}

Admission::Admitted& Admission::Admitted::operator=(Admitted&& other) noexcept {
  if (this != &other) {
    reset();
    admission_ = std::exchange(other.admission_, nullptr);
    id_ = other.id_;
    source_ = other.source_;
    pending_ = other.pending_;
  }
  return *this;
}

Admission::Admitted::~Admitted() {
  reset();
}

void Admission::Admitted::handshake_done() {
  if (admission_ == nullptr || !pending_) return;
  pending_ = false;
  admission_->release(id_, true, false);
}

void Admission::Admitted::set_evictor(Evictor evictor) {
  if (admission_ != nullptr) admission_->set_evictor(id_, std::move(evictor), true);
}

void Admission::Admitted::not_evictable() {
  if (admission_ != nullptr) admission_->set_evictor(id_, {}, false);
}

void Admission::Admitted::reset() {
  if (admission_ == nullptr) return;
  admission_->release(id_, pending_, true);
  admission_ = nullptr;
}

bool MemoryTrimPolicy::trim_due(std::int64_t connections) {
  sample(connections);
  if (connections * 4 > peak_ * 3) return false;  // no drop of a quarter or more since the peak
  const bool due = peak_ > 0;
  peak_ = connections;
  return due;
}

}  // namespace strelay
