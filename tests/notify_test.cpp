// strelay/notify: systemd readiness (sd_notify) messages, their delivery on NOTIFY_SOCKET, and
// the real daemon's READY=1 / STOPPING=1 sequence, read from a socket the test binds, as
// systemd would.
#include "strelay/notify.hpp"

#include <doctest/doctest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>

#include "strelay/metrics.hpp"
#include "support/relay_client.hpp"

namespace {

using namespace strelay;
using namespace std::chrono_literals;

// A datagram socket standing in for systemd's notification socket; NOTIFY_SOCKET points at it
// for the object's lifetime.
class FakeSystemd {
 public:
  FakeSystemd() {
    char templ[] = "/tmp/strelay-notify-XXXXXX";
    REQUIRE(::mkdtemp(templ) != nullptr);
    dir_ = templ;
    path_ = dir_ + "/notify.sock";
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    REQUIRE(path_.size() < sizeof addr.sun_path);
    path_.copy(addr.sun_path, path_.size());
    REQUIRE(::bind(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::setenv("NOTIFY_SOCKET", path_.c_str(), 1) == 0);
  }
  ~FakeSystemd() {
    ::unsetenv("NOTIFY_SOCKET");
    ::close(fd_);
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  FakeSystemd(const FakeSystemd&) = delete;
  FakeSystemd& operator=(const FakeSystemd&) = delete;

  // The next datagram, or nullopt when none arrives within `limit`.
  std::optional<std::string> receive(std::chrono::milliseconds limit) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(limit.count())) != 1) return std::nullopt;
    char buf[4096];
    const auto n = ::recv(fd_, buf, sizeof buf, 0);
    if (n < 0) return std::nullopt;
    return std::string(buf, static_cast<std::size_t>(n));
  }

  // Datagrams until one contains `needle` (bounded by count and time).
  std::optional<std::string> receive_containing(std::string_view needle,
                                                std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    for (int i = 0; i < 100; ++i) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left <= 0ms) break;
      auto message = receive(left);
      if (!message) break;
      if (message->find(needle) != std::string::npos) return message;
    }
    return std::nullopt;
  }

 private:
  std::string dir_;
  std::string path_;
  int fd_ = -1;
};

TEST_CASE("notification messages carry the state and a one-line status") {
  CHECK(ready_message("") == "READY=1");
  CHECK(ready_message("serving") == "READY=1\nSTATUS=serving");
  CHECK(stopping_message("draining") == "STOPPING=1\nSTATUS=draining");
  CHECK(status_message("3 tunnels") == "STATUS=3 tunnels");
  SUBCASE("a newline in the status cannot start another assignment") {
    CHECK(status_message("a\nREADY=1") == "STATUS=a READY=1");
  }
}

TEST_CASE("the status line counts connections, listeners, tunnels and bytes") {
  Metrics metrics;
  metrics.connections.set(12);
  metrics.listeners.set(3);
  metrics.tunnels.set(2);
  metrics.bytes_relayed_total.inc(TunnelDirection::to_listener, 1536);
  CHECK(status_line(metrics) == "12 connections, 3 listeners, 2 tunnels, 1.5 KiB relayed");
}

TEST_CASE("without NOTIFY_SOCKET notifying is a no-op") {
  ::unsetenv("NOTIFY_SOCKET");
  CHECK_FALSE(notify_enabled());
  CHECK_FALSE(notify(ready_message("x")));
}

TEST_CASE("with NOTIFY_SOCKET the message reaches the socket") {
  FakeSystemd systemd;
  CHECK(notify_enabled());
  CHECK(notify(ready_message("serving")));
  CHECK(systemd.receive(2000ms) == std::optional<std::string>("READY=1\nSTATUS=serving"));
}

TEST_CASE("a NOTIFY_SOCKET nobody listens on does not stop the relay") {
  ::setenv("NOTIFY_SOCKET", "/nonexistent/strelay-notify.sock", 1);
  CHECK_FALSE(notify(ready_message("x")));
  ::unsetenv("NOTIFY_SOCKET");
}

TEST_CASE(
    "strelay under systemd reports READY=1 once it accepts connections and STOPPING=1 on SIGTERM") {
  FakeSystemd systemd;
  test::RelayProcess relay;  // inherits NOTIFY_SOCKET
  const auto ready = systemd.receive_containing("READY=1", 5000ms);
  REQUIRE(ready);
  CHECK(ready->find("STATUS=serving 1 addresses") != std::string::npos);

  // Ready means reachable: the relay port takes a TCP connection.
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket socket(io);
  boost::system::error_code ec;
  socket.connect(relay.address().endpoint, ec);
  CHECK_FALSE(ec);
  socket.close(ec);

  relay.signal(SIGHUP);
  CHECK(systemd.receive_containing("STATUS=reloaded", 5000ms));

  relay.signal(SIGTERM);
  const auto stopping = systemd.receive_containing("STOPPING=1", 5000ms);
  REQUIRE(stopping);
  CHECK(stopping->find("STATUS=draining") != std::string::npos);
  CHECK(relay.wait_exit(10000ms) == 0);
}

}  // namespace
