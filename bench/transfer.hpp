// Moving bytes through connected socket pairs, for the throughput benches (bulk_bench,
// ws_bench): one sender and one receiver thread per pair, the same code for every forwarder.
#pragma once

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "bench/harness.hpp"

namespace bench {

// The two blocking descriptors of one pair: bytes written to send_fd arrive at recv_fd.
struct Connection {
  int send_fd;
  int recv_fd;
};

struct Transferred {
  double seconds = 0;  // from the first write until every end counted was done
  double bytes = 0;    // received, all pairs together
  bool ok = false;     // every byte arrived within the limit
};

// When a pair is done: `at_eof` when both its sender has handed over every byte and its
// receiver has seen EOF (the forwarder passed the end on); `at_last_byte` when the receiver
// has its last byte (a WebSocket end's EOF comes only after the bridge's linger).
enum class DoneWhen { at_eof, at_last_byte };

// By default each send() and read() moves up to this much.
inline constexpr std::size_t io_chunk = 256 * 1024;

// Moves `per_pair` bytes over each connection, bounded by `limit` seconds (a run that overstays
// is cut: every socket shut down, and not ok), each send() and read() of up to `chunk` bytes.
// Closes every descriptor.
inline Transferred transfer(const std::vector<Connection>& conns, std::uint64_t per_pair,
                            double limit, DoneWhen done_when, std::size_t chunk = io_chunk) {
  const bool at_eof = done_when == DoneWhen::at_eof;
  std::atomic<std::uint64_t> received{0};
  std::atomic<int> finished{0};
  std::vector<std::thread> threads;
  const auto start = Clock::now();
  for (const auto& c : conns) {
    threads.emplace_back([fd = c.send_fd, per_pair, at_eof, chunk, &finished] {
      std::vector<char> buffer(chunk, 'x');
      for (std::uint64_t left = per_pair; left > 0;) {
        const ssize_t n =
            ::send(fd, buffer.data(), std::min<std::uint64_t>(left, chunk), MSG_NOSIGNAL);
        if (n <= 0) break;
        left -= static_cast<std::uint64_t>(n);
      }
      ::shutdown(fd, SHUT_WR);
      if (at_eof) ++finished;
    });
    threads.emplace_back([fd = c.recv_fd, per_pair, at_eof, chunk, &received, &finished] {
      std::vector<char> buffer(chunk);
      for (std::uint64_t got = 0; at_eof || got < per_pair;) {
        const ssize_t n = ::read(fd, buffer.data(), buffer.size());
        if (n <= 0) break;
        got += static_cast<std::uint64_t>(n);
        received += static_cast<std::uint64_t>(n);
      }
      ++finished;
    });
  }
  const auto until =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(limit));
  const int ends = static_cast<int>(conns.size()) * (at_eof ? 2 : 1);
  while (finished.load() < ends && Clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  const auto end = Clock::now();
  const bool in_time = finished.load() == ends;
  // Then every socket is shut down, so that a thread still blocked in send() or read() returns.
  for (const auto& c : conns) {
    ::shutdown(c.send_fd, SHUT_RDWR);
    ::shutdown(c.recv_fd, SHUT_RDWR);
  }
  for (auto& t : threads) t.join();
  for (const auto& c : conns) {
    ::close(c.send_fd);
    ::close(c.recv_fd);
  }
  Transferred r;
  r.seconds = seconds_between(start, end);
  r.bytes = static_cast<double>(received.load());
  r.ok = in_time && received.load() == per_pair * conns.size();
  return r;
}

}  // namespace bench
