#include "common/backoff.hpp"

#include <sodium.h>

#include <stdexcept>

namespace strelay {

namespace {

std::uint64_t sodium_random() {
  std::uint64_t value = 0;
  randombytes_buf(&value, sizeof value);
  return value;
}

}  // namespace

Backoff::Backoff(BackoffOptions options, Random random)
    : options_(options), random_(random ? std::move(random) : Random(sodium_random)) {
  if (options_.initial.count() <= 0 || options_.cap < options_.initial) {
    throw std::invalid_argument("backoff: need 0 < initial <= cap");
  }
}

std::chrono::milliseconds Backoff::ceiling() const {
  // Doubling stops at the cap, so neither the shift nor the product can overflow.
  std::chrono::milliseconds bound = options_.initial;
  for (unsigned i = 0; i < attempts_ && bound < options_.cap; ++i) bound *= 2;
  return bound < options_.cap ? bound : options_.cap;
}

std::chrono::milliseconds Backoff::next_delay() {
  const auto bound = static_cast<std::uint64_t>(ceiling().count());
  if (attempts_ < 64) ++attempts_;  // past the cap, more attempts change nothing
  // Modulo bias is at most bound / 2^64: irrelevant for delays of a few thousand ms.
  return std::chrono::milliseconds(static_cast<std::int64_t>(random_() % (bound + 1)));
}

void Backoff::connection_ended(std::chrono::steady_clock::duration up_for) {
  if (up_for >= options_.stable_after) reset();
}

}  // namespace strelay
