#include "support/watched_relay.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sodium.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <regex>

#include "common/coro.hpp"
#include "common/identity_file.hpp"
#include "support/hostile_client.hpp"

extern char** environ;

namespace strelay::test {

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;
using namespace std::chrono_literals;

namespace {}  // namespace

// ---------------------------------------------------------------- the canary

Canary::Canary(const RelayAddress& relay, const std::string& source) {
  asio::co_spawn(*ioc_, run(relay, asio::ip::make_address(source)), [this](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      fail(std::string("exception: ") + ex.what());
    }
  });
  thread_ = std::thread([this] { ioc_->run(); });
  const bool paired =
      eventually([this] { return ready_.load() || failures_.load() > 0; }, 20s) && ready_.load();
  if (!paired || !round_trips(2)) {
    const auto why = error();
    stop();
    FAIL("the canary could not pair and exchange bytes: " << why);
  }
}

Canary::~Canary() {
  stop();
}

void Canary::stop() {
  stopping_ = true;
  if (!ioc_) return;
  ioc_->stop();
  if (thread_.joinable()) thread_.join();
  ioc_.reset();
}

std::string Canary::error() const {
  std::lock_guard lock(mutex_);
  return error_;
}

void Canary::fail(const std::string& what) {
  if (stopping_.load()) return;
  std::lock_guard lock(mutex_);
  if (error_.empty()) error_ = what;
  failures_.fetch_add(1);
}

bool Canary::round_trips(int n, std::chrono::milliseconds limit) {
  const int target = completed_.load() + n;
  eventually([&] { return completed_.load() >= target || failures_.load() > 0; }, limit);
  return failures_.load() == 0 && completed_.load() >= target;
}

asio::awaitable<void> Canary::run(RelayAddress relay, asio::ip::address source) {
  const auto listener_id = Identity::generate();
  const auto connector_id = Identity::generate();
  auto expect = [this](const Received& r, auto tag, const char* what) {
    using T = decltype(tag);
    if (r.message && std::holds_alternative<T>(*r.message)) return true;
    fail(std::string("canary expected ") + what + ", got error " + r.error.message());
    return false;
  };
  auto l = co_await open_connection_from(source, relay, listener_id, Listen{});
  if (l.error) co_return fail("canary listener: " + l.error.message());
  if (!expect(co_await next_message(*l.channel), ListenOk{}, "ListenOk")) co_return;
  auto c =
      co_await open_connection_from(source, relay, connector_id, Connect{listener_id.public_key()});
  if (c.error) co_return fail("canary connector: " + c.error.message());
  if (!expect(co_await next_message(*l.channel), IncomingConnection{}, "IncomingConnection"))
    co_return;
  auto a =
      co_await open_connection_from(source, relay, listener_id, Accept{connector_id.public_key()});
  if (a.error) co_return fail("canary acceptor: " + a.error.message());
  if (!expect(co_await next_message(*a.channel), Connected{}, "Connected (acceptor)")) co_return;
  if (!expect(co_await next_message(*c.channel), Connected{}, "Connected (connector)")) co_return;
  auto connector = c.channel->release_socket();
  auto acceptor = a.channel->release_socket();
  ready_ = true;
  co_await (keep_listening(*l.channel) && echo(acceptor) && ping_pong(connector));
}

asio::awaitable<void> Canary::keep_listening(Channel& listener) {
  for (;;) {
    auto r = co_await next_message(listener, 1000ms);  // answers pings
    if (r.error == errc::timeout) continue;
    if (r.error)
      co_return fail("canary listener ended: " + r.error.message() + " reason " +
                     std::to_string(static_cast<int>(r.close_reason)));
  }
}

asio::awaitable<void> Canary::echo(tcp::socket& acceptor) {
  std::array<std::uint8_t, 16> buf{};
  for (;;) {
    auto [e1, n1] = co_await asio::async_read(acceptor, asio::buffer(buf), await_tuple);
    if (e1) co_return fail("canary acceptor read: " + e1.message());
    auto [e2, n2] = co_await asio::async_write(acceptor, asio::buffer(buf), await_tuple);
    if (e2) co_return fail("canary acceptor write: " + e2.message());
  }
}

asio::awaitable<void> Canary::ping_pong(tcp::socket& connector) {
  asio::steady_timer pause(co_await asio::this_coro::executor);
  for (std::uint64_t round = 1;; ++round) {
    pause.expires_after(100ms);
    co_await pause.async_wait(await_tuple);
    std::array<std::uint8_t, 16> out{};
    std::array<std::uint8_t, 16> back{};
    for (std::size_t i = 0; i < out.size(); ++i)
      out[i] = static_cast<std::uint8_t>(round >> (8 * (i % 8)));
    boost::system::error_code error;
    const bool in_time = co_await with_timeout(
        [&]() -> asio::awaitable<void> {
          auto [e1, n1] = co_await asio::async_write(connector, asio::buffer(out), await_tuple);
          if (e1) {
            error = e1;
            co_return;
          }
          auto [e2, n2] = co_await asio::async_read(connector, asio::buffer(back), await_tuple);
          error = e2;
        }(),
        5000ms);
    if (!in_time) co_return fail("canary echo took over 5 s");
    if (error) co_return fail("canary pipe: " + error.message());
    if (back != out) co_return fail("canary echo differs");
    completed_.fetch_add(1);
  }
}

// ---------------------------------------------------------------- the frame of a test

namespace {
std::vector<std::string> with_metrics(std::vector<std::string> extra) {
  // Debug logging, so the check that no secret is logged covers every line the relay can write.
  extra.insert(extra.begin(), {"--metrics-addr", "127.0.0.1:0", "--log-level", "debug"});
  return extra;
}
}  // namespace

WatchedRelay::WatchedRelay(std::vector<std::string> extra, bool with_canary)
    : relay_(with_metrics(std::move(extra))), probe_(relay_) {
  warm_up(relay_.address(), probe_);
  if (with_canary) canary_.emplace(relay_.address());
  baseline_ = probe_.settled_gauges();
}

void WatchedRelay::check_clean(std::chrono::milliseconds limit) {
  if (canary_) {
    CHECK_MESSAGE(canary_->round_trips(3), "the canary failed: " << canary_->error());
    CHECK_MESSAGE(canary_->failures() == 0, "the canary failed: " << canary_->error());
  }
  Gauges last;
  const bool back = probe_.wait_for_gauges(baseline_, limit, last);
  CHECK_MESSAGE(back, "gauges not back to baseline within "
                          << limit.count() << " ms\n  baseline: " << to_string(baseline_)
                          << "\n  now:      " << to_string(last));
  if (canary_) canary_->stop();
  if (relay_.running()) check_clean_exit(relay_, std::chrono::milliseconds(10000));
  check_no_secret_logged(relay_.dir() / "relay.ident", relay_.log());
}

void check_clean_exit(RelayProcess& relay, std::chrono::milliseconds limit) {
  relay.signal(SIGTERM);
  const int status = relay.wait_exit(limit);
  CHECK_MESSAGE(status == 0, "strelay did not exit 0 on SIGTERM within "
                                 << limit.count() << " ms (status " << status << ")");
  if (status != 0) relay.kill();
  check_no_sanitizer_report(relay.log());
}

void check_no_sanitizer_report(const std::string& log) {
  for (const char* marker :
       {"ERROR: AddressSanitizer", "runtime error:", "WARNING: ThreadSanitizer", "LeakSanitizer",
        "ERROR: UndefinedBehaviorSanitizer"}) {
    const auto at = log.find(marker);
    CHECK_MESSAGE(at == std::string::npos, "sanitizer report in the relay's log: " << log.substr(
                                               at == std::string::npos ? 0 : at, 2000));
  }
}

void check_no_secret_logged(const std::filesystem::path& ident_file, const std::string& log) {
  const auto identity = load_identity(ident_file);
  std::vector<std::uint8_t> seed(identity.seed().begin(), identity.seed().end());
  std::vector<std::uint8_t> signing_key = seed;  // libsodium's secret key: seed || public key
  const auto& pk = identity.public_key().bytes();
  signing_key.insert(signing_key.end(), pk.begin(), pk.end());
  SecretLedger::add("the relay's seed", seed);
  SecretLedger::add("the relay's signing key", signing_key);
  sodium_memzero(seed.data(), seed.size());
  sodium_memzero(signing_key.data(), signing_key.size());
  const auto found = SecretLedger::find_in(log);
  CHECK_MESSAGE(found.empty(), "a secret appears in the relay's log: " << found);
  const auto base64url_seed = relay_seed(ident_file);
  CHECK_MESSAGE(log.find(base64url_seed.substr(0, 20)) == std::string::npos,
                "part of the relay's seed appears in its log");
}

// ---------------------------------------------------------------- a wrapped relay

PrefixedRelay::PrefixedRelay(std::vector<std::string> prefix, std::vector<std::string> extra) {
  char pattern[] = "/tmp/strelay-probe-XXXXXX";
  REQUIRE(::mkdtemp(pattern) != nullptr);
  dir_ = pattern;
  const auto identity = Identity::generate();
  write_identity(dir_ / "relay.ident", identity, Overwrite::refuse);
  address_.key = identity.public_key();

  std::vector<std::string> args = std::move(prefix);
  for (const auto& a :
       {std::string(STRELAY_BIN_DIR) + "/strelay", std::string("--idfile"),
        (dir_ / "relay.ident").string(), std::string("--laddr"), std::string("127.0.0.1:0"),
        std::string("--metrics-addr"), std::string("127.0.0.1:0")}) {
    args.push_back(a);
  }
  args.insert(args.end(), extra.begin(), extra.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  const auto log_path = (dir_ / "stderr.log").string();
  posix_spawn_file_actions_addopen(&actions, 2, log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0600);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  REQUIRE(posix_spawnp(&pid_, argv[0], &actions, nullptr, argv.data(), environ) == 0);
  posix_spawn_file_actions_destroy(&actions);

  static const std::regex listening("listening on 127\\.0\\.0\\.1:([0-9]+)");
  const bool started = eventually(
      [&] {
        std::smatch match;
        const auto text = log();
        if (!std::regex_search(text, match, listening)) return false;
        address_.endpoint = tcp::endpoint(asio::ip::address_v4::loopback(),
                                          static_cast<unsigned short>(std::stoi(match[1])));
        metrics_port_ = parse_metrics_port(text);
        return true;
      },
      10s);
  REQUIRE_MESSAGE(started, "wrapped strelay printed no start-up line: " << log());
}

PrefixedRelay::~PrefixedRelay() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

std::string PrefixedRelay::log() const {
  return read_file_text(dir_ / "stderr.log");
}

int PrefixedRelay::terminate(std::chrono::milliseconds limit) {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  const auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(10ms);
  }
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
  return -1;
}

}  // namespace strelay::test
