// stcat listen and stcat connect: load the files, build a Node, run sessions.
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <deque>
#include <filesystem>
#include <iostream>
#include <set>
#include <stdexcept>

#include "common/allowlist.hpp"
#include "common/coro.hpp"
#include "common/errors.hpp"
#include "common/identity_file.hpp"
#include "common/node.hpp"
#include "common/tickets.hpp"
#include "common/wakeup.hpp"
#include "session.hpp"
#include "stcat.hpp"

namespace strelay::stcat {

namespace asio = boost::asio;

namespace {

std::chrono::milliseconds ms(double seconds) {
  return std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000));
}

NodeOptions node_options(const CommonOptions& o) {
  if (o.backoff_cap < o.backoff_initial) {
    throw std::invalid_argument("--backoff-cap must not be below --backoff-initial");
  }
  if (o.dead_peer_timeout <= o.keepalive_interval) {
    throw std::invalid_argument("--dead-peer-timeout must be longer than --keepalive-interval");
  }
  NodeOptions options;
  options.backoff.initial = ms(o.backoff_initial);
  options.backoff.cap = ms(o.backoff_cap);
  options.connect_timeout = ms(o.connect_timeout);
  options.relay_keepalive_interval = ms(o.keepalive_interval);
  options.relay_dead_peer_timeout = ms(o.dead_peer_timeout);
  options.stream.keepalive_interval = ms(o.keepalive_interval);
  options.stream.dead_peer_timeout = ms(o.dead_peer_timeout);
  options.relay_standby = !o.no_standby;
  options.early_e2e = !o.no_early_e2e;
  return options;
}

LogLevel log_level(int verbose) {
  return verbose >= 3 ? LogLevel::debug : verbose == 2 ? LogLevel::info : LogLevel::warn;
}

std::vector<RelayTicket> load_relays(const std::vector<std::string>& paths) {
  std::vector<RelayTicket> relays;
  for (const auto& path : paths) relays.push_back(load_relay_ticket(path));
  return relays;
}

// --allow: a key, a .friend file or an allowlist file (strelay's --allow format, which takes
// .friend files too).
std::set<PublicKey> load_allowed(const std::vector<std::string>& values) {
  std::set<PublicKey> keys;
  for (const auto& value : values) {
    std::string key_error;
    if (const auto key = try_parse_public_key(value, key_error)) {
      keys.insert(*key);
      continue;
    }
    if (!std::filesystem::exists(value)) {
      throw std::invalid_argument("--allow \"" + value + "\": not a public key (" + key_error +
                                  ") and not a file");
    }
    const auto list = load_allowlist(value);
    for (const auto& key : list.keys()) keys.insert(key);
  }
  return keys;
}

// -v: the node's events as plain lines on stderr. A relay that does not hold its ticket's key,
// or speaks another protocol version, is worth a warning even without -v.
class Reporter : public NodeObserver {
 public:
  explicit Reporter(bool verbose) : verbose_(verbose) {}
  void relay_up(const RelayTicket& relay) override {
    if (verbose_) std::cerr << "stcat: listening on relay " << name(relay) << std::endl;
  }
  void relay_down(const RelayTicket& relay, std::error_code why,
                  std::chrono::milliseconds retry_in) override {
    // A refusal the relay will repeat (its key, version or allowlist, or no relay there at all)
    // is worth a warning; "relay shutting down" too, since this relay is gone for a while.
    if (!verbose_ && !is_permanent_refusal(why) && why != errc::relay_shutting_down) return;
    std::cerr << "stcat: " << (verbose_ ? "" : "warning: ") << relay_error_text(name(relay), why)
              << "; retrying in " << std::chrono::duration<double>(retry_in).count() << " s"
              << std::endl;
  }
  void connect_failed(const RelayTicket& relay, const PublicKey&, std::error_code why) override {
    if (verbose_) std::cerr << "stcat: " << relay_error_text(name(relay), why) << std::endl;
  }
  void peer_connected(const PublicKey& peer, const RelayTicket& via) override {
    if (verbose_) {
      std::cerr << "stcat: connected to " << peer.to_base64url() << " via " << name(via)
                << std::endl;
    }
  }
  void peer_gone(const PublicKey& peer, std::error_code why) override {
    if (verbose_ && why)
      std::cerr << "stcat: " << peer.fingerprint() << ": " << why.message() << std::endl;
  }

 protected:
  static std::string name(const RelayTicket& relay) { return relay.address.to_string(); }
  bool verbose_;
};

// stcat meet's events: the reporter's, plus the topic's answers and the introductions, which
// wait in a queue for the meeting (or are listed, with --all).
class MeetReporter : public Reporter {
 public:
  MeetReporter(bool verbose, asio::any_io_executor executor)
      : Reporter(verbose), wake(std::move(executor)) {}
  void topic_joined(const std::string&, const RelayTicket& relay, std::uint32_t members,
                    std::uint32_t) override {
    if (verbose_) {
      std::cerr << "stcat: joined the topic on " << name(relay) << " (" << members
                << " other member(s) there)" << std::endl;
    }
  }
  void topic_refused(const std::string&, const RelayTicket& relay, std::error_code why) override {
    std::cerr << "stcat: warning: relay " << name(relay) << " refused the topic: " << why.message()
              << std::endl;
  }
  void introduction(const TopicIntroduction& introduction) override {
    if (verbose_) {
      std::cerr << "stcat: met " << introduction.peer.to_base64url() << " via "
                << name(introduction.relay) << std::endl;
    }
    introductions.push_back(introduction);
    ++met;
    wake.notify();
  }

  std::deque<TopicIntroduction> introductions;
  std::size_t met = 0;
  Wakeup wake;
};

// Pipes one stream to stdin/stdout or to a --exec command; returns the session's exit code.
asio::awaitable<int> serve(Stream& stream, const CommonOptions& o, bool keep_stdout_open) {
  auto executor = co_await asio::this_coro::executor;
  SessionOptions session;
  session.summary = o.verbose > 0;
  if (o.verbose > 0)
    session.progress = ::isatty(2) == 1 ? ProgressMode::terminal : ProgressMode::lines;
  SessionOutcome outcome;
  if (!o.exec.empty()) {
    Child child(executor, o.exec);
    session.sink_may_refuse = true;
    outcome = co_await run_session(stream, child.output(), child.input(), session);
    child.input().close();
    const int status = co_await child.wait(std::chrono::seconds(5));
    if (o.verbose > 0) std::cerr << "stcat: --exec command exited with " << status << std::endl;
  } else {
    LocalFd input(executor, 0, false), output(executor, 1, false);
    session.sink_is_terminal = session.progress == ProgressMode::terminal && ::isatty(1) == 1;
    session.close_sink_at_eof = !keep_stdout_open;
    outcome = co_await run_session(stream, input, output, session);
  }
  if (outcome.local_error) {
    std::cerr << "stcat: local input/output: " << outcome.local_error.message() << std::endl;
    co_return exit_local_error;
  }
  if (outcome.stream_error) {
    std::cerr << "stcat: " << stream.peer().fingerprint() << ": " << outcome.stream_error.message()
              << std::endl;
  }
  co_return exit_code_for_stream(outcome.stream_error);
}

// Runs `task` with SIGINT and SIGTERM ending the process (128 + signal).
int run_until_done(asio::io_context& ioc, const std::function<asio::awaitable<int>()>& task) {
  int code = exit_local_error;
  asio::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int signo) {
    if (ec) return;
    code = 128 + signo;
    ioc.stop();
  });
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        code = co_await task();
        ioc.stop();
      },
      rethrow);
  try {
    ioc.run();
  } catch (const std::exception& e) {  // a bug, or a --exec command that cannot start
    std::cerr << "stcat: " << e.what() << std::endl;
    return exit_local_error;
  }
  return code;
}

}  // namespace

int run_connect(const ConnectOptions& o) {
  PublicKey target;
  std::vector<RelayTicket> relays;
  std::string key_error;
  if (const auto key = try_parse_public_key(o.to, key_error)) {
    target = *key;
    if (o.relays.empty()) throw CLI::ValidationError("--to", "a public key needs --relay");
  } else if (std::filesystem::exists(o.to)) {
    auto ticket = load_friend_ticket(o.to);
    target = ticket.public_key;
    relays = std::move(ticket.relays);
  } else {
    throw CLI::ValidationError(
        "--to", "\"" + o.to + "\" is neither a public key (" + key_error + ") nor a .friend file");
  }
  for (auto& relay : load_relays(o.relays)) relays.push_back(std::move(relay));
  const auto options = node_options(o);

  // The logger outlives the io_context, whose destruction may still end streams that log.
  Logger log(Logger::Options{.level = log_level(o.verbose)});
  asio::io_context ioc;
  Node node(ioc.get_executor(), load_identity(o.idfile), log, options);
  Reporter reporter(o.verbose > 0);
  node.set_observer(&reporter);
  return run_until_done(ioc, [&]() -> asio::awaitable<int> {
    auto result = co_await node.connect(target, relays);
    if (!result.stream) {
      // Name the relay when its answer is what went wrong (not a relay at that address).
      std::string why = result.error.message();
      for (const auto& failure : result.failures) {
        if (failure.error == result.error && is_not_a_relay(result.error)) {
          why = relay_error_text(failure.relay.address.to_string(), result.error);
        }
      }
      std::cerr << "stcat: cannot connect to " << target.to_base64url() << ": " << why << std::endl;
      co_return exit_code_for_connect(result.error);
    }
    co_return co_await serve(*result.stream, o, false);
  });
}

int run_listen(const ListenOptions& o) {
  const auto relays = load_relays(o.relays);
  const auto allowed = load_allowed(o.allow);
  const auto options = node_options(o);

  // The logger outlives the io_context, whose destruction may still end streams that log.
  Logger log(Logger::Options{.level = log_level(o.verbose)});
  asio::io_context ioc;
  Node node(ioc.get_executor(), load_identity(o.idfile), log, options);
  Reporter reporter(o.verbose > 0);
  node.set_observer(&reporter);
  node.set_friends(allowed);
  if (o.verbose > 0) {
    std::cerr << "stcat: this node is " << node.public_key().to_base64url() << "; "
              << allowed.size() << " key(s) allowed" << std::endl;
  }
  node.listen(relays);
  return run_until_done(ioc, [&]() -> asio::awaitable<int> {
    int code = exit_ok;
    do {
      auto in = co_await node.accept();
      if (!in.stream) co_return exit_local_error;  // listening stopped: not in this program
      // Like nc -l: a single-connection listener stops listening once it has its peer.
      if (!o.keep_listening) node.stop_listening();
      code = co_await serve(*in.stream, o, o.keep_listening);
    } while (o.keep_listening);
    co_return code;
  });
}

// stcat meet: join the topic, then either list the introduced peers (--all) or meet the first:
// connect to the introduced peers whose key is above ours (in order, until one works) while
// accepting anyone introduced, whichever comes first; then leave and pipe. The lower key
// connects, not the newcomer: a pair met on two relays may be each one's newcomer on one.
int run_meet(const MeetOptions& o) {
  using namespace asio::experimental::awaitable_operators;
  const auto relays = load_relays(o.relays);
  const auto options = node_options(o);
  Logger log(Logger::Options{.level = log_level(o.verbose)});
  asio::io_context ioc;
  Node node(ioc.get_executor(), load_identity(o.idfile), log, options);
  MeetReporter reporter(o.verbose > 0, ioc.get_executor());
  node.set_observer(&reporter);
  node.join_topic(o.topic, TopicOptions{.accept_introduced = !o.all});
  node.listen(relays);
  const auto until = o.wait > 0 ? std::chrono::steady_clock::now() + ms(o.wait)
                                : std::chrono::steady_clock::time_point::max();

  auto list_all = [&]() -> asio::awaitable<int> {
    while (std::chrono::steady_clock::now() < until) {
      for (; !reporter.introductions.empty(); reporter.introductions.pop_front()) {
        const auto& met = reporter.introductions.front();
        std::cout << met.peer.to_base64url() << ' ' << met.relay.address.to_string() << std::endl;
      }
      co_await reporter.wake.wait(until);
    }
    co_return reporter.met > 0 ? exit_ok : exit_nobody;
  };
  auto connect_newcomer = [&]() -> asio::awaitable<std::optional<Stream>> {
    for (;;) {
      while (reporter.introductions.empty()) {
        if (std::chrono::steady_clock::now() >= until) co_return std::nullopt;
        co_await reporter.wake.wait(until);
      }
      const auto met = reporter.introductions.front();
      reporter.introductions.pop_front();
      if (met.peer < node.public_key()) continue;  // the lower key connects: it is theirs
      auto result = co_await node.connect_introduced(met);
      if (result.stream) co_return std::move(result.stream);
    }
  };
  auto accept_member = [&]() -> asio::awaitable<std::optional<Stream>> {
    auto in = co_await node.accept(until);
    co_return std::move(in.stream);
  };
  return run_until_done(ioc, [&]() -> asio::awaitable<int> {
    if (o.all) co_return co_await list_all();
    auto met = co_await (connect_newcomer() || accept_member());
    auto stream = std::visit([](auto& s) { return std::move(s); }, met);
    if (!stream) {
      std::cerr << "stcat: nobody met on the topic in " << o.wait << " s" << std::endl;
      co_return exit_nobody;
    }
    node.leave_topic(o.topic);
    node.stop_listening();
    co_return co_await serve(*stream, o, false);
  });
}

}  // namespace strelay::stcat
