// Tests for common/frame: the 2-byte length prefix framing, sans-io.
#include "common/frame.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "common/errors.hpp"

using namespace strelay;

namespace {

using Bytes = std::vector<std::uint8_t>;

Bytes frame_of(const Bytes& body) {
  Bytes out;
  REQUIRE(!try_append_frame(out, body));
  return out;
}

// Decodes `stream` by feeding it in the given chunk sizes; returns the bodies seen.
std::vector<Bytes> decode_by_feed(const Bytes& stream, const std::vector<std::size_t>& chunks,
                                  FrameDecoder& decoder) {
  std::vector<Bytes> out;
  std::size_t pos = 0;
  for (std::size_t chunk : chunks) {
    std::span<const std::uint8_t> in(stream.data() + pos, chunk);
    pos += chunk;
    while (!in.empty()) {
      const std::size_t taken = decoder.feed(in);
      in = in.subspan(taken);
      if (decoder.complete()) {
        auto body = decoder.body();
        out.emplace_back(body.begin(), body.end());
        decoder.next();
      } else {
        REQUIRE(taken > 0);  // not complete and not failed: it must make progress
      }
    }
  }
  return out;
}

// The same through prepare()/commit(), with reads capped at the chunk sizes, as a socket would.
std::vector<Bytes> decode_by_pull(const Bytes& stream, const std::vector<std::size_t>& chunks,
                                  FrameDecoder& decoder) {
  std::vector<Bytes> out;
  std::size_t pos = 0;
  for (std::size_t chunk : chunks) {
    std::size_t left = chunk;
    while (left > 0) {
      auto room = decoder.prepare();
      REQUIRE(!room.empty());
      const std::size_t n = std::min(room.size(), left);
      std::copy_n(stream.begin() + static_cast<std::ptrdiff_t>(pos), n, room.begin());
      decoder.commit(n);
      pos += n;
      left -= n;
      if (decoder.complete()) {
        auto body = decoder.body();
        out.emplace_back(body.begin(), body.end());
        decoder.next();
      }
    }
  }
  return out;
}

}  // namespace

TEST_CASE("random frame streams split into random reads decode identically") {
  std::mt19937_64 rng(20240601);
  constexpr int cases = 10000;
  for (int c = 0; c < cases; ++c) {
    std::vector<Bytes> bodies(1 + rng() % 6);
    Bytes stream;
    for (auto& body : bodies) {
      // Mostly small bodies, sometimes empty, now and then a large one.
      const auto pick = rng() % 100;
      const std::size_t len = pick < 10   ? 0
                              : pick < 97 ? rng() % 300
                                          : rng() % (max_frame_bytes + 1);
      body.resize(len);
      for (auto& b : body) b = static_cast<std::uint8_t>(rng());
      auto framed = frame_of(body);
      stream.insert(stream.end(), framed.begin(), framed.end());
    }
    std::vector<std::size_t> chunks;
    for (std::size_t left = stream.size(); left > 0;) {
      const auto mode = rng() % 4;
      std::size_t n = mode == 0 ? 1 : mode == 1 ? 1 + rng() % 3 : 1 + rng() % 700;
      n = std::min(n, left);
      chunks.push_back(n);
      left -= n;
    }
    FrameDecoder feeder;
    FrameDecoder puller;
    const auto fed = decode_by_feed(stream, chunks, feeder);
    const auto pulled = decode_by_pull(stream, chunks, puller);
    REQUIRE(fed == bodies);
    REQUIRE(pulled == bodies);
    REQUIRE_FALSE(feeder.mid_frame());
  }
}

TEST_CASE("the decoder never takes a byte past the end of a frame") {
  const Bytes first = frame_of(Bytes{1, 2, 3});
  Bytes stream = first;
  stream.insert(stream.end(), {0xde, 0xad, 0xbe, 0xef});  // e.g. raw pipe bytes after Connected
  FrameDecoder decoder;
  CHECK(decoder.feed(stream) == first.size());
  REQUIRE(decoder.complete());
  CHECK(decoder.feed(stream) == 0);  // complete: takes nothing until next()
  CHECK(decoder.prepare().empty());

  FrameDecoder puller;
  std::size_t pos = 0;
  while (!puller.complete()) {
    auto room = puller.prepare();
    // Offer never extends beyond the frame, so an exact read cannot swallow the raw bytes.
    REQUIRE(pos + room.size() <= first.size());
    std::copy_n(stream.begin() + static_cast<std::ptrdiff_t>(pos), room.size(), room.begin());
    puller.commit(room.size());
    pos += room.size();
  }
  CHECK(pos == first.size());
}

TEST_CASE("lengths are checked against the caller's limits at max and max+1") {
  SUBCASE("the protocol maximum, 65535, decodes") {
    const Bytes body(max_frame_bytes, 0x5a);
    FrameDecoder decoder;
    const auto stream = frame_of(body);
    CHECK(decoder.feed(stream) == stream.size());
    REQUIRE(decoder.complete());
    CHECK(decoder.body().size() == max_frame_bytes);
  }
  SUBCASE("the encoder refuses 65536 bytes and leaves its output alone") {
    Bytes out{7};
    CHECK(try_append_frame(out, Bytes(max_frame_bytes + 1)) == errc::frame_too_large);
    CHECK(out == Bytes{7});
    CHECK(!try_append_frame(out, Bytes(max_frame_bytes)));
    CHECK(out.size() == 1 + length_prefix_bytes + max_frame_bytes);
  }
  SUBCASE("a caller's cap: max passes, max+1 fails from the header alone") {
    FrameDecoder at_max(100);
    const auto ok = frame_of(Bytes(100, 1));
    CHECK(at_max.feed(ok) == ok.size());
    CHECK(at_max.complete());

    FrameDecoder over(100);
    const auto big = frame_of(Bytes(101, 1));
    CHECK(over.feed(big) == length_prefix_bytes);  // the body is never taken
    CHECK(over.state() == FrameDecoder::State::failed);
    CHECK(over.error() == errc::frame_too_large);
    CHECK(over.capacity() == 0);
    CHECK(over.feed(big) == 0);  // failed is terminal
  }
  SUBCASE("an exact size (handshake messages): one less and one more both fail") {
    FrameDecoder exact(32, 32);
    CHECK(exact.feed(frame_of(Bytes(32))) == 34);
    CHECK(exact.complete());
    FrameDecoder shorter(32, 32);
    shorter.feed(frame_of(Bytes(31)));
    CHECK(shorter.error() == errc::protocol_error);
    FrameDecoder longer(32, 32);
    longer.feed(frame_of(Bytes(33)));
    CHECK(longer.error() == errc::frame_too_large);
  }
}

TEST_CASE("an empty frame is reported faithfully as an empty body") {
  FrameDecoder decoder;
  CHECK(decoder.feed(Bytes{0, 0, 9}) == 2);
  REQUIRE(decoder.complete());
  CHECK(decoder.body().empty());
  CHECK(decoder.capacity() == 0);
}

TEST_CASE("announcing 65535 bytes and sending 10 yields no frame and no large allocation") {
  Bytes stream{0xff, 0xff};
  stream.insert(stream.end(), 10, 0xaa);
  SUBCASE("pushed") {
    FrameDecoder decoder;
    CHECK(decoder.feed(stream) == stream.size());
    CHECK(decoder.state() == FrameDecoder::State::body);
    CHECK(decoder.announced() == 65535);
    CHECK(decoder.mid_frame());
    CHECK(decoder.body().empty());
    CHECK(decoder.capacity() <= frame_buffer_first_bytes);
  }
  SUBCASE("pulled, as the socket driver does") {
    FrameDecoder decoder;
    auto header = decoder.prepare();
    REQUIRE(header.size() == length_prefix_bytes);
    std::copy_n(stream.begin(), 2, header.begin());
    decoder.commit(2);
    auto room = decoder.prepare();
    CHECK(room.size() <= frame_buffer_first_bytes);
    std::copy_n(stream.begin() + 2, 10, room.begin());
    decoder.commit(10);
    CHECK_FALSE(decoder.complete());
    CHECK(decoder.capacity() <= frame_buffer_first_bytes);
  }
}

TEST_CASE("the body buffer grows with the bytes that arrive, then can be released") {
  FrameDecoder decoder;
  const Bytes body(max_frame_bytes, 3);
  const auto stream = frame_of(body);
  std::size_t pos = 0;
  std::size_t largest_lead = 0;
  while (!decoder.complete()) {
    auto room = decoder.prepare();
    const std::size_t n = std::min<std::size_t>(room.size(), 1000);
    std::copy_n(stream.begin() + static_cast<std::ptrdiff_t>(pos), n, room.begin());
    decoder.commit(n);
    pos += n;
    // Capacity stays within twice what arrived (or the first step).
    if (decoder.capacity() > 2 * pos + frame_buffer_first_bytes) largest_lead = decoder.capacity();
  }
  CHECK(largest_lead == 0);
  CHECK(decoder.body().size() == max_frame_bytes);
  decoder.next();
  CHECK(decoder.capacity() == max_frame_bytes);  // kept for the next frame
  decoder.release_memory();
  CHECK(decoder.capacity() == 0);
  // Still decodes after a release.
  const auto small = frame_of(Bytes{4, 5});
  CHECK(decoder.feed(small) == small.size());
  CHECK(decoder.complete());
}

TEST_CASE("bytes known to be waiting may be taken in one read, never past the frame") {
  FrameDecoder decoder;
  const Bytes header{0xff, 0xff};
  CHECK(decoder.feed(header) == 2);
  // 70000 bytes waiting in the kernel: room for exactly the rest of this frame, no more.
  auto room = decoder.prepare(70000);
  CHECK(room.size() == max_frame_bytes);
  CHECK(decoder.capacity() == max_frame_bytes);
  decoder.commit(room.size());
  CHECK(decoder.complete());
}
