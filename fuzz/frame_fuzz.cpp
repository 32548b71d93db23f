// libFuzzer target for the frame decoder and Transport::open. Input layout:
//
//   [0..1]   max body length the decoder is given (big-endian; 0..65535)
//   [2..9]   a seed for the read sizes the stream is split into (1 byte up to the whole rest)
//   [10]     L, the length of a plaintext to seal and open
//   [11..)   L bytes of plaintext (kind byte first: any kind, any body), then the stream
//
// Checks:
//  - the push (feed) and pull (prepare/commit) interfaces decode the stream into the same
//    frames, whatever the split, never take a byte past a frame, and never hold a buffer larger
//    than twice the bytes received plus the first step, nor past the limit;
//  - every decoded body goes through Transport::open, which must fail cleanly (it cannot
//    authenticate without the key) and stay failed;
//  - the plaintext, sealed under the receiver's key with a raw CipherState, is opened: the body
//    rules (kinds, close reasons and UTF-8 details, ping tokens) run on arbitrary plaintexts, and
//    whatever opens must re-seal to the same frame.
#include <sodium.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "common/frame.hpp"
#include "common/transport.hpp"

using namespace strelay;

namespace {

using Bytes = std::vector<std::uint8_t>;

void check(bool condition) {
  if (!condition) std::abort();
}

CipherState fixed_cipher(std::uint8_t fill) {
  std::array<std::uint8_t, key_bytes> key{};
  key.fill(fill);
  return CipherState(key, Cipher::chachapoly);
}

// A tiny deterministic generator for the read sizes (splitmix64).
struct Splitter {
  std::uint64_t state;
  std::size_t next(std::size_t left) {
    state += 0x9e3779b97f4a7c15ULL;
    std::uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    // Mostly small reads (1-3 bytes exercise the header), sometimes large ones.
    const std::size_t size = (z & 3) == 0 ? 1 + (z >> 8) % 3 : 1 + (z >> 8) % 4096;
    return std::min(size, left);
  }
};

std::vector<Bytes> decode_push(std::span<const std::uint8_t> stream, std::size_t max_body,
                               std::uint64_t seed, FrameDecoder& decoder) {
  std::vector<Bytes> frames;
  Splitter split{seed};
  std::size_t pos = 0;
  while (pos < stream.size()) {
    auto chunk = stream.subspan(pos, split.next(stream.size() - pos));
    while (!chunk.empty()) {
      const std::size_t taken = decoder.feed(chunk);
      check(taken <= chunk.size());
      chunk = chunk.subspan(taken);
      pos += taken;
      if (decoder.complete()) {
        auto body = decoder.body();
        check(body.size() == decoder.announced() && body.size() <= max_body);
        frames.emplace_back(body.begin(), body.end());
        decoder.next();
      } else if (taken == 0) {
        check(decoder.state() == FrameDecoder::State::failed);
        return frames;
      }
    }
  }
  return frames;
}

std::vector<Bytes> decode_pull(std::span<const std::uint8_t> stream, std::uint64_t seed,
                               FrameDecoder& decoder) {
  std::vector<Bytes> frames;
  Splitter split{seed};
  std::size_t pos = 0;
  while (pos < stream.size()) {
    std::size_t left = split.next(stream.size() - pos);
    while (left > 0) {
      auto room = decoder.prepare(left);
      if (room.empty()) {
        check(decoder.state() == FrameDecoder::State::failed);
        return frames;
      }
      const std::size_t n = std::min(room.size(), left);
      std::copy_n(stream.begin() + static_cast<std::ptrdiff_t>(pos), n, room.begin());
      decoder.commit(n);
      pos += n;
      left -= n;
      if (decoder.complete()) {
        auto body = decoder.body();
        frames.emplace_back(body.begin(), body.end());
        decoder.next();
      }
    }
  }
  return frames;
}

void fuzz_open_sealed(std::span<const std::uint8_t> plaintext) {
  if (plaintext.empty() || plaintext.size() > max_plaintext_bytes) return;
  auto sender = fixed_cipher(1);
  Bytes frame(plaintext.size() + aead_tag_bytes);
  check(sender.encrypt_with_ad({}, plaintext, frame));
  const Bytes sealed = frame;
  Transport receiver(fixed_cipher(2), fixed_cipher(1));
  Opened opened;
  if (receiver.open(frame, opened)) {
    check(static_cast<bool>(receiver.failure()));
    return;
  }
  // What opens must be what this implementation would itself send.
  Transport again(fixed_cipher(1), fixed_cipher(2));
  Bytes resealed;
  check(!again.seal(opened.kind, opened.body, resealed));
  check(resealed.size() == sealed.size() + length_prefix_bytes);
  check(std::equal(sealed.begin(), sealed.end(), resealed.begin() + length_prefix_bytes));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const bool ready = sodium_init() >= 0;
  check(ready);
  if (size < 11) return 0;
  const std::size_t max_body = static_cast<std::size_t>(data[0]) << 8 | data[1];
  std::uint64_t seed = 0;
  for (std::size_t i = 2; i < 10; ++i) seed = seed << 8 | data[i];
  const std::size_t plaintext_len = std::min<std::size_t>(data[10], size - 11);
  const std::span<const std::uint8_t> input(data, size);
  const auto plaintext = input.subspan(11, plaintext_len);
  const auto stream = input.subspan(11 + plaintext_len);

  fuzz_open_sealed(plaintext);

  FrameDecoder pusher(max_body);
  FrameDecoder puller(max_body);
  const auto pushed = decode_push(stream, max_body, seed, pusher);
  const auto pulled = decode_pull(stream, seed, puller);
  check(pushed == pulled);
  check(pusher.state() == puller.state() && pusher.error() == puller.error());
  check(pusher.capacity() <= std::max<std::size_t>(frame_buffer_first_bytes, 2 * stream.size()));

  // Without the key nothing authenticates; the transport fails once and stays failed.
  Transport transport(fixed_cipher(2), fixed_cipher(1));
  for (Bytes body : pushed) {  // a copy: open() decrypts in place
    Opened opened;
    check(static_cast<bool>(transport.open(body, opened)));
    check(transport.recv_nonce() == 0);
  }
  return 0;
}
