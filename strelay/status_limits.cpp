#include "strelay/status_limits.hpp"

#include <chrono>

namespace strelay {

namespace {

double seconds(std::chrono::milliseconds ms) {
  return static_cast<double>(ms.count()) / 1000.0;
}

double count(std::size_t n) {
  return static_cast<double>(n);
}

}  // namespace

std::vector<LimitValue> describe_limits(const RelayLimits& l, std::uint64_t nofile) {
  return {
      {"handshake_timeout_seconds", seconds(l.handshake_timeout)},
      {"max_pending_handshakes", count(l.max_pending_handshakes)},
      {"max_pending_per_source", count(l.max_pending_per_source)},
      {"max_pending_per_prefix", count(l.max_pending_per_prefix)},
      {"ipv4_prefix_bits", static_cast<double>(l.ipv4_prefix)},
      {"min_handshake_timeout_seconds", seconds(l.min_handshake_timeout)},
      {"max_connections_per_source", count(l.max_connections_per_source)},
      {"max_connections_per_prefix", count(l.max_connections_per_prefix)},
      {"max_listeners_per_source", count(l.max_listeners_per_source)},
      {"max_pending_connects_per_source", count(l.max_pending_connects_per_source)},
      {"max_pending_connects_per_target", count(l.max_pending_connects_per_target)},
      {"connect_rate_per_source_per_minute", l.connect_rate_per_source_per_minute},
      {"connect_burst_per_source", l.connect_burst_per_source},
      {"control_rate_per_second", l.control_rate},
      {"control_burst", l.control_burst},
      {"http_max_per_source", count(l.http_max_per_source)},
      {"handshake_rate_per_second", l.handshake_rate_per_second},
      {"handshake_burst", l.handshake_burst},
      {"max_connections", count(effective_max_connections(l, nofile))},
      {"half_tunnel_ttl_seconds", seconds(l.half_tunnel_ttl)},
      {"connect_rate_per_minute", l.connect_rate_per_minute},
      {"connect_burst", l.connect_burst},
      {"tunnel_buffer_bytes", count(l.tunnel_buffer)},
      {"tunnel_socket_buffers", 0, l.tunnel_clamp_socket_buffers ? "clamp" : "auto"},
      {"write_stall_timeout_seconds", seconds(l.write_stall_timeout)},
      {"keepalive_interval_seconds", seconds(l.keepalive_interval)},
      {"dead_peer_timeout_seconds", seconds(l.dead_peer_timeout)},
      {"drain_timeout_seconds", seconds(l.drain_timeout)},
      {"global_rate_bytes_per_second", static_cast<double>(l.global_rate)},  // 0: none
      {"tunnel_rate_bytes_per_second", static_cast<double>(l.tunnel_rate)},  // per direction
      {"max_topics_per_node", count(l.max_topics_per_node)},
      {"max_members_per_topic", count(l.max_members_per_topic)},
      {"max_introductions_per_join", count(l.max_introductions_per_join)},
      {"topic_churn_rate_per_second", l.topic_churn_rate},
      {"topic_churn_burst", l.topic_churn_burst},
      {"introduction_rate_per_second", l.introduction_rate},
      {"introduction_burst", l.introduction_burst},
  };
}

void set_max_connections(std::vector<LimitValue>& limits, std::uint64_t connections) {
  for (auto& limit : limits) {
    if (limit.name == "max_connections") limit.number = static_cast<double>(connections);
  }
}

}  // namespace strelay
