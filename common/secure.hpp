// Memory for secrets: sodium_malloc'd (guard pages, mlock'd where the system allows it),
// wiped and freed on destruction, movable but never copyable, and never printable.
#pragma once

#include <sodium.h>

#include <cstddef>
#include <new>
#include <span>
#include <utility>

namespace strelay {

template <std::size_t N>
class Secret {
 public:
  Secret() : bytes_(static_cast<unsigned char*>(sodium_malloc(N))) {
    if (bytes_ == nullptr) throw std::bad_alloc();
    sodium_memzero(bytes_, N);
  }
  ~Secret() { reset(); }
  Secret(Secret&& other) noexcept : bytes_(std::exchange(other.bytes_, nullptr)) {}
  Secret& operator=(Secret&& other) noexcept {
    if (this != &other) {
      reset();
      bytes_ = std::exchange(other.bytes_, nullptr);
    }
    return *this;
  }
  Secret(const Secret&) = delete;
  Secret& operator=(const Secret&) = delete;

  static constexpr std::size_t size() { return N; }
  unsigned char* data() { return bytes_; }
  const unsigned char* data() const { return bytes_; }
  std::span<unsigned char, N> span() { return std::span<unsigned char, N>(bytes_, N); }
  std::span<const unsigned char, N> span() const {
    return std::span<const unsigned char, N>(bytes_, N);
  }
  // A moved-from Secret holds nothing.
  bool empty() const { return bytes_ == nullptr; }
  void wipe() {
    if (bytes_ != nullptr) sodium_memzero(bytes_, N);
  }

 private:
  void reset() {
    if (bytes_ != nullptr) sodium_free(bytes_);  // sodium_free wipes before freeing
    bytes_ = nullptr;
  }
  unsigned char* bytes_;
};

}  // namespace strelay
