#include "strelay/limits.hpp"

#include <sodium.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <utility>

namespace strelay {

static_assert(std::tuple_size_v<HashKey> == crypto_shorthash_KEYBYTES);
static_assert(crypto_shorthash_BYTES == 8);

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

// ---------------------------------------------------------------- keyed hash, sources

HashKey random_hash_key() {
  HashKey key;
  crypto_shorthash_keygen(key.data());
  return key;
}

std::size_t KeyedHash::operator()(std::span<const std::uint8_t> bytes) const {
  std::array<std::uint8_t, crypto_shorthash_BYTES> out{};
  crypto_shorthash(out.data(), bytes.data(), bytes.size(), key_.data());
  std::uint64_t h = 0;
  std::memcpy(&h, out.data(), sizeof h);
  return static_cast<std::size_t>(h);
}

std::size_t KeyedHash::operator()(const SourceKey& key) const {
  std::array<std::uint8_t, 17> bytes{};
  bytes[0] = key.family;
  std::copy(key.bytes.begin(), key.bytes.end(), bytes.begin() + 1);
  return (*this)(std::span<const std::uint8_t>(bytes));
}

SourceKey SourceKey::from_address(const boost::asio::ip::address& address) {
  SourceKey key;
  auto v4 = [&key](const boost::asio::ip::address_v4& a) {
    const auto b = a.to_bytes();
    key.family = 4;
    std::copy(b.begin(), b.end(), key.bytes.begin());
  };
  if (address.is_v4()) {
    v4(address.to_v4());
  } else if (const auto a = address.to_v6(); a.is_v4_mapped()) {
    v4(boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, a));
  } else {
    // One /64 is what a single host or customer is typically given: counting per address
    // would let one host use 2^64 of them.
    const auto b = a.to_bytes();
    key.family = 6;
    std::copy(b.begin(), b.begin() + 8, key.bytes.begin());
  }
  return key;
}

std::string SourceKey::to_string() const {
  if (family == 4) {
    return boost::asio::ip::address_v4({bytes[0], bytes[1], bytes[2], bytes[3]}).to_string();
  }
  return boost::asio::ip::address_v6(bytes).to_string() + "/64";
}

const char* to_string(AdmissionRefusal refusal) {
  switch (refusal) {
    case AdmissionRefusal::connections_total: return "connections_total";
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
    : limits_(limits), sources_(0, KeyedHash(hash_key)) {
  // Validate the bucket parameters now, not at the first connection.
  (void)TokenBucket(limits.rate_per_source, limits.burst_per_source);
}

std::variant<Admission::Admitted, AdmissionRefusal> Admission::try_admit(const SourceKey& source,
                                                                         TimePoint now) {
  std::lock_guard lock(mutex_);
  evict_idle(now);
  if (connections_ >= limits_.connections_total) return AdmissionRefusal::connections_total;
  if (pending_total_ >= limits_.pending_total) return AdmissionRefusal::pending_total;
  auto it = sources_.find(source);
  if (it == sources_.end()) {
    if (sources_.size() >= limits_.sources_total) return AdmissionRefusal::sources_total;
    Source fresh{0, TokenBucket(limits_.rate_per_source, limits_.burst_per_source), {}};
    it = sources_.emplace(source, std::move(fresh)).first;
    it->second.idle_pos = idle_.insert(idle_.end(), source);
  }
  Source& s = it->second;
  if (s.pending >= limits_.pending_per_source) return AdmissionRefusal::pending_per_source;
  if (!s.bucket.try_take(now)) {
    if (s.pending == 0) idle_.splice(idle_.end(), idle_, s.idle_pos);  // recently active
    return AdmissionRefusal::rate_per_source;
  }
  if (s.pending == 0) idle_.erase(s.idle_pos);
  ++s.pending;
  ++pending_total_;
  ++connections_;
  return Admitted(this, source);
}

// Idle sources are in the order they last became idle or were refused. A front entry whose
// bucket is full is indistinguishable from an absent one, so it is dropped; the scan stops at
// the first that is not, which keeps each call O(1) amortised.
void Admission::evict_idle(TimePoint now) {
  while (!idle_.empty()) {
    const auto it = sources_.find(idle_.front());
    if (!it->second.bucket.is_full(now)) break;
    sources_.erase(it);
    idle_.pop_front();
  }
}

void Admission::release(const SourceKey& source, bool pending, bool connection) {
  std::lock_guard lock(mutex_);
  if (pending) {
    // The entry exists: a source with a pending handshake is never evicted.
    Source& s = sources_.find(source)->second;
    --s.pending;
    --pending_total_;
    if (s.pending == 0) s.idle_pos = idle_.insert(idle_.end(), source);
  }
  if (connection) --connections_;
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
  for (auto& [key, s] : sources_)
    s.bucket.set_rate(limits.rate_per_source, limits.burst_per_source);
}

AdmissionLimits Admission::limits() const {
  std::lock_guard lock(mutex_);
  return limits_;
}

std::size_t Admission::pending_total() const {
  std::lock_guard lock(mutex_);
  return pending_total_;
}

std::size_t Admission::connections() const {
  std::lock_guard lock(mutex_);
  return connections_;
}

std::size_t Admission::sources() const {
  std::lock_guard lock(mutex_);
  return sources_.size();
}

// ---------------------------------------------------------------- Admitted

Admission::Admitted::Admitted(Admitted&& other) noexcept
    : admission_(std::exchange(other.admission_, nullptr)),
      source_(other.source_),
      pending_(other.pending_) {}

Admission::Admitted& Admission::Admitted::operator=(Admitted&& other) noexcept {
  if (this != &other) {
    reset();
    admission_ = std::exchange(other.admission_, nullptr);
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
  admission_->release(source_, true, false);
}

void Admission::Admitted::reset() {
  if (admission_ == nullptr) return;
  admission_->release(source_, pending_, true);
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
