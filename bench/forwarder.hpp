// Reference forwarders for the benchmarks: the physical limit that strelay's tunnels are
// measured against. Deliberately minimal: blocking sockets, one thread per direction.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

namespace bench {

inline int listen_on(const char* host, int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  ::inet_pton(AF_INET, host, &addr.sin_addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 1024) != 0) {
    std::perror("bind/listen");
    std::exit(1);
  }
  return fd;
}

inline int connect_to(const char* host, int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  ::inet_pton(AF_INET, host, &addr.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

// Usage: <prog> LISTEN_PORT TARGET_PORT; forwards every connection on 127.0.0.1:LISTEN_PORT
// to 127.0.0.1:TARGET_PORT with `pump(in, out)` per direction, until killed.
template <typename Pump>
int serve(int argc, char** argv, Pump pump) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s LISTEN_PORT TARGET_PORT\n", argv[0]);
    return 2;
  }
  const int lfd = listen_on("127.0.0.1", std::atoi(argv[1]));
  const int target = std::atoi(argv[2]);
  std::fprintf(stderr, "ready\n");
  for (;;) {
    const int a = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
    if (a < 0) continue;
    const int one = 1;
    ::setsockopt(a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    const int b = connect_to("127.0.0.1", target);
    if (b < 0) {
      ::close(a);
      continue;
    }
    std::thread([a, b, pump] {
      std::thread back([a, b, pump] {
        pump(b, a);
        ::shutdown(a, SHUT_WR);
      });
      pump(a, b);
      ::shutdown(b, SHUT_WR);
      back.join();
      ::close(a);
      ::close(b);
    }).detach();
  }
}

}  // namespace bench
