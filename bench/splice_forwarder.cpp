// The reference zero-copy forwarder: splice(2) socket -> pipe -> socket, blocking.
#include <fcntl.h>

#include "forwarder.hpp"

int main(int argc, char** argv) {
  return bench::serve(argc, argv, [](int in, int out) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return;
    ::fcntl(p[1], F_SETPIPE_SZ, 256 * 1024);
    for (;;) {
      const ssize_t n = ::splice(in, nullptr, p[1], nullptr, 256 * 1024, SPLICE_F_MOVE);
      if (n <= 0) break;
      ssize_t left = n;
      while (left > 0) {
        const ssize_t m =
            ::splice(p[0], nullptr, out, nullptr, static_cast<std::size_t>(left), SPLICE_F_MOVE);
        if (m <= 0) {
          left = -1;
          break;
        }
        left -= m;
      }
      if (left < 0) break;
    }
    ::close(p[0]);
    ::close(p[1]);
  });
}
