// Handshake flood: K concurrent clients, each in a loop. Bounded by count and time.
//
//   handshake_load HOST PORT RELAY_PUBKEY [--clients K] [--seconds S] [--max N] [--msg1-only]
//                  [--fresh-identities]
//
// Full mode (default): connect, run the signed handshake with Listen as the first request,
// wait for ListenOk, close. The clients reuse one identity: the relay does all of its
// per-handshake work except the point check of the node's key, which it remembers for keys it
// has found valid (common/keys.cpp). --fresh-identities: a new identity for every handshake
// (a flood of new keys; the relay checks every one). Each handshake costs this generator about
// as much CPU as it costs the relay (an X25519 key, a DH, a signature check and a signature).
//
// --msg1-only: connect, send the preamble and a msg1 computed once at start, read msg2, close.
// The relay still does the expensive half of its handshake for every connection (a fresh
// ephemeral, the ee DH, its signature; about three quarters of its handshake CPU), while the
// generator does no cryptography at all: only connect, one write, one read, close. On a
// machine whose cores the generator shares with the relay, this is the load under which the
// relay's own capacity, and its scaling with --threads, shows (docs/architecture.md).
// The relay counts these connections as failed handshakes (aborted after msg2).
//
// Prints one JSON line: mode, handshakes (completed: handshakes, or msg2s), failed, seconds,
// per_second.
#include <sodium.h>

#include <array>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/channel.hpp"
#include "common/coro.hpp"
#include "common/messages.hpp"
#include "common/preamble.hpp"
#include "common/tickets.hpp"

namespace asio = boost::asio;
using namespace strelay;

namespace {

// The preamble and one msg1 (a 2-byte length and an X25519 public key), reused by every
// connection: the relay cannot tell, and must do its half of the handshake anyway.
std::vector<std::uint8_t> fixed_msg1() {
  std::vector<std::uint8_t> out(current_preamble.begin(), current_preamble.end());
  std::array<std::uint8_t, crypto_scalarmult_SCALARBYTES> secret{};
  std::array<std::uint8_t, crypto_scalarmult_BYTES> ephemeral{};
  randombytes_buf(secret.data(), secret.size());
  if (crypto_scalarmult_base(ephemeral.data(), secret.data()) != 0) std::abort();
  sodium_memzero(secret.data(), secret.size());
  out.push_back(static_cast<std::uint8_t>(handshake_msg1_bytes >> 8));
  out.push_back(static_cast<std::uint8_t>(handshake_msg1_bytes & 0xff));
  out.insert(out.end(), ephemeral.begin(), ephemeral.end());
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(
        stderr,
        "usage: %s HOST PORT RELAY_PUBKEY [--clients K] [--seconds S] [--max N] [--msg1-only] "
        "[--fresh-identities]\n",
        argv[0]);
    return 2;
  }
  init_crypto();
  int clients = 32;
  double seconds = 5;
  long max_count = 1000000;
  bool msg1_only = false;
  bool fresh_identities = false;
  for (int i = 4; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--msg1-only") {
      msg1_only = true;
      continue;
    }
    if (flag == "--fresh-identities") {
      fresh_identities = true;
      continue;
    }
    if (i + 1 >= argc) break;
    if (flag == "--clients") clients = std::atoi(argv[i + 1]);
    if (flag == "--seconds") seconds = std::atof(argv[i + 1]);
    if (flag == "--max") max_count = std::atol(argv[i + 1]);
    ++i;
  }
  std::string error;
  const auto relay_key = try_parse_public_key(argv[3], error);
  if (!relay_key) {
    std::fprintf(stderr, "bad key: %s\n", error.c_str());
    return 2;
  }
  const tcp::endpoint target(asio::ip::make_address(argv[1]),
                             static_cast<unsigned short>(std::atoi(argv[2])));
  const auto self = Identity::generate();
  const auto request = encode(NodeMessage{Listen{}});
  const auto hello = fixed_msg1();
  asio::io_context ioc(1);
  std::atomic<long> done{0}, failed{0};
  const auto start = std::chrono::steady_clock::now();
  const auto until = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                 std::chrono::duration<double>(seconds));

  // One full handshake and its ListenOk; true on success.
  auto full = [&](tcp::socket& socket) -> asio::awaitable<bool> {
    std::optional<Channel> channel;
    const auto fresh =
        fresh_identities ? std::optional<Identity>(Identity::generate()) : std::nullopt;
    const auto hs = co_await connect_handshake(
        socket, fresh ? *fresh : self, *relay_key, HandshakeLayer::hop, request,
        std::chrono::steady_clock::now() + std::chrono::seconds(10), channel);
    if (hs) co_return false;
    Message reply;
    const auto rc = co_await channel->receive(
        reply, std::chrono::steady_clock::now() + std::chrono::seconds(10));
    channel->close();
    co_return !rc && reply.kind == FrameKind::control;
  };
  // The preamble and msg1 out, msg2 back; true when all of msg2 arrived.
  auto half = [&](tcp::socket& socket) -> asio::awaitable<bool> {
    auto [we, wn] = co_await asio::async_write(socket, asio::buffer(hello), await_tuple);
    if (we) co_return false;
    std::array<std::uint8_t, 2 + handshake_msg2_bytes> msg2{};
    auto [re, rn] = co_await asio::async_read(socket, asio::buffer(msg2), await_tuple);
    co_return !re;
  };

  for (int c = 0; c < clients; ++c) {
    asio::co_spawn(
        ioc,
        [&]() -> asio::awaitable<void> {
          while (std::chrono::steady_clock::now() < until && done.load() < max_count) {
            tcp::socket socket(ioc);
            auto [ec] = co_await socket.async_connect(target, await_tuple);
            const bool ok = !ec && (msg1_only ? co_await half(socket) : co_await full(socket));
            ++(ok ? done : failed);
          }
        },
        asio::detached);
  }
  ioc.run();
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // "handshakes" counts completions in either mode (bench/handshake_bench reads it).
  std::printf(
      "{\"mode\": \"%s\", \"handshakes\": %ld, \"failed\": %ld, \"seconds\": %.3f, \"per_second\": "
      "%.1f}\n",
      msg1_only          ? "msg1-only"
      : fresh_identities ? "full-fresh-identities"
                         : "full",
      done.load(), failed.load(), elapsed, static_cast<double>(done.load()) / elapsed);
  return 0;
}
