// Test support: a minimal node that speaks the relay protocol (handshake, first request,
// control messages), and a running strelay process. The node library proper lives in common/;
// this one exists so the relay can be tested, and bent, on its own.
#pragma once

#include <sys/types.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/system/result.hpp>
#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "common/channel.hpp"
#include "common/keys.hpp"
#include "common/messages.hpp"

namespace strelay::test {

using tcp = boost::asio::ip::tcp;

struct RelayAddress {
  tcp::endpoint endpoint;
  PublicKey key;
};

// One node-to-relay connection, after its handshake carried `request`.
struct RelayConnection {
  std::optional<Channel> channel;
  std::error_code error;  // of the connect or the handshake
};

// Connects, runs the handshake pinned to relay.key, with `request` as msg3's payload.
boost::asio::awaitable<RelayConnection> open_connection(
    const RelayAddress& relay, const Identity& self, const NodeMessage& request,
    std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));

// The next control message; errc::channel_closed (with `close_reason`) or another error when
// the relay ends the connection instead.
struct Received {
  std::optional<RelayMessage> message;
  std::error_code error;
  CloseReason close_reason = CloseReason::normal;
};
// True when `r` holds the control message T.
template <class T>
bool is(const Received& r) {
  return r.message && std::holds_alternative<T>(*r.message);
}
boost::asio::awaitable<Received> next_message(
    Channel& channel, std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));

boost::asio::awaitable<std::error_code> send_request(Channel& channel, const NodeMessage& request);

class RelayProcess;
// Listens on `relay` as `self` and waits for ListenOk (both REQUIREd).
boost::asio::awaitable<Channel> listen_as(const RelayProcess& relay, const Identity& self);

// A strelay process on 127.0.0.1 with a fresh identity in its own temporary directory.
class RelayProcess {
 public:
  // `extra` flags are added after --idfile and --laddr 127.0.0.1:0.
  explicit RelayProcess(std::vector<std::string> extra = {});
  ~RelayProcess();
  RelayProcess(const RelayProcess&) = delete;
  RelayProcess& operator=(const RelayProcess&) = delete;

  const RelayAddress& address() const { return address_; }
  const std::filesystem::path& dir() const { return dir_; }
  pid_t pid() const { return pid_; }
  // Everything strelay wrote to stderr (its log) so far.
  std::string log() const;
  // The metrics endpoint's port when --metrics-addr 127.0.0.1:0 was among the flags; 0 otherwise.
  void signal(int signo) const;
  // Waits for the process to exit (up to `limit`); returns its exit status, or -1 on timeout.
  int wait_exit(std::chrono::milliseconds limit);
  // Stops the process at once (SIGKILL), as a crash or a power cut would.
  void kill();
  // Starts strelay again (after kill() or an exit) with the same identity, port and flags,
  // as a restarted service would; its log starts afresh.
  void restart();
  bool running() const { return pid_ > 0; }
  // The relay ticket file (dir()/relay.relay) that stmgr would write for this relay.
  std::filesystem::path ticket_path() const { return dir_ / "relay.relay"; }

 private:
  void spawn(unsigned short port);

  std::filesystem::path dir_;
  pid_t pid_ = -1;
  RelayAddress address_;
  std::vector<std::string> extra_;
};

// Runs `task` on a fresh io_context until it completes or `limit` passes (then fails the test).
void run_task(boost::asio::awaitable<void> task, std::chrono::milliseconds limit);

}  // namespace strelay::test
