#include "strelay/activation.hpp"

#include <sys/socket.h>
#include <systemd/sd-daemon.h>

#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <system_error>

namespace strelay {

std::vector<ActivatedSocket> take_activated_sockets() {
  char** names = nullptr;
  const int n = sd_listen_fds_with_names(1, &names);  // 1: unset the variables
  // sd_listen_fds_with_names allocates the array and each name; freed here on every path.
  auto free_names = [&names, n] {
    if (names == nullptr) return;
    for (int i = 0; i < n; ++i) std::free(names[i]);
    std::free(names);
  };
  if (n < 0) {
    free_names();
    throw std::system_error(-n, std::generic_category(),
                            "socket activation: cannot read LISTEN_FDS");
  }
  std::vector<ActivatedSocket> out;
  for (int i = 0; i < n; ++i) {
    const int fd = SD_LISTEN_FDS_START + i;
    std::string name = names != nullptr && names[i] != nullptr ? names[i] : "";
    if (sd_is_socket_inet(fd, AF_UNSPEC, SOCK_STREAM, 1, 0) <= 0) {
      free_names();
      throw std::runtime_error("socket activation: descriptor " + std::to_string(fd) + " (" + name +
                               ") is not a listening TCP socket; use ListenStream= in the "
                               ".socket unit");
    }
    out.push_back({fd, name == websocket_socket_name, std::move(name)});
  }
  free_names();
  return out;
}

}  // namespace strelay
