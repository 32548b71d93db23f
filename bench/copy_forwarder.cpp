// The reference copying forwarder: read(2)/write(2) through a 256 KiB user buffer, blocking.
#include <memory>

#include "forwarder.hpp"

int main(int argc, char** argv) {
  return bench::serve(argc, argv, [](int in, int out) {
    constexpr std::size_t size = 256 * 1024;
    auto buffer = std::make_unique<char[]>(size);
    for (;;) {
      const ssize_t n = ::read(in, buffer.get(), size);
      if (n <= 0) break;
      ssize_t off = 0;
      while (off < n) {
        const ssize_t m = ::write(out, buffer.get() + off, static_cast<std::size_t>(n - off));
        if (m <= 0) return;
        off += m;
      }
    }
  });
}
