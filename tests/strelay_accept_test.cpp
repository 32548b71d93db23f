// strelay::Server's accepting side (issue 17.3), in this process on 127.0.0.1: what a join no
// longer pays for, shown on the sockets themselves. The relay's end of a connection is a
// descriptor of this process, found by its peer address.
#include <doctest/doctest.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <array>
#include <cstring>
#include <filesystem>
#include <memory>
#include <thread>
#include <vector>

#include "common/protocol.hpp"
#include "strelay/server.hpp"
#include "support/relay_probe.hpp"

using namespace strelay;
using namespace strelay::test;
using namespace std::chrono_literals;
namespace asio = boost::asio;

namespace {

// A Server on its own thread, two workers, quiet logs; `dead_peer` as --dead-peer-timeout.
class AcceptingRelay {
 public:
  explicit AcceptingRelay(Clock::duration dead_peer = 90s) {
    ServerSettings settings;
    settings.listen = {tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
    settings.threads = 2;
    settings.dead_peer = dead_peer;
    server_ = std::make_unique<Server>(identity_, settings, metrics_, logger_);
    server_->bind();
    endpoint_ = server_->local_endpoints().at(0);
    thread_ = std::thread([this] { server_->run(); });
  }
  ~AcceptingRelay() {
    server_->shutdown();
    thread_.join();
  }
  AcceptingRelay(const AcceptingRelay&) = delete;
  AcceptingRelay& operator=(const AcceptingRelay&) = delete;

  Server& server() { return *server_; }
  Metrics& metrics() { return metrics_; }
  const tcp::endpoint& endpoint() const { return endpoint_; }

 private:
  Identity identity_ = Identity::generate();
  Metrics metrics_;
  Logger logger_{Logger::Options{.level = LogLevel::warn, .sink = [](std::string_view) {}}};
  std::unique_ptr<Server> server_;
  tcp::endpoint endpoint_;
  std::thread thread_;
};

// The relay's end of `client`: the socket whose peer is the client's local address; -1 while
// the relay has not accepted it.
int relay_end_of(const RawSocket& client) {
  sockaddr_storage mine{};
  socklen_t length = sizeof mine;
  ::getsockname(client.fd(), reinterpret_cast<sockaddr*>(&mine), &length);
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    const int fd = std::atoi(entry.path().filename().c_str());
    sockaddr_storage peer{};
    socklen_t peer_length = sizeof peer;
    if (fd == client.fd() ||
        ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_length) != 0) {
      continue;
    }
    if (peer_length == length && std::memcmp(&peer, &mine, length) == 0) return fd;
  }
  return -1;
}

int int_option(int fd, int level, int name) {
  int value = -1;
  socklen_t length = sizeof value;
  ::getsockopt(fd, level, name, &value, &length);
  return value;
}

}  // namespace

TEST_CASE(
    "an accepted connection has the relay's TCP options, inherited from the listening socket, and "
    "a reload's dead-peer timeout reaches the next connections") {
  AcceptingRelay relay(90s);
  // nodelay, keepalive, keepidle, keepintvl, keepcnt, user timeout of a new connection's relay end.
  auto options = [&] {
    RawSocket client("127.0.0.1", relay.endpoint());
    REQUIRE(client.ok());
    int fd = -1;
    REQUIRE(eventually([&] { return (fd = relay_end_of(client)) >= 0; }, 3s));
    return std::array{
        int_option(fd, IPPROTO_TCP, TCP_NODELAY),  int_option(fd, SOL_SOCKET, SO_KEEPALIVE),
        int_option(fd, IPPROTO_TCP, TCP_KEEPIDLE), int_option(fd, IPPROTO_TCP, TCP_KEEPINTVL),
        int_option(fd, IPPROTO_TCP, TCP_KEEPCNT),  int_option(fd, IPPROTO_TCP, TCP_USER_TIMEOUT)};
  };
  CHECK(options() == std::array{1, 1, 30, 30, 3, 90000});
  auto reloaded = *relay.server().settings();
  reloaded.dead_peer = 120s;
  relay.server().reload(reloaded, std::nullopt);
  // The listening socket is re-tuned on the accepting thread: connections after that have it.
  CHECK(eventually([&] { return options()[2] == 40; }, 3s));
  CHECK(options() == std::array{1, 1, 40, 40, 3, 120000});
}

TEST_CASE(
    "the connection peak between two looks of the trim policy counts a burst that came and went") {
  AcceptingRelay relay;
  CHECK(relay.server().take_connection_peak() == 0);
  {
    std::vector<RawSocket> burst;
    for (int i = 0; i < 3; ++i) {
      burst.emplace_back("127.0.0.1", relay.endpoint());
      REQUIRE(burst.back().ok());
    }
    REQUIRE(eventually([&] { return relay.metrics().connections.get() == 3; }, 3s));
  }  // closed before the relay's first look
  REQUIRE(eventually([&] { return relay.metrics().connections.get() == 0; }, 3s));
  CHECK(relay.server().take_connection_peak() == 3);
  CHECK(relay.server().take_connection_peak() == 0);  // starts again from those open now
}
