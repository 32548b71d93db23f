// Idle scale (issue 6, measurement 4): the relay's resident memory per authenticated idle
// listener: (VmRSS with N listeners - VmRSS of the fresh relay) / N, at each level.
//
// Every listener has its own identity (the relay keeps one listener per key), runs the full
// handshake with Listen and waits for ListenOk, then stays silent. Connections come from
// 127.0.0.2 - 127.0.0.9 so no source runs out of ports. The relay's keepalive is set beyond
// the run (a ping exchange is not idleness). A process may hold at most RLIMIT_NOFILE
// descriptors, so the clients are spread over worker processes (forked before any thread
// starts); the relay itself can hold at most its hard limit, and a level above that is
// measured at the largest count that fits, which the report states.
//
// With --standby 1 each listener also parks a standby connection (issue 17.2), as the node
// library does: the figure is then per listener with its standby.
//
// With --topics N each listener also joins N topics (issue 18), shared by groups of 10
// listeners (so each is introduced to up to 9 others per topic): the figure is then per
// listener with its memberships, and the report is "idle_topics".
//
// Memory given back (issue 17.3): after the last level every listener disconnects at once (the
// workers exit), and the relay's VmRSS is sampled every second for up to --release-seconds:
// the first second at which it is within 2x the idle baseline, and the ratio at the end.
//
//   idle_bench --bin DIR [--levels 1000,10000,20000] [--rounds 5] [--workers 4]
//              [--release-seconds 60] [--standby 1] [--topics N]
#include <sys/resource.h>

#include <list>

#include "bench/harness.hpp"
#include "bench/pairing.hpp"

using namespace bench;

namespace {

// A worker: reads a target count per line from `in`, opens listeners until it holds that
// many, answers "held failed" on `out`. Exits at EOF (closing every connection).
// Joins `count` topics, each shared with the listeners of the same group; true when each join
// was answered TopicJoined (the introductions before each answer are skipped).
asio::awaitable<bool> join_topics(Channel& channel, std::size_t group, long count) {
  for (long j = 0; j < count; ++j) {
    strelay::TopicId topic{};
    std::snprintf(reinterpret_cast<char*>(topic.data()), topic.size(), "g%zu t%ld", group, j);
    const auto bytes = strelay::encode(strelay::NodeMessage{strelay::JoinTopic{topic}});
    if (co_await channel.send(strelay::FrameKind::control, bytes,
                              deadline_in(std::chrono::seconds(5))))
      co_return false;
    for (;;) {
      const auto reply = co_await next_relay_message(channel);
      if (!reply) co_return false;
      if (std::holds_alternative<strelay::TopicJoined>(*reply)) break;
      if (!std::holds_alternative<strelay::Introduction>(*reply)) co_return false;
    }
  }
  co_return true;
}

[[noreturn]] void worker(int in, int out, const Hop& hop, std::size_t index, bool standby,
                         long topics) {
  asio::io_context ioc(1);
  std::list<std::optional<Channel>> held;
  std::list<Identity> identities;
  long failed = 0;
  long listening = 0;  // listeners held (with --standby, held has two channels each)
  FILE* commands = ::fdopen(in, "r");
  long target = 0;
  while (std::fscanf(commands, "%ld", &target) == 1) {
    auto open_more = [&]() -> asio::awaitable<void> {
      auto one = [&](std::size_t n) -> asio::awaitable<void> {
        identities.push_back(Identity::generate());
        std::optional<Channel> channel;
        if (co_await open_listener(hop, source_address(n + index), identities.back(), channel) ||
            (topics > 0 && !co_await join_topics(*channel, index * 1000000 + n / 10, topics))) {
          ++failed;
        } else {
          held.push_back(std::move(channel));
          ++listening;
          if (standby && co_await open_hop(hop, source_address(n + index), identities.back(),
                                           strelay::Standby{}, held.emplace_back()))
            ++failed;
        }
      };
      // Up to 16 handshakes in flight from this worker.
      std::size_t started = static_cast<std::size_t>(listening + failed);
      std::size_t running = 0;
      const auto executor = co_await asio::this_coro::executor;
      asio::steady_timer tick(executor);
      const auto until = Clock::now() + std::chrono::seconds(300);
      while (listening < target && Clock::now() < until && failed < 1000) {
        while (running < 16 && listening + static_cast<long>(running) < target) {
          ++running;
          asio::co_spawn(executor, one(started++), [&running](std::exception_ptr) { --running; });
        }
        tick.expires_after(std::chrono::milliseconds(1));
        co_await tick.async_wait(await_tuple);
      }
      while (running > 0) {
        tick.expires_after(std::chrono::milliseconds(1));
        co_await tick.async_wait(await_tuple);
      }
      co_return;
    };
    ioc.restart();
    asio::co_spawn(ioc, open_more(), [&ioc](std::exception_ptr) { ioc.stop(); });
    ioc.run();
    const auto reply = std::to_string(listening) + " " + std::to_string(failed) + "\n";
    if (::write(out, reply.data(), reply.size()) < 0) break;
  }
  ::_exit(0);
}

struct Worker {
  pid_t pid;
  int to;
  FILE* from;
};

// After the burst: samples `relay`'s VmRSS once a second for `window` seconds. Returns the
// first second at which it was within 2x `base` (window + 1 when never) and the last RSS.
std::pair<double, double> watch_release(Child& relay, double base, int window, int round) {
  double first = window + 1;
  double rss = relay.rss_kib();
  for (int second = 1; second <= window; ++second) {
    std::this_thread::sleep_for(std::chrono::seconds(1));
    rss = relay.rss_kib();
    if (rss <= 2 * base && first > window) first = second;
    if (second % 10 == 0 || second == window) {
      std::fprintf(stderr, "idle round %d: %d s after the burst, RSS %.1f MiB (%.2fx baseline)\n",
                   round, second, rss / 1024, rss / base);
    }
  }
  return {first, rss};
}

std::vector<long> parse_list(const std::string& text) {
  std::vector<long> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(std::atol(item.c_str()));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const Flags flags(argc, argv,
                    {"bin", "levels", "release-seconds", "rounds", "standby", "topics", "workers"});
  strelay::init_crypto();
  ::signal(SIGPIPE, SIG_IGN);
  const auto levels = parse_list(flags.str("levels", "1000,10000,20000"));
  const int rounds = static_cast<int>(flags.count("rounds", 5));
  const auto workers = static_cast<std::size_t>(flags.count("workers", 4));
  const fs::path bin = flags.str("bin", "build/bin");
  const int release_window = static_cast<int>(flags.count("release-seconds", 60));
  const auto dir = scratch_dir("idle");
  rlimit nofile{};
  ::getrlimit(RLIMIT_NOFILE, &nofile);
  // What the relay can hold: its hard limit, less a margin for its own descriptors.
  const bool standby = flags.count("standby", 0) != 0;
  const long topics = flags.count("topics", 0);
  const long relay_cap = (static_cast<long>(nofile.rlim_max) - 64) / (standby ? 2 : 1);

  std::map<long, Figure> per_listener;
  std::map<long, Figure> totals;
  std::map<long, long> effective;
  for (long level : levels) effective[level] = std::min(level, relay_cap);
  const std::string with = standby      ? " (each with its standby)"
                           : topics > 0 ? " (each in " + std::to_string(topics) + " topics)"
                                        : "";
  for (long level : levels) {
    const auto n = std::to_string(level);
    per_listener.emplace(level, Figure("idle.l" + n + ".kib_per_listener",
                                       "RSS per idle listener at " +
                                           std::to_string(effective[level]) + " listeners" + with,
                                       "KiB"));
    totals.emplace(
        level,
        Figure("idle.l" + n + ".rss_delta_mib",
               "relay RSS growth at " + std::to_string(effective[level]) + " listeners", "MiB"));
  }
  long failures = 0;
  Figure baseline("idle.baseline_rss_mib", "relay RSS before any connection", "MiB");
  Figure release_first("idle.release.seconds_to_2x",
                       "seconds after the last level's listeners left until RSS <= 2x baseline (" +
                           std::to_string(release_window + 1) + ": never in the window)",
                       "s");
  Figure release_ratio(
      "idle.release.final_ratio",
      "RSS / baseline " + std::to_string(release_window) + " s after the listeners left", "ratio");
  release_first.target = 60;
  release_ratio.target = 2;
  for (int r = 0; r < rounds; ++r) {
    auto relay =
        start_relay(bin, dir,
                    {"--max-connections", std::to_string(relay_cap * (standby ? 2 : 1)),
                     "--keepalive-interval", "3600", "--dead-peer-timeout", "7200",
                     // 8 source addresses hold them all: lift the per-source caps.
                     "--max-connections-per-source", "1000000", "--max-connections-per-prefix",
                     "1000000", "--max-listeners-per-source", "1000000",
                     // A listener's introductions (9 per topic) stay within its rate.
                     "--introduction-burst", "100000"});
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    const double base = relay.process.rss_kib();
    baseline.values.push_back(base / 1024);
    const Hop hop{relay.endpoint, relay.key};
    std::vector<Worker> pool;
    for (std::size_t w = 0; w < workers; ++w) {
      int down[2], up[2];
      if (::pipe(down) != 0 || ::pipe(up) != 0) die("pipe");
      const pid_t pid = ::fork();
      if (pid == 0) {
        ::close(down[1]);
        ::close(up[0]);
        // Earlier workers' pipe ends would keep their EOF from ever arriving.
        for (auto& other : pool) {
          ::close(other.to);
          std::fclose(other.from);
        }
        worker(down[0], up[1], hop, w, standby, topics);
      }
      ::close(down[0]);
      ::close(up[1]);
      pool.push_back({pid, down[1], ::fdopen(up[0], "r")});
    }
    for (long level : levels) {
      const long count = effective[level];
      for (std::size_t w = 0; w < workers; ++w) {
        const long share = count / static_cast<long>(workers) +
                           (static_cast<long>(w) < count % static_cast<long>(workers) ? 1 : 0);
        const auto line = std::to_string(share) + "\n";
        if (::write(pool[w].to, line.data(), line.size()) < 0) die("worker gone");
      }
      long held = 0;
      for (auto& w : pool) {
        long h = 0, f = 0;
        if (std::fscanf(w.from, "%ld %ld", &h, &f) != 2) die("worker failed");
        held += h;
        failures += f;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(500));  // let the relay settle
      const double rss = relay.process.rss_kib();
      per_listener.at(level).values.push_back((rss - base) / static_cast<double>(held));
      totals.at(level).values.push_back((rss - base) / 1024);
      std::fprintf(stderr, "idle round %d: %ld listeners, RSS %.1f MiB (+%.1f), %.2f KiB each\n",
                   r + 1, held, rss / 1024, (rss - base) / 1024,
                   (rss - base) / static_cast<double>(held));
      if (held != count) {
        ++failures;
        std::fprintf(stderr, "idle: only %ld of %ld listeners held\n", held, count);
      }
    }
    // Every listener leaves at once: each worker exits at EOF, closing its connections.
    for (auto& w : pool) {
      ::close(w.to);
      std::fclose(w.from);
      ::waitpid(w.pid, nullptr, 0);
    }
    if (release_window > 0) {
      const auto [first, rss] = watch_release(relay.process, base, release_window, r + 1);
      release_first.values.push_back(first);
      release_ratio.values.push_back(rss / base);
    }
  }
  std::vector<Figure> figures{baseline};
  if (release_window > 0) {
    figures.push_back(release_first);
    figures.push_back(release_ratio);
  }
  for (long level : levels) {
    if (level == 10000) per_listener.at(level).target = 4.0;  // issue 17.3
    if (effective[level] != level) {
      per_listener.at(level).note = "measured at " + std::to_string(effective[level]) +
                                    ": RLIMIT_NOFILE hard limit " + std::to_string(nofile.rlim_max);
    }
    figures.push_back(per_listener.at(level));
    figures.push_back(totals.at(level));
  }
  json params{{"levels", levels},     {"rounds", rounds},
              {"workers", workers},   {"release_seconds", release_window},
              {"failures", failures}, {"nofile_hard", nofile.rlim_max},
              {"standby", standby},   {"topics", topics}};
  const auto kind = topics > 0 ? "idle_topics" : standby ? "idle_standby" : "idle";
  std::printf("%s\n", report(kind, params, figures).dump(1).c_str());
  fs::remove_all(dir);
  return failures == 0 ? 0 : 3;
}
