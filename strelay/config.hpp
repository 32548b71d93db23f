// The daemon's options: command-line flags and the same names in a config file (--config,
// TOML or INI through CLI11; the command line wins over the file).
//
// Every limit of the brief's table is a flag whose default is the constant in protocol.hpp.
// Durations are given in seconds (fractions allowed: 0.5) and held as milliseconds.
// Addresses:
//   --laddr, --metrics-addr  an IP address and a port: 0.0.0.0:4567, [::]:4567 (IPv6 needs
//                            brackets). Names are refused (the relay binds, it does not resolve).
//                            Port 0 means "any free port": useful in tests, and the HTTP server
//                            and the start-up line report the port actually bound.
//   --public-address         host:port as written in the relay ticket (a name or an IP;
//   port 1..65535).
//
// Every error is one line naming the flag (CLI11's ValidationError and friends); main prints it
// and exits non-zero. On SIGHUP the daemon re-parses argv and the config file with
// try_parse_relay_options(), and keeps the old options if that fails.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/log.hpp"
#include "common/protocol.hpp"
#include "strelay/admission_hook.hpp"

namespace CLI {
class App;
}

namespace strelay {

// Each member is named after its flag; the defaults are protocol.hpp's.
struct RelayLimits {
  std::chrono::milliseconds handshake_timeout =
      handshake_deadline;  // absolute, accept to first request
  std::size_t max_pending_handshakes = strelay::max_pending_handshakes;  // in total
  std::size_t max_pending_per_source = strelay::max_pending_per_source;  // per IPv4 /32 or IPv6 /64
  std::size_t max_pending_per_prefix =
      strelay::max_pending_per_prefix;  // per IPv6 /48 (/56: half), IPv4 /24
  unsigned ipv4_prefix = 32;            // 24: also count each IPv4 /24
  std::chrono::milliseconds min_handshake_timeout =
      min_handshake_deadline;  // the deadline at a full table
  std::size_t max_connections_per_source = strelay::max_connections_per_source;
  std::size_t max_connections_per_prefix = strelay::max_connections_per_prefix;
  std::size_t max_listeners_per_source = strelay::max_listeners_per_source;            // prefix: 4x
  std::size_t max_pending_connects_per_source = strelay::max_half_tunnels_per_source;  // prefix: 4x
  std::size_t max_pending_connects_per_target = strelay::max_half_tunnels_per_target;
  double connect_rate_per_source_per_minute = connect_rate_per_source * 60.0;
  double connect_burst_per_source = strelay::connect_burst_per_source;
  double control_rate = control_rate_per_connection;  // frames per second
  double control_burst = control_burst_per_connection;
  std::size_t http_max_per_source = strelay::http_max_per_source;
  double handshake_rate_per_second = handshake_rate_per_source;  // per source
  double handshake_burst = handshake_burst_per_source;
  std::size_t max_connections = 0;  // 0: 80% of RLIMIT_NOFILE
  std::chrono::milliseconds half_tunnel_ttl = strelay::half_tunnel_ttl;
  double connect_rate_per_minute = connect_rate_per_identity * 60.0;  // per identity
  double connect_burst = connect_burst_per_identity;
  std::size_t tunnel_buffer = tunnel_buffer_bytes;  // bytes per direction
  bool tunnel_clamp_socket_buffers = true;  // --tunnel-socket-buffers clamp (default) | auto
  std::chrono::milliseconds write_stall_timeout = strelay::write_stall_timeout;
  std::chrono::milliseconds keepalive_interval = strelay::keepalive_interval;
  std::chrono::milliseconds dead_peer_timeout = strelay::dead_peer_timeout;
  std::chrono::milliseconds drain_timeout = drain_deadline;
  std::uint64_t global_rate = 0;  // --global-rate, bytes per second for the whole relay; 0: none
  std::uint64_t tunnel_rate = 0;  // --tunnel-rate, bytes per second per tunnel direction; 0: none
  // Topics (docs/protocol.md 4.9), per listening connection unless said
  std::size_t max_topics_per_node = strelay::max_topics_per_node;
  std::size_t max_members_per_topic = strelay::max_members_per_topic;  // per topic
  std::size_t max_introductions_per_join = strelay::max_introductions_per_join;
  double topic_churn_rate = strelay::topic_churn_rate;  // joins and leaves per second
  double topic_churn_burst = strelay::topic_churn_burst;
  double introduction_rate = strelay::introduction_rate;  // introductions received per second
  double introduction_burst = strelay::introduction_burst;

  friend bool operator==(const RelayLimits&, const RelayLimits&) = default;
};

struct RelayOptions {
  std::string idfile;                                 // required
  std::vector<boost::asio::ip::tcp::endpoint> laddr;  // at least one
  std::string public_address;                         // empty: not set
  std::string config_file;                            // empty: none
  LogFormat log_format = LogFormat::text;
  LogLevel log_level = LogLevel::info;
  std::optional<boost::asio::ip::tcp::endpoint> metrics_addr;  // empty: no HTTP endpoint
  std::string allow_file;                                      // empty: a public relay
  unsigned threads = 0;                                        // worker threads; 0: one per core
  // Carriers (docs/operations.md, "WebSocket and proxies").
  std::string websocket_path{websocket_default_path};           // the upgrade's path on every port
  std::vector<boost::asio::ip::tcp::endpoint> websocket_laddr;  // WebSocket-only addresses
  std::vector<std::string> allow_origin;                        // empty: any origin
  std::vector<std::string> trusted_proxy;                       // CIDR ranges; SIGHUP reloads them
  std::string web_root;                                         // empty: no static files
  AdmissionHookOptions admission_hook;  // --admission-url and its timeout, cache and policy
  RelayLimits limits;
};

// Adds every flag to `app`, bound to `options`, plus --config, --version, a footer example and
// a one-line failure message. Values are range-checked as they are parsed.
void setup_relay_options(CLI::App& app, RelayOptions& options);

// Checks what single flags cannot: keepalive below the dead-peer timeout, per-source pending
// below the total, the metrics address apart from the relay addresses. Throws
// CLI::ValidationError with a one-line message.
void validate_relay_options(const RelayOptions& options);

// Exit code of every usage error: a bad or unknown flag, a bad config file (as stmgr, stcat).
inline constexpr int exit_usage = 2;

// For main: parses argv (and the config file it names, after strelay/config_file.hpp's
// pre-pass) and validates. Returns the options, or nullopt after printing help, the version
// (exit_code 0) or a one-line error (exit_code 2, exit_usage) to stdout/stderr; main then
// returns exit_code. These two functions live in config_file.cpp.
std::optional<RelayOptions> parse_relay_options(int argc, const char* const* argv, int& exit_code);

// For SIGHUP: the same parse, silent. On failure returns nullopt and sets `error` to one line.
std::optional<RelayOptions> try_parse_relay_options(int argc, const char* const* argv,
                                                    std::string& error);

// "0.0.0.0:4567", "[::1]:0": an IP address (IPv6 in brackets) and a port 0..65535.
// On failure returns nullopt and sets `error` to a one-line cause quoting the text.
std::optional<boost::asio::ip::tcp::endpoint> try_parse_endpoint(std::string_view text,
                                                                 std::string& error);
// "0.0.0.0:4567" or "[::1]:4567".
std::string endpoint_to_string(const boost::asio::ip::tcp::endpoint& endpoint);

// The connection cap before the descriptor budget: the flag, or 80% of the (raised) soft
// RLIMIT_NOFILE when 0. When run() starts, the server lowers an automatic cap to the
// descriptors actually left (strelay/limits.hpp, plan_descriptors; docs/architecture.md).
std::size_t effective_max_connections(const RelayLimits& limits, std::uint64_t nofile_soft_limit);

}  // namespace strelay
