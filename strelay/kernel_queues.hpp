// A socket's kernel queues bounded by hand: SO_SNDBUF / SO_RCVBUF, which also turns off Linux's
// autotuning for that queue (up to tcp_wmem / tcp_rmem's 4 / 32 MiB here). Linux doubles the
// value given (the doubled size covers its bookkeeping too), so half the bound is asked for.
// Best effort: a queue that cannot be bounded stays as it was. Used for a tunnel's sockets
// (strelay/tunnel.cpp) and a listener's (strelay/session.cpp).
#pragma once

#include <sys/socket.h>

#include <algorithm>
#include <cstddef>

namespace strelay {

enum class KernelQueue { send, receive };

inline void bound_kernel_queue(int fd, KernelQueue queue, std::size_t bound) {
  const int size = static_cast<int>(std::max<std::size_t>(bound / 2, 1024));
  ::setsockopt(fd, SOL_SOCKET, queue == KernelQueue::send ? SO_SNDBUF : SO_RCVBUF, &size,
               sizeof size);
}

}  // namespace strelay
