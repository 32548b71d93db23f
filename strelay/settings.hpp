// The daemon's settings, in the units it uses. main builds them from the flags (daemon.cpp,
// to_server_settings); a reload (SIGHUP) swaps in a new snapshot, and each session keeps the
// one it was accepted with.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/protocol.hpp"
#include "strelay/bandwidth.hpp"
#include "strelay/carrier.hpp"
#include "strelay/limits.hpp"
#include "strelay/relay_state.hpp"
#include "strelay/tunnel.hpp"

namespace strelay {

struct ServerSettings {
  // The descriptor budget (strelay/limits.hpp, plan_descriptors), applied when run() starts,
  // once every descriptor of the process's own is open. nofile 0: no budget, and
  // admission.connections_total and admission.pipe_fds_total are used as given (tests).
  struct Descriptors {
    std::uint64_t nofile = 0;          // the soft RLIMIT_NOFILE
    std::size_t connections_flag = 0;  // --max-connections; 0: automatic
    std::size_t http_connections = 0;  // the HTTP endpoint's cap; 0: no endpoint
  } descriptors;
  std::vector<boost::asio::ip::tcp::endpoint> listen;
  std::vector<boost::asio::ip::tcp::endpoint> websocket_listen;  // WebSocket (and HTTP) only
  CarrierSettings carrier;  // WebSocket path, origins, trusted proxies, web root
  unsigned threads = 0;     // 0: one per core
  AdmissionLimits admission;
  PairingLimits pairing;
  Tunnel::Options tunnel;  // its `bandwidth` is set by the Server (it owns the buckets)
  BandwidthLimits bandwidth;
  Clock::duration handshake_timeout = handshake_deadline;
  Clock::duration write_stall = write_stall_timeout;
  Clock::duration keepalive = keepalive_interval;
  Clock::duration dead_peer = dead_peer_timeout;
  Clock::duration drain = drain_deadline;
  double control_rate = control_rate_per_connection;  // frames per second per connection (issue 14)
  double control_burst = control_burst_per_connection;
};

}  // namespace strelay
