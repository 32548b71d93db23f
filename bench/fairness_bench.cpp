// Fairness (issue 6, measurement 5): the round trip of 100 small ping-pong pairs through
// strelay, alone and while one bulk pair pushes as fast as it can through the same relay.
//
// Each small pair sends a 64-byte ping every --interval ms (staggered across pairs) when its
// previous ping has come back; its peer echoes it. A round has three phases, back to back, in
// rotating order: alone; with the bulk pair through the relay; and, as the reference, with a
// bulk pair on a direct loopback connection outside the relay (the same fight for the two
// cores, without the relay carrying it). The target figure (issue 17.4) is the relay's share:
// p99(bulk through the relay) / p99(bulk outside) per round. p99(bulk through the relay) /
// p99(alone), issue 6's figure, is kept for comparison (on two shared cores it measures the
// fight for the cores more than the relay).
//
//   fairness_bench --bin DIR [--pairs 100] [--seconds 3] [--interval 10] [--rounds 5]
#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <thread>

#include "bench/harness.hpp"
#include "bench/pairing.hpp"

using namespace bench;

namespace {

constexpr std::size_t ping_bytes = 64;

struct Pair {
  int client;
  int echo;
};

timespec to_timespec(Clock::duration d) {
  const auto ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::max(d, Clock::duration::zero()))
          .count();
  return timespec{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
}

// Echoes whatever arrives on the pairs' echo ends until `stop`.
void echo_loop(const std::vector<Pair>& pairs, const std::atomic<bool>& stop) {
  std::vector<pollfd> fds;
  for (const auto& p : pairs) fds.push_back({p.echo, POLLIN, 0});
  std::array<char, 4096> buffer{};
  while (!stop.load()) {
    const timespec wait = to_timespec(std::chrono::milliseconds(10));
    if (::ppoll(fds.data(), fds.size(), &wait, nullptr) <= 0) continue;
    for (auto& f : fds) {
      if ((f.revents & POLLIN) == 0) continue;
      const ssize_t n = ::read(f.fd, buffer.data(), buffer.size());
      if (n <= 0) {
        f.fd = -1;
        continue;
      }
      (void)::send(f.fd, buffer.data(), static_cast<std::size_t>(n), MSG_NOSIGNAL);
    }
  }
}

// Paced ping-pong on every pair for `seconds`; returns the round trips in seconds.
std::vector<double> ping_loop(const std::vector<Pair>& pairs, double seconds,
                              Clock::duration interval) {
  const std::size_t n = pairs.size();
  std::vector<pollfd> fds;
  for (const auto& p : pairs) fds.push_back({p.client, POLLIN, 0});
  const auto start = Clock::now();
  const auto end =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  std::vector<Clock::time_point> next(n), sent(n);
  std::vector<bool> waiting(n, false);
  std::vector<std::size_t> got(n, 0);
  for (std::size_t i = 0; i < n; ++i)
    next[i] = start + interval * static_cast<long>(i) / static_cast<long>(n);
  std::vector<double> rtts;
  std::array<char, ping_bytes> ping{};
  std::array<char, 4096> buffer{};
  for (auto now = Clock::now(); now < end; now = Clock::now()) {
    auto wake = end;
    for (std::size_t i = 0; i < n; ++i) {
      if (waiting[i]) continue;
      if (now >= next[i]) {
        if (::send(pairs[i].client, ping.data(), ping.size(), MSG_NOSIGNAL) !=
            static_cast<ssize_t>(ping.size())) {
          die("ping send failed");
        }
        waiting[i] = true;
        sent[i] = now;
        next[i] = std::max(next[i] + interval, now);
      } else {
        wake = std::min(wake, next[i]);
      }
    }
    const timespec wait = to_timespec(wake - Clock::now());
    if (::ppoll(fds.data(), fds.size(), &wait, nullptr) <= 0) continue;
    const auto arrived = Clock::now();
    for (std::size_t i = 0; i < n; ++i) {
      if ((fds[i].revents & POLLIN) == 0) continue;
      const ssize_t r = ::read(fds[i].fd, buffer.data(), buffer.size());
      if (r <= 0) die("ping pair closed");
      got[i] += static_cast<std::size_t>(r);
      if (got[i] >= ping_bytes && waiting[i]) {
        got[i] -= ping_bytes;
        waiting[i] = false;
        rtts.push_back(seconds_between(sent[i], arrived));
      }
    }
  }
  return rtts;
}

struct Bulk {
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> bytes{0};
  std::thread sender, receiver;
  void start(Pair p) {
    sender = std::thread([this, p] {
      std::vector<char> buffer(256 * 1024, 'b');
      while (!stop.load()) {
        if (::send(p.client, buffer.data(), buffer.size(), MSG_NOSIGNAL) <= 0) break;
      }
      ::shutdown(p.client, SHUT_WR);
    });
    receiver = std::thread([this, p] {
      std::vector<char> buffer(256 * 1024);
      for (;;) {
        const ssize_t n = ::read(p.echo, buffer.data(), buffer.size());
        if (n <= 0) break;
        bytes += static_cast<std::uint64_t>(n);
      }
    });
  }
  void finish() {
    stop = true;
    sender.join();
    receiver.join();
  }
};

// A direct loopback TCP connection: client end and accepted end, both blocking.
Pair direct_pair() {
  const int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (server < 0 || ::bind(server, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(server, 1) != 0 ||
      ::getsockname(server, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    die("direct pair: cannot listen on loopback");
  }
  const int client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (client < 0 || ::connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    die("direct pair: connect");
  const int accepted = ::accept4(server, nullptr, nullptr, SOCK_CLOEXEC);
  if (accepted < 0) die("direct pair: accept");
  ::close(server);
  return {client, accepted};
}

std::vector<Pair> open_pairs(asio::io_context& ioc, const Hop& hop, std::size_t count) {
  const auto listener = Identity::generate();
  const auto connector = Identity::generate();
  auto task = [&]() -> asio::awaitable<std::vector<Pair>> {
    std::optional<Channel> listening;
    if (auto ec = co_await open_listener(hop, source_address(0), listener, listening))
      die("listen: " + ec.message());
    std::vector<Pair> pairs;
    for (std::size_t i = 0; i < count; ++i) {
      auto ends = co_await open_tunnel(hop, source_address(i), connector, listener, *listening);
      if (ends.error) die("tunnel: " + ends.error.message());
      pairs.push_back({take_blocking_fd(*ends.connector), take_blocking_fd(*ends.acceptor)});
    }
    listening->close();
    co_return pairs;
  };
  return run_until_done(ioc, task());
}

}  // namespace

int main(int argc, char** argv) {
  const Flags flags(argc, argv, {"bin", "interval", "pairs", "rounds", "seconds"});
  strelay::init_crypto();
  ::signal(SIGPIPE, SIG_IGN);
  const auto count = static_cast<std::size_t>(flags.count("pairs", 100));
  const double seconds = flags.num("seconds", 3);
  const auto interval = std::chrono::milliseconds(flags.count("interval", 10));
  const int rounds = static_cast<int>(flags.count("rounds", 5));
  const fs::path bin = flags.str("bin", "build/bin");
  const auto dir = scratch_dir("fairness");
  auto relay = start_relay(bin, dir);
  const Hop hop{relay.endpoint, relay.key};
  asio::io_context ioc(1);

  Figure idle_p50("fairness.unloaded.p50", "small pairs' round trip p50, alone", "ms");
  Figure idle_p99("fairness.unloaded.p99", "small pairs' round trip p99, alone", "ms");
  Figure busy_p50("fairness.loaded.p50", "small pairs' round trip p50, with one bulk pair", "ms");
  Figure busy_p99("fairness.loaded.p99", "small pairs' round trip p99, with one bulk pair", "ms");
  Figure ratio("fairness.p99_ratio", "p99 with bulk / p99 alone", "ratio");
  Figure outside_p99("fairness.outside.p99",
                     "small pairs' round trip p99, with a bulk pair outside the relay", "ms");
  Figure share("fairness.relay_share", "p99 with bulk through the relay / with bulk outside it",
               "ratio");
  Figure outside_rate("fairness.outside_gib_per_s", "the outside bulk pair's throughput meanwhile",
                      "GiB/s");
  Figure bulk_rate("fairness.bulk_gib_per_s", "the bulk pair's throughput meanwhile", "GiB/s");
  Figure samples("fairness.samples", "round trips measured per phase", "count");
  share.target = 1.5;
  for (int r = 0; r < rounds; ++r) {
    auto pairs = open_pairs(ioc, hop, count + 1);
    const Pair bulk_pair = pairs.back();
    pairs.pop_back();
    std::atomic<bool> stop{false};
    std::thread echo([&] { echo_loop(pairs, stop); });
    std::vector<double> alone, loaded, outside;
    double rate = 0, direct_rate = 0;
    // With a bulk pair running on `p`: the small pairs' round trips, and the bulk rate.
    auto with_bulk = [&](Pair p, std::vector<double>& rtts, double& gib_per_s) {
      Bulk bulk;
      bulk.start(p);
      std::this_thread::sleep_for(std::chrono::milliseconds(200));  // let it reach full speed
      const std::uint64_t before = bulk.bytes.load();
      rtts = ping_loop(pairs, seconds, interval);
      gib_per_s =
          static_cast<double>(bulk.bytes.load() - before) / (1024.0 * 1024.0 * 1024.0) / seconds;
      bulk.finish();
    };
    const Pair direct = direct_pair();
    for (int phase = 0; phase < 3; ++phase) {
      switch ((phase + r) % 3) {
        case 0: alone = ping_loop(pairs, seconds, interval); break;
        case 1: with_bulk(bulk_pair, loaded, rate); break;
        default: with_bulk(direct, outside, direct_rate); break;
      }
    }
    ::close(direct.client);
    ::close(direct.echo);
    stop = true;
    echo.join();
    for (const auto& p : pairs) {
      ::close(p.client);
      ::close(p.echo);
    }
    ::close(bulk_pair.client);
    ::close(bulk_pair.echo);
    idle_p50.values.push_back(1e3 * quantile(alone, 0.5));
    idle_p99.values.push_back(1e3 * quantile(alone, 0.99));
    busy_p50.values.push_back(1e3 * quantile(loaded, 0.5));
    busy_p99.values.push_back(1e3 * quantile(loaded, 0.99));
    ratio.values.push_back(quantile(loaded, 0.99) / quantile(alone, 0.99));
    outside_p99.values.push_back(1e3 * quantile(outside, 0.99));
    share.values.push_back(quantile(loaded, 0.99) / quantile(outside, 0.99));
    outside_rate.values.push_back(direct_rate);
    bulk_rate.values.push_back(rate);
    samples.values.push_back(
        static_cast<double>(std::min({alone.size(), loaded.size(), outside.size()})));
    std::fprintf(stderr,
                 "fairness round %d: p99 alone %.3f ms, with bulk %.3f ms (bulk %.2f GiB/s), with "
                 "bulk outside the "
                 "relay %.3f ms (%.2f GiB/s)\n",
                 r + 1, 1e3 * quantile(alone, 0.99), 1e3 * quantile(loaded, 0.99), rate,
                 1e3 * quantile(outside, 0.99), direct_rate);
  }
  const std::vector<Figure> figures{idle_p50,  idle_p99,    busy_p50, busy_p99,     ratio,
                                    bulk_rate, outside_p99, share,    outside_rate, samples};
  json params{{"pairs", count},
              {"seconds", seconds},
              {"interval_ms", interval.count()},
              {"rounds", rounds},
              {"ping_bytes", ping_bytes}};
  std::printf("%s\n", report("fairness", params, figures).dump(1).c_str());
  fs::remove_all(dir);
  return 0;
}
