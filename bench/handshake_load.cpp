// Handshake flood: K concurrent clients, each in a loop: connect, run the signed handshake
// with Listen as the first request, wait for ListenOk, close. Bounded by count and time.
//
//   handshake_load HOST PORT RELAY_PUBKEY [--clients K] [--seconds S] [--max N]
//
// Prints completed handshakes per second. The clients reuse one identity (the relay does all
// of its per-handshake work regardless). See bench/README.md for how the figures are used.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/channel.hpp"
#include "common/messages.hpp"
#include "common/tickets.hpp"

namespace asio = boost::asio;
using namespace strelay;

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s HOST PORT RELAY_PUBKEY [--clients K] [--seconds S] [--max N]\n", argv[0]);
    return 2;
  }
  init_crypto();
  int clients = 32;
  double seconds = 5;
  long max_count = 1000000;
  for (int i = 4; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--clients") clients = std::atoi(argv[i + 1]);
    if (flag == "--seconds") seconds = std::atof(argv[i + 1]);
    if (flag == "--max") max_count = std::atol(argv[i + 1]);
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
  asio::io_context ioc(1);
  std::atomic<long> done{0}, failed{0};
  const auto start = std::chrono::steady_clock::now();
  const auto until = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                 std::chrono::duration<double>(seconds));
  for (int c = 0; c < clients; ++c) {
    asio::co_spawn(
        ioc,
        [&]() -> asio::awaitable<void> {
          while (std::chrono::steady_clock::now() < until && done.load() < max_count) {
            tcp::socket socket(ioc);
            auto [ec] = co_await socket.async_connect(target, asio::as_tuple(asio::use_awaitable));
            std::optional<Channel> channel;
            if (!ec) {
              const auto hs = co_await connect_handshake(socket, self, *relay_key, request,
                                                         std::chrono::steady_clock::now() + std::chrono::seconds(10),
                                                         channel);
              if (!hs) {
                Message reply;
                const auto rc = co_await channel->receive(reply, std::chrono::steady_clock::now() + std::chrono::seconds(10));
                if (!rc && reply.kind == FrameKind::control) {
                  ++done;
                  channel->close();
                  continue;
                }
              }
            }
            ++failed;
          }
        },
        asio::detached);
  }
  ioc.run();
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("{\"handshakes\": %ld, \"failed\": %ld, \"seconds\": %.3f, \"per_second\": %.1f}\n",
              done.load(), failed.load(), elapsed, static_cast<double>(done.load()) / elapsed);
  return 0;
}
