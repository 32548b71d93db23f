// Transport throughput per core against raw ChaChaPoly, measured in the same run.
//
// For each body size, one "round" is Transport::seal (kind || body into a frame buffer) plus
// Transport::open (in place) of that frame, and the reference round is one
// crypto_aead_chacha20poly1305_ietf_encrypt plus one _decrypt of a plaintext of the same size
// (kind byte included, so both sides move the same bytes through the cipher). The figure that
// matters is the ratio
//     transport round time / raw round time        target: <= 1.1 at 16 KiB and above
// which says what framing, nonce handling and checks add to the cipher, on any machine.
//
// Usage: transport_bench [seconds per sample, default 0.5]. Every figure is the median of 5
// samples, each a loop bounded by time; transport and raw samples alternate, so a noisy
// neighbour slows both alike. Single-threaded: "per core".
#include <sodium.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

#include "common/keys.hpp"
#include "common/transport.hpp"

using namespace strelay;
using Clock = std::chrono::steady_clock;

namespace {

double sample_seconds = 0.5;
constexpr int samples = 5;

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

// Time per call of `op` in microseconds, over one time-bounded sample.
double sample_us(const std::function<void()>& op) {
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration<double>(sample_seconds);
  std::size_t calls = 0;
  Clock::time_point now;
  do {
    for (int i = 0; i < 8; ++i) op();
    calls += 8;
    now = Clock::now();
  } while (now < deadline);
  return std::chrono::duration<double, std::micro>(now - start).count() /
         static_cast<double>(calls);
}

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "transport_bench: %s failed\n", what);
    std::exit(1);
  }
}

CipherState fixed_cipher(std::uint8_t fill) {
  std::array<std::uint8_t, key_bytes> key{};
  key.fill(fill);
  return CipherState(key, Cipher::chachapoly);
}

struct Figures {
  double transport_us;
  double raw_us;
};

Figures measure(std::size_t body_size) {
  const std::vector<std::uint8_t> body(body_size, 0x5a);
  // Transport: a seals, b opens (b's receive key is a's send key).
  Transport a(fixed_cipher(1), fixed_cipher(2));
  Transport b(fixed_cipher(3), fixed_cipher(1));
  std::vector<std::uint8_t> frame(Transport::sealed_bytes(body_size));
  const auto transport_round = [&] {
    check(!a.seal(FrameKind::data, body, std::span<std::uint8_t>(frame)), "seal");
    Opened opened;
    check(!b.open(std::span(frame).subspan(length_prefix_bytes), opened), "open");
  };
  // Raw: the same plaintext length through libsodium directly.
  std::array<std::uint8_t, crypto_aead_chacha20poly1305_ietf_KEYBYTES> key{};
  key.fill(1);
  std::array<std::uint8_t, crypto_aead_chacha20poly1305_ietf_NPUBBYTES> nonce{};
  const std::vector<std::uint8_t> plaintext(frame_kind_bytes + body_size, 0x5a);
  std::vector<std::uint8_t> ciphertext(plaintext.size() + aead_tag_bytes);
  std::vector<std::uint8_t> decrypted(plaintext.size());
  const auto raw_round = [&] {
    check(crypto_aead_chacha20poly1305_ietf_encrypt(ciphertext.data(), nullptr, plaintext.data(),
                                                    plaintext.size(), nullptr, 0, nullptr,
                                                    nonce.data(), key.data()) == 0,
          "raw encrypt");
    check(crypto_aead_chacha20poly1305_ietf_decrypt(decrypted.data(), nullptr, nullptr,
                                                    ciphertext.data(), ciphertext.size(), nullptr,
                                                    0, nonce.data(), key.data()) == 0,
          "raw decrypt");
    ++nonce[0];
  };
  transport_round();  // warm up caches and check once that both paths work
  raw_round();
  std::vector<double> transport_samples;
  std::vector<double> raw_samples;
  for (int s = 0; s < samples; ++s) {
    transport_samples.push_back(sample_us(transport_round));
    raw_samples.push_back(sample_us(raw_round));
  }
  return {median(transport_samples), median(raw_samples)};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1) sample_seconds = std::clamp(std::atof(argv[1]), 0.05, 2.0);
  init_crypto();
  std::printf("transport seal+open vs raw ChaChaPoly encrypt+decrypt, per core\n");
  std::printf("median of %d samples of %.2f s each\n\n", samples, sample_seconds);
  std::printf("%-10s %14s %14s %10s %10s\n", "body", "transport MB/s", "raw MB/s", "ratio",
              "target");
  const std::array<std::size_t, 3> sizes{1024, 16384, max_frame_body_bytes};
  bool all_met = true;
  for (std::size_t size : sizes) {
    const auto f = measure(size);
    const double ratio = f.transport_us / f.raw_us;
    const double bytes = static_cast<double>(size);
    const bool targeted = size >= 16384;
    const bool met = !targeted || ratio <= 1.1;
    all_met = all_met && met;
    std::printf("%-10zu %14.0f %14.0f %10.3f %10s\n", size, bytes / f.transport_us,
                bytes / f.raw_us, ratio, targeted ? (met ? "<=1.1 ok" : "<=1.1 MISS") : "-");
  }
  std::printf(
      "\n(MB/s = body bytes per microsecond of one seal+open round; the 65518-byte body\n"
      " is the largest, a 65535-byte ciphertext)\n");
  return all_met ? 0 : 2;
}
