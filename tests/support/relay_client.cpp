#include "support/relay_client.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "common/coro.hpp"
#include "common/identity_file.hpp"
#include "common/tickets.hpp"

extern char** environ;

namespace strelay::test {

namespace asio = boost::asio;
asio::awaitable<RelayConnection> open_connection(const RelayAddress& relay, const Identity& self,
                                                 const NodeMessage& request,
                                                 std::chrono::milliseconds timeout) {
  RelayConnection out;
  tcp::socket socket(co_await asio::this_coro::executor);
  auto [ec] = co_await socket.async_connect(relay.endpoint, await_tuple);
  if (ec) {
    out.error = ec;
    co_return out;
  }
  const auto payload = encode(request);
  out.error = co_await connect_handshake(socket, self, relay.key, HandshakeLayer::hop, payload,
                                         std::chrono::steady_clock::now() + timeout, out.channel);
  co_return out;
}

asio::awaitable<Received> next_message(Channel& channel, std::chrono::milliseconds timeout) {
  Received out;
  for (;;) {
    Message message;
    out.error = co_await channel.receive(message, std::chrono::steady_clock::now() + timeout);
    if (out.error) {
      out.close_reason = message.close_reason;
      co_return out;
    }
    if (message.kind == FrameKind::ping) {  // answer keepalives as a node must
      co_await channel.send(FrameKind::pong, message.body,
                            std::chrono::steady_clock::now() + timeout);
      continue;
    }
    if (message.kind != FrameKind::control) continue;
    auto decoded = try_decode_relay_message(message.body);
    if (!decoded) {
      out.error = decoded.error();
    } else {
      out.message = *decoded;
    }
    co_return out;
  }
}

asio::awaitable<std::error_code> send_request(Channel& channel, const NodeMessage& request) {
  const auto bytes = encode(request);
  co_return co_await channel.send(FrameKind::control, bytes,
                                  std::chrono::steady_clock::now() + std::chrono::seconds(5));
}

asio::awaitable<Channel> listen_as(const RelayProcess& relay, const Identity& self) {
  auto l = co_await open_connection(relay.address(), self, Listen{});
  REQUIRE_FALSE(l.error);
  const auto ok = co_await next_message(*l.channel, std::chrono::milliseconds(2000));
  REQUIRE(is<ListenOk>(ok));
  co_return std::move(*l.channel);
}

RelayProcess::RelayProcess(std::vector<std::string> extra) : extra_(std::move(extra)) {
  char pattern[] = "/tmp/strelay-test-XXXXXX";
  REQUIRE(::mkdtemp(pattern) != nullptr);
  dir_ = pattern;
  const auto identity = Identity::generate();
  write_identity(dir_ / "relay.ident", identity, Overwrite::refuse);
  address_.key = identity.public_key();
  spawn(0);
  RelayTicket ticket{address_.key, Address{"127.0.0.1", address_.endpoint.port()}};
  write_relay_ticket(ticket_path(), ticket, Overwrite::refuse);
}

void RelayProcess::spawn(unsigned short port) {
  std::vector<std::string> args{std::string(STRELAY_BIN_DIR) + "/strelay", "--idfile",
                                (dir_ / "relay.ident").string(), "--laddr",
                                "127.0.0.1:" + std::to_string(port)};
  args.insert(args.end(), extra_.begin(), extra_.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  const auto log_path = (dir_ / "stderr.log").string();
  const auto out_path = (dir_ / "stdout.log").string();
  posix_spawn_file_actions_addopen(&actions, 2, log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0600);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0600);
  REQUIRE(posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ) == 0);
  posix_spawn_file_actions_destroy(&actions);

  // The start-up line names the bound port.
  const std::regex listening("listening on 127\\.0\\.0\\.1:([0-9]+)");
  for (int i = 0; i < 500; ++i) {
    std::smatch match;
    const auto text = log();
    if (std::regex_search(text, match, listening)) {
      address_.endpoint = tcp::endpoint(asio::ip::address_v4::loopback(),
                                        static_cast<unsigned short>(std::stoi(match[1])));
      return;
    }
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      FAIL("strelay exited at start: " << text);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  FAIL("strelay printed no start-up line: " << log());
}

void RelayProcess::kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

void RelayProcess::restart() {
  kill();
  spawn(address_.endpoint.port());
}

RelayProcess::~RelayProcess() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

std::string RelayProcess::log() const {
  std::ifstream in(dir_ / "stderr.log");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void RelayProcess::signal(int signo) const {
  if (pid_ > 0) ::kill(pid_, signo);
}

int RelayProcess::wait_exit(std::chrono::milliseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (pid_ > 0 && std::chrono::steady_clock::now() < until) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return -1;
}

void run_task(asio::awaitable<void> task, std::chrono::milliseconds limit) {
  asio::io_context ioc;
  bool done = false;
  std::exception_ptr error;
  asio::co_spawn(ioc, std::move(task), [&](std::exception_ptr e) {
    done = true;
    error = e;
  });
  ioc.run_for(limit);
  if (error) std::rethrow_exception(error);
  REQUIRE_MESSAGE(done, "the test task did not finish within its time limit");
}

}  // namespace strelay::test
