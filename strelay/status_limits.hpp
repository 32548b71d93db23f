// The limits in force as /status and the status page show them: numbers, each in the unit its
// name ends with (handshake_timeout_seconds, tunnel_buffer_bytes, control_rate_per_second), so a
// monitoring script reads them without parsing "10 s".
#pragma once

#include <cstdint>
#include <vector>

#include "strelay/config.hpp"
#include "strelay/metrics.hpp"

namespace strelay {

// Every limit of RelayLimits, in the order of `strelay --help`. max_connections is the cap in
// force for `nofile` (the soft RLIMIT_NOFILE) when the flag is 0.
std::vector<LimitValue> describe_limits(const RelayLimits& limits, std::uint64_t nofile);

// Sets max_connections to the cap the descriptor budget left (known once the server runs).
void set_max_connections(std::vector<LimitValue>& limits, std::uint64_t connections);

}  // namespace strelay
