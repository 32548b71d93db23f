// Tests for strelay/status_limits: every limit as a number in the unit its name ends with.
#include "strelay/status_limits.hpp"

#include <doctest/doctest.h>

#include <set>

using namespace strelay;
using namespace std::chrono_literals;

namespace {

const LimitValue& find(const std::vector<LimitValue>& limits, const std::string& name) {
  for (const auto& limit : limits) {
    if (limit.name == name) return limit;
  }
  FAIL("no limit " << name);
  throw std::logic_error("unreachable");
}

}  // namespace

TEST_CASE("every limit is described, as a number with its unit in the name") {
  RelayLimits l;
  l.handshake_timeout = 2500ms;
  l.tunnel_buffer = 65536;
  l.ipv4_prefix = 24;
  l.tunnel_rate = 1 << 20;
  const auto limits = describe_limits(l, 1024);
  CHECK(limits.size() == 37);
  std::set<std::string> names;
  for (const auto& limit : limits) {
    CHECK_MESSAGE(names.insert(limit.name).second, limit.name);
    CHECK_MESSAGE(limit.name.find('-') == std::string::npos, limit.name);  // JSON keys, snake_case
  }
  CHECK(find(limits, "handshake_timeout_seconds").number == 2.5);
  CHECK(find(limits, "drain_timeout_seconds").number == 30);
  CHECK(find(limits, "tunnel_buffer_bytes").number == 65536);
  CHECK(find(limits, "ipv4_prefix_bits").number == 24);
  CHECK(find(limits, "control_rate_per_second").number == l.control_rate);
  CHECK(find(limits, "connect_rate_per_source_per_minute").number ==
        l.connect_rate_per_source_per_minute);
  CHECK(find(limits, "tunnel_socket_buffers").text == "clamp");
  CHECK(find(limits, "tunnel_rate_bytes_per_second").number == 1 << 20);
  CHECK(find(limits, "global_rate_bytes_per_second").number == 0);  // none
  // The flag's 0 is shown as the cap in force: 80% of the descriptors.
  CHECK(find(limits, "max_connections").number == 819);
}

TEST_CASE("the descriptor budget's cap replaces max_connections") {
  auto limits = describe_limits(RelayLimits{}, 1024);
  set_max_connections(limits, 700);
  CHECK(find(limits, "max_connections").number == 700);
  CHECK(find(limits, "handshake_timeout_seconds").number == 10);
}
