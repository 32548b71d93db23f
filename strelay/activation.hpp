// Socket activation (systemd's LISTEN_FDS, through libsystemd's sd_listen_fds_with_names(3)).
//
// With a strelay.socket unit, systemd owns the listening sockets and passes them to each new
// strelay process. A restart then refuses nobody: while one process drains and the next starts,
// the kernel queues new connections on the socket systemd keeps open (issue 20.1).
//
// The sockets passed replace --laddr and --websocket-laddr. A socket named "websocket"
// (FileDescriptorName=websocket in the .socket unit) serves WebSocket and HTTP only, as a
// --websocket-laddr does; every other name (systemd's default is the unit's name) is a relay
// port, as a --laddr is. Anything but a listening TCP socket is a configuration error.
#pragma once

#include <string>
#include <vector>

namespace strelay {

struct ActivatedSocket {
  int fd = -1;
  bool websocket_only = false;
  std::string name;  // FileDescriptorName=, for the log

  friend bool operator==(const ActivatedSocket&, const ActivatedSocket&) = default;
};

// The sockets systemd passed to this process, and unsets LISTEN_FDS, LISTEN_PID and
// LISTEN_FDNAMES (so children inherit nothing). Empty when none were passed (LISTEN_PID names
// another process, or LISTEN_FDS is unset). Throws std::runtime_error naming the descriptor when
// one is not a listening TCP socket.
std::vector<ActivatedSocket> take_activated_sockets();

// The FileDescriptorName that marks a WebSocket-only socket.
inline constexpr const char* websocket_socket_name = "websocket";

}  // namespace strelay
