#include "support/relay_probe.hpp"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sodium.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>

#include "common/coro.hpp"
#include "common/preamble.hpp"

namespace strelay::test {

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;
using namespace std::chrono_literals;

namespace {

// The fields after the ")" of /proc/PID/stat (field 3, the state, is index 0).
std::vector<std::string> stat_fields(pid_t pid) {
  const auto text = read_file_text("/proc/" + std::to_string(pid) + "/stat");
  std::vector<std::string> out;
  const auto close = text.rfind(')');
  if (close == std::string::npos) return out;
  std::istringstream in(text.substr(close + 1));
  for (std::string field; in >> field;) out.push_back(field);
  return out;
}

sockaddr_in ipv4(const std::string& address, unsigned short port) {
  sockaddr_in out{};
  out.sin_family = AF_INET;
  out.sin_port = htons(port);
  ::inet_pton(AF_INET, address.c_str(), &out.sin_addr);
  return out;
}

}  // namespace

// ---------------------------------------------------------------- reading the relay

std::string read_file_text(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string to_string(const Gauges& g) {
  std::ostringstream out;
  out << "connections=" << g.connections << " pending_handshakes=" << g.pending_handshakes
      << " listeners=" << g.listeners << " half_tunnels=" << g.half_tunnels
      << " tunnels=" << g.tunnels << " tunnel_buffered_bytes=" << g.tunnel_buffered_bytes
      << " topic_memberships=" << g.topic_memberships << " open_fds=" << g.open_fds;
  return out.str();
}

unsigned short parse_metrics_port(const std::string& log) {
  static const std::regex metrics("metrics http://127\\.0\\.0\\.1:([0-9]+)/");
  std::smatch match;
  if (!std::regex_search(log, match, metrics)) return 0;
  return static_cast<unsigned short>(std::stoi(match[1]));
}

Probe::Probe(const RelayProcess& relay)
    : pid_(relay.pid()), port_(parse_metrics_port(relay.log())) {
  REQUIRE_MESSAGE(port_ != 0, "strelay was started without --metrics-addr 127.0.0.1:0");
}

std::optional<HttpReply> Probe::get(std::string_view path,
                                    std::chrono::milliseconds timeout) const {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::nullopt;
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  const auto to = ipv4("127.0.0.1", port_);
  std::string raw;
  const std::string request =
      "GET " + std::string(path) + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  bool ok = ::connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof to) == 0 &&
            ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
                static_cast<ssize_t>(request.size());
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (ok && std::chrono::steady_clock::now() < until) {
    char buf[16384];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n == 0) break;
    if (n < 0) {
      ok = false;
      break;
    }
    raw.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  const auto head_end = raw.find("\r\n\r\n");
  if (!ok || head_end == std::string::npos || raw.compare(0, 9, "HTTP/1.1 ") != 0)
    return std::nullopt;
  HttpReply reply;
  reply.status = std::atoi(raw.c_str() + 9);
  reply.headers = raw.substr(0, head_end);
  reply.body = raw.substr(head_end + 4);
  return reply;
}

nlohmann::json Probe::status() const {
  std::optional<HttpReply> reply;
  // The HTTP endpoint may be briefly out of descriptors in the fd tests: retry a little.
  for (int i = 0; i < 50 && !(reply && reply->status == 200); ++i) {
    if (i > 0) std::this_thread::sleep_for(100ms);
    reply = get("/status");
  }
  REQUIRE_MESSAGE((reply && reply->status == 200), "/status did not answer");
  auto json = nlohmann::json::parse(reply->body, nullptr, false);
  REQUIRE_FALSE(json.is_discarded());
  return json;
}

Gauges Probe::gauges() const {
  const auto j = status();
  const auto& g = j.at("gauges");
  Gauges out;
  out.connections = g.at("connections").get<std::int64_t>();
  out.pending_handshakes = g.at("pending_handshakes").get<std::int64_t>();
  out.listeners = g.at("listeners").get<std::int64_t>();
  out.half_tunnels = g.at("half_tunnels").get<std::int64_t>();
  out.tunnels = g.at("tunnels").get<std::int64_t>();
  out.tunnel_buffered_bytes = g.at("tunnel_buffered_bytes").get<std::int64_t>();
  out.topic_memberships = g.at("topic_memberships").get<std::int64_t>();
  out.open_fds = j.at("process").at("open_fds").get<std::int64_t>();
  return out;
}

std::uint64_t Probe::counter(std::string_view family, std::string_view label) const {
  const auto j = status();
  const auto& c = j.at("counters").at(std::string(family));
  return label.empty() ? c.get<std::uint64_t>() : c.at(std::string(label)).get<std::uint64_t>();
}

std::int64_t Probe::gauge(std::string_view name) const {
  return status().at("gauges").at(std::string(name)).get<std::int64_t>();
}

std::int64_t Probe::status_rss_bytes() const {
  return status().at("process").at("resident_memory_bytes").get<std::int64_t>();
}

double Probe::cpu_seconds() const {
  const auto fields = stat_fields(pid_);
  REQUIRE(fields.size() > 12);
  const double ticks = static_cast<double>(std::stoull(fields[11]) + std::stoull(fields[12]));
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

std::int64_t Probe::rss_bytes() const {
  std::istringstream in(read_file_text("/proc/" + std::to_string(pid_) + "/statm"));
  std::int64_t size = 0;
  std::int64_t resident = -1;
  in >> size >> resident;
  REQUIRE(resident >= 0);
  return resident * static_cast<std::int64_t>(::sysconf(_SC_PAGESIZE));
}

bool Probe::wait_for_gauges(const Gauges& baseline, std::chrono::milliseconds limit,
                            Gauges& last) const {
  return eventually(
      [&] {
        last = gauges();
        return last == baseline;
      },
      limit);
}

Gauges Probe::settled_gauges(std::chrono::milliseconds limit) const {
  // process_open_fds is re-read by the relay at most once a second: two readings further apart
  // than that must agree.
  Gauges previous = gauges();
  Gauges current = previous;
  const bool settled = eventually(
      [&] {
        std::this_thread::sleep_for(1100ms);
        previous = std::exchange(current, gauges());
        return current == previous && current.pending_handshakes == 0 &&
               current.tunnel_buffered_bytes == 0;
      },
      limit);
  REQUIRE_MESSAGE(settled, "the relay's gauges did not settle: " << to_string(current));
  return current;
}

void warm_up(const RelayAddress& relay, const Probe& probe) {
  // Asio opens a worker's reactor descriptors (epoll, eventfd, timerfd) when its first socket
  // arrives; connections are dealt round robin, so two per core reach every worker.
  const auto before = probe.counter("accepts_total");
  const auto count = 2 * std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < count; ++i) RawSocket("127.0.0.8", relay.endpoint);
  REQUIRE(eventually([&] { return probe.counter("accepts_total") >= before + count; }, 5s));
}

std::string relay_seed(const std::filesystem::path& ident_file) {
  auto json = nlohmann::json::parse(read_file_text(ident_file), nullptr, false);
  REQUIRE_FALSE(json.is_discarded());
  const auto seed = json.at("privateKey").get<std::string>();
  REQUIRE(seed.size() == 43);
  return seed;
}

std::uint64_t raise_test_nofile_limit() {
  rlimit limit{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &limit) == 0);
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
    ::getrlimit(RLIMIT_NOFILE, &limit);
  }
  return limit.rlim_cur;
}

// ---------------------------------------------------------------- raw connections

RawSocket::RawSocket(const std::string& source, const tcp::endpoint& to) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    error_ = errno;
    return;
  }
  const auto from = ipv4(source, 0);
  const auto dest = ipv4(to.address().to_string(), to.port());
  if (::bind(fd_, reinterpret_cast<const sockaddr*>(&from), sizeof from) != 0 ||
      ::connect(fd_, reinterpret_cast<const sockaddr*>(&dest), sizeof dest) != 0) {
    error_ = errno;
    close();
    return;
  }
  ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK);
}

RawSocket RawSocket::adopt(int fd) {
  RawSocket out;
  out.fd_ = fd;
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  return out;
}

RawSocket& RawSocket::operator=(RawSocket&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
    error_ = other.error_;
    received_ = other.received_;
  }
  return *this;
}

bool RawSocket::peer_closed() {
  if (fd_ < 0) return true;
  for (;;) {
    char buf[4096];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {  // e.g. msg2 after a msg1: not a close
      received_ += static_cast<std::uint64_t>(n);
      continue;
    }
    if (n == 0) return true;
    if (errno == EINTR) continue;
    return errno != EAGAIN && errno != EWOULDBLOCK;
  }
}

bool RawSocket::wait_peer_closed(std::chrono::milliseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (peer_closed()) return true;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN | POLLRDHUP, 0};
    ::poll(&p, 1, static_cast<int>(std::min<std::int64_t>(left.count(), 100)));
  }
}

std::int64_t RawSocket::send_some(std::span<const std::uint8_t> bytes) {
  if (fd_ < 0) return -1;
  const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n >= 0) return n;
  return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
}

void RawSocket::set_receive_buffer(int bytes) {
  if (fd_ >= 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
}

void RawSocket::close() {
  if (fd_ >= 0) ::close(std::exchange(fd_, -1));
}

std::vector<std::uint8_t> preamble_and_msg1() {
  std::vector<std::uint8_t> out(current_preamble.begin(), current_preamble.end());
  std::array<std::uint8_t, crypto_scalarmult_SCALARBYTES> secret{};
  std::array<std::uint8_t, crypto_scalarmult_BYTES> ephemeral{};
  randombytes_buf(secret.data(), secret.size());
  REQUIRE(crypto_scalarmult_base(ephemeral.data(), secret.data()) == 0);
  sodium_memzero(secret.data(), secret.size());
  out.push_back(0);
  out.push_back(static_cast<std::uint8_t>(ephemeral.size()));
  out.insert(out.end(), ephemeral.begin(), ephemeral.end());
  return out;
}

// ---------------------------------------------------------------- protocol connections

asio::awaitable<RelayConnection> open_connection_from(const asio::ip::address& source,
                                                      const RelayAddress& relay,
                                                      const Identity& self,
                                                      const NodeMessage& request,
                                                      std::chrono::milliseconds timeout) {
  RelayConnection out;
  tcp::socket socket(co_await asio::this_coro::executor);
  boost::system::error_code ec;
  socket.open(tcp::v4(), ec);
  if (!ec) socket.bind(tcp::endpoint(source, 0), ec);
  if (!ec) std::tie(ec) = co_await socket.async_connect(relay.endpoint, await_tuple);
  if (ec) {
    out.error = ec;
    co_return out;
  }
  const auto payload = encode(request);
  out.error = co_await connect_handshake(socket, self, relay.key, HandshakeLayer::hop, payload,
                                         std::chrono::steady_clock::now() + timeout, out.channel);
  co_return out;
}

asio::awaitable<PairedPipe> make_pipe(const RelayAddress& relay, const Identity& l_id,
                                      const Identity& c_id) {
  auto is_a = [](const Received& r, auto tag) {
    return r.message && std::holds_alternative<decltype(tag)>(*r.message);
  };
  auto l = co_await open_connection(relay, l_id, Listen{});
  REQUIRE_FALSE(l.error);
  REQUIRE(is_a(co_await next_message(*l.channel), ListenOk{}));
  auto c = co_await open_connection(relay, c_id, Connect{l_id.public_key()});
  REQUIRE_FALSE(c.error);
  auto incoming = co_await next_message(*l.channel);
  REQUIRE(is_a(incoming, IncomingConnection{}));
  CHECK(std::get<IncomingConnection>(*incoming.message).from == c_id.public_key());
  auto a = co_await open_connection(relay, l_id, Accept{c_id.public_key()});
  REQUIRE_FALSE(a.error);
  auto a_outcome = co_await next_message(*a.channel);
  auto c_outcome = co_await next_message(*c.channel);
  REQUIRE(is_a(a_outcome, Connected{}));
  REQUIRE(is_a(c_outcome, Connected{}));
  CHECK(std::get<Connected>(*a_outcome.message).peer == c_id.public_key());
  CHECK(std::get<Connected>(*c_outcome.message).peer == l_id.public_key());
  co_return PairedPipe{std::move(l), c.channel->release_socket(), a.channel->release_socket()};
}

asio::awaitable<bool> with_timeout(asio::awaitable<void> op, std::chrono::milliseconds limit) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  timer.expires_after(limit);
  auto result = co_await (std::move(op) || timer.async_wait(await_tuple));
  co_return result.index() == 0;
}

asio::awaitable<void> run_concurrently(int n, std::function<asio::awaitable<void>(int)> body) {
  auto executor = co_await asio::this_coro::executor;
  auto done = std::make_shared<int>(0);
  auto first_error = std::make_shared<std::exception_ptr>();
  for (int i = 0; i < n; ++i) {
    asio::co_spawn(executor, body(i), [done, first_error](std::exception_ptr e) {
      ++*done;
      if (e && !*first_error) *first_error = e;
    });
  }
  asio::steady_timer poll(executor);
  while (*done < n) {
    poll.expires_after(5ms);
    co_await poll.async_wait(await_tuple);
  }
  if (*first_error) std::rethrow_exception(*first_error);
}

}  // namespace strelay::test
