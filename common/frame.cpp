#include "common/frame.hpp"

#include <algorithm>
#include <cassert>
#include <cstring>

#include "common/errors.hpp"

namespace strelay {

std::array<std::uint8_t, length_prefix_bytes> encode_length(std::uint16_t length) {
  return {static_cast<std::uint8_t>(length >> 8), static_cast<std::uint8_t>(length & 0xff)};
}

std::error_code try_append_frame(std::vector<std::uint8_t>& out,
                                 std::span<const std::uint8_t> body) {
  if (body.size() > max_frame_bytes) return errc::frame_too_large;
  const auto prefix = encode_length(static_cast<std::uint16_t>(body.size()));
  out.insert(out.end(), prefix.begin(), prefix.end());
  out.insert(out.end(), body.begin(), body.end());
  return {};
}

FrameDecoder::FrameDecoder(std::size_t max_body, std::size_t min_body) {
  set_limits(max_body, min_body);
}

void FrameDecoder::set_limits(std::size_t max_body, std::size_t min_body) {
  assert(min_body <= max_body);
  max_body_ = std::min(max_body, max_frame_bytes);
  min_body_ = min_body;
}

void FrameDecoder::take_header_byte(std::uint8_t byte) {
  header_[header_got_++] = byte;
  if (header_got_ < length_prefix_bytes) return;
  announced_ = static_cast<std::size_t>(header_[0]) << 8 | header_[1];
  body_got_ = 0;
  // The bounds are checked here, from the header alone, before any body byte is kept.
  if (announced_ > max_body_) {
    state_ = State::failed;
    error_ = errc::frame_too_large;
  } else if (announced_ < min_body_) {
    state_ = State::failed;
    error_ = errc::protocol_error;
  } else {
    state_ = announced_ == 0 ? State::complete : State::body;
  }
}

void FrameDecoder::reserve_body(std::size_t want) {
  const std::size_t needed = body_got_ + want;
  if (needed <= capacity_) return;
  // Grow with what has arrived (doubling), never past the announced length: memory follows
  // the bytes the peer actually sent, not the length it claimed.
  const std::size_t grown = std::max({needed, 2 * body_got_, frame_buffer_first_bytes});
  const std::size_t new_capacity = std::min(grown, announced_);
  auto fresh = std::make_unique_for_overwrite<std::uint8_t[]>(new_capacity);
  if (body_got_ > 0) std::memcpy(fresh.get(), buffer_.get(), body_got_);
  buffer_ = std::move(fresh);
  capacity_ = new_capacity;
}

std::size_t FrameDecoder::feed(std::span<const std::uint8_t> in) {
  std::size_t taken = 0;
  while (taken < in.size() && state_ == State::header) take_header_byte(in[taken++]);
  if (state_ != State::body || taken == in.size()) return taken;
  const std::size_t n = std::min(in.size() - taken, announced_ - body_got_);
  reserve_body(n);
  std::memcpy(buffer_.get() + body_got_, in.data() + taken, n);
  commit(n);
  return taken + n;
}

std::span<std::uint8_t> FrameDecoder::prepare(std::size_t waiting) {
  switch (state_) {
    case State::header: return std::span<std::uint8_t>(header_).subspan(header_got_);
    case State::body: {
      reserve_body(std::clamp<std::size_t>(waiting, 1, announced_ - body_got_));
      const std::size_t room = std::min(capacity_, announced_) - body_got_;
      return {buffer_.get() + body_got_, room};
    }
    case State::complete:
    case State::failed: break;
  }
  return {};
}

void FrameDecoder::commit(std::size_t n) {
  if (state_ == State::header) {
    // prepare() handed out header_ itself: the bytes are in place, run them through the
    // same path as feed() so the bounds check happens exactly once.
    assert(header_got_ + n <= length_prefix_bytes);
    const std::size_t start = header_got_;
    for (std::size_t i = 0; i < n; ++i) {
      header_got_ = start + i;
      take_header_byte(header_[start + i]);
    }
    return;
  }
  if (state_ != State::body) return;
  assert(body_got_ + n <= std::min(capacity_, announced_));
  body_got_ += n;
  if (body_got_ == announced_) state_ = State::complete;
}

void FrameDecoder::next() {
  if (state_ != State::complete) return;
  state_ = State::header;
  header_got_ = 0;
  announced_ = 0;
  body_got_ = 0;
}

void FrameDecoder::release_memory() {
  if (state_ == State::body) return;
  buffer_.reset();
  capacity_ = 0;
}

}  // namespace strelay
