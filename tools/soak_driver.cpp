// soak_driver: real sessions through one strelay relay, with churn, for scripts/soak.
//
// Listener nodes (common/node) listen on the relay; each session is a connector that pairs with
// a random listener through the relay (hop handshake, Connect, Connected, end-to-end handshake,
// as Node::connect does, so that the connector's socket can be given SO_LINGER 0), then sends
// random chunks that the listener echoes back. The connector compares every echoed chunk and
// the SHA-256 of everything sent and received. A session lives for about sessions/rate seconds,
// so about --sessions of them are open at once, and --rate new ones start every second. A share
// of them (--abort-fraction) ends abruptly: the connector resets its socket (RST) mid-session,
// and the listener must see its stream end with an error. The others end cleanly (end of data
// both ways, close{normal} both ways), and the listener must see that clean end.
//
// Every --sample-interval the driver samples the relay: VmRSS from /proc/PID/status, and the
// gauges and open descriptors from its /status page. After --minutes of churn it drains (no new
// sessions, the open ones end, the listeners stop), waits for the gauges and descriptors to come
// back to the baseline taken before the first node, and judges:
//   - RSS: least-squares slope over the churn samples after --warmup; more than
//     --max-slope-mib-per-hour fails (over a window shorter than --short-window-minutes, the
//     fitted growth against --short-run-tolerance-mib; tools/soak_verdict.hpp,
//     docs/reliability.md).
//   - the gauges and open descriptors back to baseline after the drain;
//   - sessions: no data mismatch ever; failed sessions at most --max-failure-ratio.
// Exit 0 on pass, 1 on fail, 2 on bad usage. The summary goes to stdout and to --summary.
#include <sodium.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/coro.hpp"
#include "common/errors.hpp"
#include "common/node.hpp"
#include "common/relay_link.hpp"
#include "common/stream.hpp"
#include "common/tickets.hpp"
#include "soak_report.hpp"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using namespace strelay;
using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;
using soak::Options;
using soak::Sample;

// A session as both ends see it; the listener finds it by the id in the first 8 bytes.
struct SessionState {
  explicit SessionState(asio::any_io_executor ex) : listener_seen(ex) {}
  bool abrupt = false;
  bool listener_done = false;
  std::error_code listener_end;
  asio::steady_timer listener_seen;  // cancelled when the listener's stream ends
};

class Soak {
 public:
  Soak(asio::io_context& io, Options o) : io_(io), o_(std::move(o)), rng_(o_.seed) {}
  asio::awaitable<void> run();
  int exit_code() const { return exit_code_; }
  // SIGINT/SIGTERM: the churn ends now; the drain and the verdict follow.
  void interrupt() { interrupted_ = true; }

 private:
  asio::awaitable<void> session(std::uint64_t id);
  asio::awaitable<std::error_code> exchange(Stream& stream, std::uint64_t id, Clock::time_point end,
                                            std::mt19937_64& rng);
  asio::awaitable<void> echo(Stream stream);
  asio::awaitable<void> accept_loop(Node& node);
  asio::awaitable<void> sampler();
  asio::awaitable<bool> take_sample(const std::string& phase);
  asio::awaitable<void> launcher(Clock::time_point until);
  asio::awaitable<bool> settle();
  void fail(const std::string& why) {
    ++tally_.failures[why];
    ++tally_.failed;
  }
  double now_s() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

  asio::io_context& io_;
  Options o_;
  std::mt19937_64 rng_;
  Logger log_{Logger::Options{LogFormat::text, LogLevel::error, {}, {}, {}}};
  RelayTicket relay_;
  std::vector<std::unique_ptr<Node>> listeners_;
  std::vector<std::shared_ptr<const Identity>> connectors_;
  std::unordered_map<std::uint64_t, std::shared_ptr<SessionState>> sessions_;
  Clock::time_point start_ = Clock::now();
  std::string phase_ = "baseline";
  bool sampling_ = true;
  int accept_loops_ = 0;
  long active_ = 0;
  soak::Tally tally_;
  std::vector<Sample> samples_;
  Json baseline_gauges_;
  long baseline_fds_ = -1;
  bool settled_ = false;
  bool interrupted_ = false;
  std::ofstream csv_;
  int exit_code_ = 1;
};

asio::awaitable<void> sleep_for(Clock::duration d) {
  asio::steady_timer timer(co_await asio::this_coro::executor, d);
  co_await timer.async_wait(await_tuple);
}

Clock::duration seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

long read_rss_kib(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

// GET http://addr/status with a 5 s deadline; null on any failure.
asio::awaitable<Json> fetch_status(const std::string& addr) {
  auto ex = co_await asio::this_coro::executor;
  const auto colon = addr.rfind(':');
  boost::system::error_code ec;
  const auto ip = asio::ip::make_address(addr.substr(0, colon), ec);
  if (ec) co_return Json();
  const auto port = static_cast<unsigned short>(std::stoi(addr.substr(colon + 1)));
  beast::tcp_stream stream(ex);
  stream.expires_after(std::chrono::seconds(5));
  auto [c_ec] = co_await stream.async_connect(tcp::endpoint(ip, port), await_tuple);
  if (c_ec) co_return Json();
  http::request<http::empty_body> request(http::verb::get, "/status", 11);
  request.set(http::field::host, addr);
  auto [w_ec, w_n] = co_await http::async_write(stream, request, await_tuple);
  if (w_ec) co_return Json();
  beast::flat_buffer buffer;
  http::response<http::string_body> response;
  auto [r_ec, r_n] = co_await http::async_read(stream, buffer, response, await_tuple);
  if (r_ec || response.result() != http::status::ok) co_return Json();
  co_return Json::parse(response.body(), nullptr, false);
}

// An abrupt drop: connect(AF_UNSPEC) on an established TCP socket makes Linux send a RST at
// once, with no FIN before it (a close, even with SO_LINGER 0, goes through the Stream's
// shutdown first). The descriptor stays open for the Stream to close.
void reset_connection(int fd) {
  sockaddr unspec{};
  unspec.sa_family = AF_UNSPEC;
  ::connect(fd, &unspec, sizeof unspec);
}

// ------------------------------------------------------------------ sessions

asio::awaitable<void> Soak::session(std::uint64_t id) {
  auto ex = co_await asio::this_coro::executor;
  auto state = std::make_shared<SessionState>(ex);
  std::uniform_real_distribution<double> unit(0, 1);
  std::mt19937_64 rng(o_.seed * 1000003 + id);
  state->abrupt = unit(rng) < o_.abort_fraction;
  const double mean = o_.sessions / o_.rate;
  double lifetime = mean * (0.5 + unit(rng));
  if (state->abrupt) lifetime *= 0.2 + 0.6 * unit(rng);
  const auto& self = *connectors_[rng() % connectors_.size()];
  const PublicKey peer = listeners_[rng() % listeners_.size()]->public_key();
  sessions_[id] = state;
  ++active_;
  tally_.peak_active = std::max(tally_.peak_active, active_);
  struct Done {
    Soak* soak;
    std::uint64_t id;
    ~Done() {
      --soak->active_;
      soak->sessions_.erase(id);
    }
  } done{this, id};

  std::optional<Channel> hop, e2e;
  const auto step = std::chrono::seconds(10);
  if (auto e = co_await open_relay_channel(relay_, self, Connect{peer}, Clock::now() + step, hop)) {
    fail("connect: " + e.message());
    co_return;
  }
  PublicKey paired;
  if (auto e = co_await await_pairing(*hop, Clock::now() + step, paired)) {
    fail("pairing: " + e.message());
    co_return;
  }
  auto socket = hop->release_socket();
  const int fd = socket.native_handle();  // the same descriptor inside the Stream later
  if (auto e = co_await connect_stream_handshake(socket, self, peer, Clock::now() + step, e2e)) {
    fail("end-to-end handshake: " + e.message());
    co_return;
  }
  ++tally_.established;
  Stream stream(std::move(*e2e));
  // A watchdog: a session that outlives its plan by 60 s is stuck.
  asio::steady_timer watchdog(ex, seconds(lifetime + 60));
  bool stuck = false;
  watchdog.async_wait([&stream, &stuck](boost::system::error_code ec) {
    if (!ec) {
      stuck = true;
      stream.abort();
    }
  });
  auto error = co_await exchange(stream, id, Clock::now() + seconds(lifetime), rng);
  if (!error && state->abrupt) {
    reset_connection(fd);
    stream.abort();
  } else if (!error) {
    error = co_await stream.shutdown_send();
    std::array<std::uint8_t, 64> tail{};
    if (!error) {
      const auto r = co_await stream.read_some(tail);
      if (!r.eof()) error = r.error ? r.error : make_error_code(errc::protocol_error);
    }
    const auto closed = co_await stream.close();
    if (!error) error = closed;
  }
  watchdog.cancel();
  if (stuck) error = make_error_code(errc::timeout);
  if (error) {
    fail((state->abrupt ? "abrupt session: " : "session: ") + error.message());
    co_return;
  }
  // The listener must see the end: clean for a clean session, an error for a reset one.
  if (!state->listener_done) {
    state->listener_seen.expires_after(std::chrono::seconds(20));
    co_await state->listener_seen.async_wait(await_tuple);
  }
  if (!state->listener_done) {
    fail(state->abrupt ? "listener never saw the reset" : "listener never saw the end");
  } else if (state->abrupt && !state->listener_end) {
    fail("listener saw a reset session end cleanly");
  } else if (!state->abrupt && state->listener_end) {
    fail("listener end of a clean session: " + state->listener_end.message());
  } else if (state->abrupt) {
    ++tally_.dropped;
  } else {
    ++tally_.completed;
  }
}

// Random chunks, each echoed back and compared, until `end`; the first starts with the id.
asio::awaitable<std::error_code> Soak::exchange(Stream& stream, std::uint64_t id,
                                                Clock::time_point end, std::mt19937_64& rng) {
  crypto_hash_sha256_state sent_hash, received_hash;
  crypto_hash_sha256_init(&sent_hash);
  crypto_hash_sha256_init(&received_hash);
  std::vector<std::uint8_t> chunk, echo;
  bool first = true;
  std::uniform_real_distribution<double> pause(0.5, 1.5);
  while (Clock::now() < end) {
    chunk.resize(64 + rng() % 4033);
    for (auto& b : chunk) b = static_cast<std::uint8_t>(rng());
    if (first) std::memcpy(chunk.data(), &id, sizeof id);
    first = false;
    if (auto e = co_await stream.write(chunk)) co_return e;
    crypto_hash_sha256_update(&sent_hash, chunk.data(), chunk.size());
    echo.resize(chunk.size());
    std::size_t have = 0;
    while (have < echo.size()) {
      const auto r = co_await stream.read_some(std::span(echo).subspan(have));
      if (r.error) co_return r.error;
      if (r.eof()) co_return make_error_code(errc::protocol_error);
      have += r.bytes;
    }
    crypto_hash_sha256_update(&received_hash, echo.data(), echo.size());
    if (echo != chunk) {
      ++tally_.mismatches;
      co_return make_error_code(errc::protocol_error);
    }
    tally_.bytes_echoed += chunk.size();
    co_await sleep_for(std::min(seconds(pause(rng)), end - Clock::now()));
  }
  std::array<unsigned char, crypto_hash_sha256_BYTES> a{}, b{};
  crypto_hash_sha256_final(&sent_hash, a.data());
  crypto_hash_sha256_final(&received_hash, b.data());
  if (a != b) {
    ++tally_.mismatches;
    co_return make_error_code(errc::protocol_error);
  }
  co_return std::error_code{};
}

// The listener's side of one stream: echo everything; report how the stream ended.
asio::awaitable<void> Soak::echo(Stream stream) {
  std::vector<std::uint8_t> buffer(Stream::max_frame_data);
  std::uint8_t id_bytes[8];
  std::size_t id_have = 0;
  std::error_code end;
  for (;;) {
    const auto r = co_await stream.read_some(buffer);
    if (r.error) {
      end = r.error;
      stream.abort();
      break;
    }
    if (r.eof()) {
      end = co_await stream.shutdown_send();
      const auto closed = co_await stream.close();
      if (!end) end = closed;
      break;
    }
    for (std::size_t i = 0; i < r.bytes && id_have < 8; ++i) id_bytes[id_have++] = buffer[i];
    if (auto e = co_await stream.write(std::span(buffer.data(), r.bytes))) {
      end = e;
      stream.abort();
      break;
    }
  }
  if (id_have < 8) co_return;
  std::uint64_t id;
  std::memcpy(&id, id_bytes, sizeof id);
  if (auto it = sessions_.find(id); it != sessions_.end()) {
    it->second->listener_done = true;
    it->second->listener_end = end;
    it->second->listener_seen.cancel();
  }
}

asio::awaitable<void> Soak::accept_loop(Node& node) {
  ++accept_loops_;
  for (;;) {
    auto in = co_await node.accept();
    if (!in.stream) break;  // channel_closed: stop_listening()
    asio::co_spawn(io_, echo(std::move(*in.stream)), asio::detached);
  }
  --accept_loops_;
}

// Starts sessions at o_.rate per second until `until`.
asio::awaitable<void> Soak::launcher(Clock::time_point until) {
  const auto began = Clock::now();
  while (Clock::now() < until && !interrupted_) {
    const double due = std::chrono::duration<double>(Clock::now() - began).count() * o_.rate;
    while (static_cast<double>(tally_.launched) < due) {
      if (active_ < o_.sessions * 3 / 2) {
        asio::co_spawn(io_, session(static_cast<std::uint64_t>(++tally_.launched)), asio::detached);
      } else {
        ++tally_.launched;
        fail("not started: too many sessions open");
      }
    }
    co_await sleep_for(std::chrono::milliseconds(20));
  }
}

// ------------------------------------------------------------------ samples

asio::awaitable<bool> Soak::take_sample(const std::string& phase) {
  Sample s;
  s.t = now_s();
  s.phase = phase;
  s.rss_kib = read_rss_kib(o_.relay_pid);
  const Json status = co_await fetch_status(o_.status_addr);
  if (status.is_object()) {
    s.open_fds = status["process"].value("open_fds", -1L);
    s.gauges = status["gauges"];
    s.counters = status["counters"];
  }
  s.active = active_;
  s.completed = tally_.completed;
  s.dropped = tally_.dropped;
  s.failed = tally_.failed;
  if (csv_) {
    const auto g = [&](const char* k) {
      return s.gauges.is_object() ? s.gauges.value(k, -1L) : -1L;
    };
    csv_ << s.t << ',' << s.phase << ',' << s.rss_kib << ',' << s.open_fds << ','
         << g("connections") << ',' << g("listeners") << ',' << g("tunnels") << ','
         << g("half_tunnels") << ',' << g("pending_handshakes") << ',' << s.active << ','
         << s.completed << ',' << s.dropped << ',' << s.failed << ','
         << read_rss_kib(static_cast<int>(::getpid())) << std::endl;
  }
  const bool ok = s.rss_kib > 0 && s.gauges.is_object();
  samples_.push_back(std::move(s));
  co_return ok;
}

// A sample every interval, on the interval grid from the start of the churn.
asio::awaitable<void> Soak::sampler() {
  for (long k = 0; sampling_; ++k) {
    co_await take_sample(phase_);
    const auto next = start_ + seconds(o_.sample_interval * static_cast<double>(k + 1));
    while (sampling_ && Clock::now() < next)
      co_await sleep_for(
          std::min<Clock::duration>(next - Clock::now(), std::chrono::milliseconds(200)));
  }
}

// Polls /status until the gauges and descriptors equal the baseline, or the limit.
asio::awaitable<bool> Soak::settle() {
  const auto until = Clock::now() + seconds(o_.settle_limit);
  while (Clock::now() < until) {
    const Json status = co_await fetch_status(o_.status_addr);
    if (status.is_object() && status["gauges"] == baseline_gauges_ &&
        status["process"].value("open_fds", -2L) == baseline_fds_)
      co_return true;
    co_await sleep_for(std::chrono::milliseconds(500));
  }
  co_return false;
}

// ------------------------------------------------------------------ the run

asio::awaitable<void> Soak::run() {
  relay_ = load_relay_ticket(o_.relay_ticket);
  std::set<PublicKey> friends;
  for (int i = 0; i < o_.connectors; ++i) {
    connectors_.push_back(std::make_shared<const Identity>(Identity::generate()));
    friends.insert(connectors_.back()->public_key());
  }
  csv_.open(o_.samples_csv);
  csv_ << "t_s,phase,rss_kib,open_fds,connections,listeners,tunnels,half_tunnels,"
          "pending_handshakes,active_sessions,completed,dropped,failed,driver_rss_kib\n";
  if (!co_await take_sample("baseline")) {
    std::cerr << "soak_driver: cannot sample the relay (pid " << o_.relay_pid << ", /status at "
              << o_.status_addr << ")\n";
    exit_code_ = 2;
    co_return;
  }
  baseline_gauges_ = samples_.back().gauges;
  baseline_fds_ = samples_.back().open_fds;
  for (int i = 0; i < o_.listeners; ++i) {
    listeners_.push_back(std::make_unique<Node>(io_.get_executor(), Identity::generate(), log_));
    listeners_.back()->set_friends(friends);
    listeners_.back()->listen({relay_});
    asio::co_spawn(io_, accept_loop(*listeners_.back()), asio::detached);
  }
  for (int i = 0; i < 300; ++i) {  // 30 s for every listener to be up
    const Json status = co_await fetch_status(o_.status_addr);
    if (status.is_object() && status["gauges"].value("listeners", 0L) == o_.listeners) break;
    co_await sleep_for(std::chrono::milliseconds(100));
  }
  start_ = Clock::now();
  phase_ = "churn";
  asio::co_spawn(io_, sampler(), asio::detached);
  co_await launcher(start_ + seconds(o_.minutes * 60));

  phase_ = "drain";
  const auto drain_until = Clock::now() + seconds(o_.drain_limit);
  while (active_ > 0 && Clock::now() < drain_until)
    co_await sleep_for(std::chrono::milliseconds(100));
  if (active_ > 0) fail("drain: sessions still open at the drain limit");
  for (auto& node : listeners_) node->stop_listening();
  for (int i = 0; i < 100 && accept_loops_ > 0; ++i)
    co_await sleep_for(std::chrono::milliseconds(100));
  listeners_.clear();
  phase_ = "settle";
  settled_ = co_await settle();
  sampling_ = false;
  co_await take_sample("final");
  const auto verdict =
      soak::judge(o_, tally_, samples_, {baseline_gauges_, baseline_fds_}, settled_);
  exit_code_ = verdict.pass ? 0 : 1;
  std::cout << verdict.text << std::flush;
  if (!o_.summary.empty()) std::ofstream(o_.summary) << verdict.text;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"soak_driver: churn real sessions through a strelay relay and watch its memory",
               "soak_driver"};
  Options o;
  app.add_option("--relay", o.relay_ticket, "The relay's ticket file")->required();
  app.add_option("--relay-pid", o.relay_pid, "The relay's process id (for VmRSS)")->required();
  app.add_option("--status-addr", o.status_addr, "The relay's --metrics-addr, IP:port")->required();
  app.add_option("--minutes", o.minutes, "Minutes of churn")->capture_default_str();
  app.add_option("--sessions", o.sessions, "Sessions open at once (sets their mean lifetime)")
      ->capture_default_str();
  app.add_option("--rate", o.rate, "New sessions per second")->capture_default_str();
  app.add_option("--abort-fraction", o.abort_fraction, "Share of sessions reset abruptly")
      ->capture_default_str();
  app.add_option("--listeners", o.listeners, "Listener nodes")->capture_default_str();
  app.add_option("--connectors", o.connectors, "Connector identities")->capture_default_str();
  app.add_option("--sample-interval", o.sample_interval, "Seconds between relay samples")
      ->capture_default_str();
  app.add_option("--warmup", o.warmup, "Seconds of churn left out of the RSS fit")
      ->capture_default_str();
  app.add_option("--max-slope-mib-per-hour", o.max_slope)->capture_default_str();
  app.add_option("--short-window-minutes", o.short_window_minutes)->capture_default_str();
  app.add_option("--short-run-tolerance-mib", o.short_tolerance_mib)->capture_default_str();
  app.add_option("--max-failure-ratio", o.max_failure_ratio)->capture_default_str();
  app.add_option("--samples", o.samples_csv, "CSV file of the samples")->required();
  app.add_option("--summary", o.summary, "Summary file (also printed)");
  app.add_option("--seed", o.seed)->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (o.sessions < 1 || o.rate <= 0 || o.listeners < 1 || o.connectors < 1 || o.minutes <= 0) {
    std::cerr << "soak_driver: --sessions, --rate, --listeners, --connectors, --minutes must be "
                 "positive\n";
    return 2;
  }
  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) == 0) {  // two descriptors per open session, and more
    files.rlim_cur = files.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &files);
  }
  try {
    init_crypto();
    asio::io_context io(1);
    Soak soak(io, o);
    asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&soak](boost::system::error_code ec, int) {
      if (!ec) soak.interrupt();
    });
    asio::co_spawn(io, soak.run(), [&](std::exception_ptr e) {
      signals.cancel();
      if (e) std::rethrow_exception(e);
    });
    io.run();
    return soak.exit_code();
  } catch (const std::exception& e) {
    std::cerr << "soak_driver: " << e.what() << '\n';
    return 2;
  }
}
