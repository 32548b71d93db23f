// Bulk forwarding (issue 6, measurement 1): P pairs move BYTES in total through strelay, and
// in the same round through each reference, with the same sender and receiver code:
//
//   direct   the sender connects straight to the receiver (no forwarder: the physical limit)
//   splice   bench/splice_forwarder (splice(2) through a pipe, the target)
//   copy     bench/copy_forwarder (read/write through a 256 KiB buffer)
//   socat    socat -b 262144 (Debian), one forked child per connection
//   strelay  a tunnel: Listen, Connect, Accept, Connected, then the raw sockets
//   strelay_auto  the same through a relay run with --tunnel-socket-buffers auto (the kernel's
//            autotuning): the cost of the clamp (issue 14.5) is strelay / strelay_auto
//   strelay_limited  the same through a relay run with --global-rate LIMIT (issue 20.2): its
//            CPU per GiB against strelay's is the cost of pacing, and its throughput against
//            LIMIT says how closely the limit is kept
//
// Throughput is bytes received / wall time from the first write to the last EOF; the
// forwarder's CPU is utime+stime(+children) from /proc/PID/stat around the transfer, per GiB,
// and the endpoints' CPU is this process's (its sender and receiver threads) the same way. The
// path's CPU is the sum: on loopback the kernel's work for a packet is charged to whichever of
// the three is running, so the forwarder's share alone depends on how it waits (issue 17.1).
//
//   bulk_bench --bin DIR [--bytes 2147483648] [--pairs 1,8,64] [--rounds 5] [--run-limit 120]
//              [--kinds direct,splice,copy,socat,strelay,strelay_auto,strelay_limited]
//              [--limit-rate 536870912] [--write-bytes 262144]
//              [--name bulk]
//
// --write-bytes: each send() and read() of the endpoints (4 MiB and 64 KiB in issue 17).
// --name: the report's name and figure prefix (scripts/bench runs "bulk" and "bulk_small").
//
// Prints one JSON document (bench/harness.hpp) on stdout; progress goes to stderr.
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>

#include "bench/forwarder.hpp"
#include "bench/harness.hpp"
#include "bench/pairing.hpp"
#include "bench/transfer.hpp"

using namespace bench;

namespace {

constexpr double gib = 1024.0 * 1024.0 * 1024.0;
std::vector<std::string> kinds;
std::size_t write_bytes = io_chunk;
std::string name = "bulk";  // the report's name and its figures' prefix (--name)

struct RunResult : Transferred {
  double cpu = 0;       // the forwarder's
  double ends_cpu = 0;  // the senders' and receivers' (this process's threads)
};

struct Setup {
  fs::path bin;
  Hop hop;
  Hop hop_auto;     // the relay with --tunnel-socket-buffers auto
  Hop hop_limited;  // the relay with --global-rate
  int sink_fd = -1;
  std::map<std::string, int> ports;  // forwarder ports; "direct" is the sink itself
  std::map<std::string, pid_t> pids;
  asio::io_context ioc;
};

std::vector<Connection> connect_plain(Setup& s, const std::string& kind, int pairs) {
  // Nothing from an earlier run may still wait in the sink's queue, or pairs would mismatch.
  for (pollfd p{s.sink_fd, POLLIN, 0}; ::poll(&p, 1, 0) > 0;)
    ::close(::accept4(s.sink_fd, nullptr, nullptr, 0));
  std::vector<Connection> conns;
  for (int i = 0; i < pairs; ++i) {
    const int send_fd = connect_to("127.0.0.1", s.ports.at(kind));
    if (send_fd < 0) die("cannot connect to " + kind);
    const int recv_fd = ::accept4(s.sink_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (recv_fd < 0) die("sink accept failed");
    const int one = 1;
    ::setsockopt(recv_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    conns.push_back({send_fd, recv_fd});
  }
  return conns;
}

std::vector<Connection> connect_relay(Setup& s, const Hop& hop, int pairs) {
  const auto listener = Identity::generate();
  const auto connector = Identity::generate();
  auto task = [&]() -> asio::awaitable<std::vector<Connection>> {
    std::optional<Channel> listening;
    if (auto ec = co_await open_listener(hop, source_address(0), listener, listening)) {
      die("listen: " + ec.message());
    }
    std::vector<Connection> conns;
    for (int i = 0; i < pairs; ++i) {
      auto ends = co_await open_tunnel(hop, source_address(static_cast<std::size_t>(i)), connector,
                                       listener, *listening);
      if (ends.error) die("tunnel: " + ends.error.message());
      conns.push_back({take_blocking_fd(*ends.connector), take_blocking_fd(*ends.acceptor)});
    }
    listening->close();
    co_return conns;
  };
  return run_until_done(s.ioc, task());
}

RunResult run_once(Setup& s, const std::string& kind, int pairs, std::uint64_t bytes,
                   double limit) {
  const auto conns = kind == "strelay"           ? connect_relay(s, s.hop, pairs)
                     : kind == "strelay_auto"    ? connect_relay(s, s.hop_auto, pairs)
                     : kind == "strelay_limited" ? connect_relay(s, s.hop_limited, pairs)
                                                 : connect_plain(s, kind, pairs);
  const auto it = s.pids.find(kind);
  const double cpu0 = it == s.pids.end() ? 0 : proc_cpu_seconds(it->second);
  const double ends0 = proc_cpu_seconds(::getpid());
  RunResult r{transfer(conns, bytes / static_cast<std::uint64_t>(pairs), limit, DoneWhen::at_eof,
                       write_bytes)};
  r.ends_cpu = proc_cpu_seconds(::getpid()) - ends0;
  if (it != s.pids.end()) {
    // socat's children are counted once reaped; give its SIGCHLD handler a moment.
    if (kind == "socat") std::this_thread::sleep_for(std::chrono::milliseconds(100));
    r.cpu = proc_cpu_seconds(it->second) - cpu0;
  }
  return r;
}

std::vector<int> parse_list(const std::string& text) {
  std::vector<int> out;
  for (const auto& item : split(text)) out.push_back(std::atoi(item.c_str()));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const Flags flags(argc, argv,
                    {"bin", "bytes", "kinds", "limit-rate", "name", "pairs", "rounds", "run-limit",
                     "write-bytes"});
  strelay::init_crypto();
  ::signal(SIGPIPE, SIG_IGN);
  const auto bytes = static_cast<std::uint64_t>(flags.num("bytes", 2 * gib));
  const auto pair_counts = parse_list(flags.str("pairs", "1,8,64"));
  const int rounds = static_cast<int>(flags.count("rounds", 5));
  const double limit = flags.num("run-limit", 120);
  // --kinds strelay,splice: a subset, for profiling (the ratios need every kind they name).
  const std::string all_kinds = "direct,splice,copy,socat,strelay,strelay_auto,strelay_limited";
  kinds = split(flags.str("kinds", all_kinds));
  for (const auto& kind : kinds) {
    const auto known = split(all_kinds);
    if (std::find(known.begin(), known.end(), kind) == known.end()) {
      usage_error("unknown kind " + kind + " (" + all_kinds + ")");
    }
  }
  const double limit_rate = flags.num("limit-rate", 512.0 * 1024 * 1024);
  write_bytes = static_cast<std::size_t>(flags.count("write-bytes", io_chunk));
  name = flags.str("name", "bulk");
  const auto has = [](const std::string& k) {
    return std::find(kinds.begin(), kinds.end(), k) != kinds.end();
  };
  const auto dir = scratch_dir("bulk");

  Setup s;
  s.bin = flags.str("bin", "build/bin");
  auto relay = start_relay(s.bin, dir);
  s.hop = {relay.endpoint, relay.key};
  s.pids["strelay"] = relay.process.pid();
  const auto dir_auto = dir / "auto";
  auto relay_auto = start_relay(s.bin, dir_auto, {"--tunnel-socket-buffers", "auto"});
  s.hop_auto = {relay_auto.endpoint, relay_auto.key};
  s.pids["strelay_auto"] = relay_auto.process.pid();
  const auto dir_limited = dir / "limited";
  auto relay_limited =
      start_relay(s.bin, dir_limited, {"--global-rate", std::to_string(std::llround(limit_rate))});
  s.hop_limited = {relay_limited.endpoint, relay_limited.key};
  s.pids["strelay_limited"] = relay_limited.process.pid();
  const int sink_port = free_port();
  s.sink_fd = listen_on("127.0.0.1", sink_port);
  s.ports["direct"] = sink_port;
  std::vector<Child> forwarders;
  for (const std::string kind : {"splice", "copy", "socat"}) {
    s.ports[kind] = free_port();
    forwarders.push_back(start_forwarder(kind, s.bin, s.ports[kind], sink_port, dir));
    s.pids[kind] = forwarders.back().pid();
  }

  // results[pairs][kind] = per-round results
  std::map<int, std::map<std::string, std::vector<RunResult>>> results;
  int failures = 0;
  for (int r = 0; r < rounds; ++r) {
    for (int pairs : pair_counts) {
      for (std::size_t k = 0; k < kinds.size(); ++k) {
        // Rotate the order per round, so no kind always runs right after the same neighbour.
        const auto& kind = kinds[(k + static_cast<std::size_t>(r)) % kinds.size()];
        const auto res = run_once(s, kind, pairs, bytes, limit);
        if (!res.ok) ++failures;
        results[pairs][kind].push_back(res);
        std::fprintf(stderr,
                     "bulk round %d pairs %d %-7s %6.3f GiB/s cpu %.3f s/GiB endpoints %.3f "
                     "s/GiB%s\n",
                     r + 1, pairs, kind.c_str(), res.bytes / gib / res.seconds,
                     res.cpu / (res.bytes / gib), res.ends_cpu / (res.bytes / gib),
                     res.ok ? "" : " FAILED");
      }
    }
  }

  std::vector<Figure> figures;
  json table = json::object();
  const std::string writes = write_bytes % (1024 * 1024) == 0
                                 ? std::to_string(write_bytes / (1024 * 1024)) + " MiB writes"
                                 : std::to_string(write_bytes / 1024) + " KiB writes";
  for (int pairs : pair_counts) {
    const std::string p = "p" + std::to_string(pairs);
    for (const auto& kind : kinds) {
      Figure tput{name + "." + p + "." + kind + ".gib_per_s",
                  kind + ", " + std::to_string(pairs) + " pair(s): throughput", "GiB/s"};
      Figure cpu{name + "." + p + "." + kind + ".cpu_s_per_gib",
                 kind + ", " + std::to_string(pairs) + " pair(s): forwarder CPU", "s/GiB"};
      // The endpoints' CPU too: on loopback the kernel's work for one packet falls on whichever
      // process is running (the sender, the forwarder or the receiver), so a forwarder can look
      // cheaper by leaving work to the endpoints; the sum is the path's whole cost.
      Figure ends{name + "." + p + "." + kind + ".ends_cpu_s_per_gib",
                  kind + ", " + std::to_string(pairs) + " pair(s): senders' and receivers' CPU",
                  "s/GiB"};
      Figure path{name + "." + p + "." + kind + ".path_cpu_s_per_gib",
                  kind + ", " + std::to_string(pairs) + " pair(s): forwarder + endpoints CPU",
                  "s/GiB"};
      for (const auto& res : results[pairs][kind]) {
        tput.values.push_back(res.bytes / gib / res.seconds);
        cpu.values.push_back(res.cpu / (res.bytes / gib));
        ends.values.push_back(res.ends_cpu / (res.bytes / gib));
        path.values.push_back((res.cpu + res.ends_cpu) / (res.bytes / gib));
      }
      figures.push_back(tput);
      if (kind != "direct") figures.push_back(cpu);
      figures.push_back(ends);
      if (kind != "direct") figures.push_back(path);
    }
    for (const std::string ref : {"splice", "copy", "socat", "direct", "strelay_auto"}) {
      if (!has("strelay") || !has(ref)) continue;
      Figure tput{
          name + "." + p + ".strelay_vs_" + ref + ".throughput",
          "strelay / " + ref + " throughput, " + std::to_string(pairs) + " pair(s), " + writes,
          "ratio"};
      Figure cpu{
          name + "." + p + ".strelay_vs_" + ref + ".cpu",
          "strelay / " + ref + " CPU per GiB, " + std::to_string(pairs) + " pair(s), " + writes,
          "ratio"};
      Figure path{name + "." + p + ".strelay_vs_" + ref + ".path_cpu",
                  "strelay / " + ref + " forwarder + endpoints CPU per GiB, " +
                      std::to_string(pairs) + " pair(s), " + writes,
                  "ratio"};
      for (int r = 0; r < rounds; ++r) {
        const auto& a = results[pairs]["strelay"][static_cast<std::size_t>(r)];
        const auto& b = results[pairs][ref][static_cast<std::size_t>(r)];
        tput.values.push_back((a.bytes / a.seconds) / (b.bytes / b.seconds));
        if (ref != "direct") cpu.values.push_back((a.cpu / a.bytes) / (b.cpu / b.bytes));
        path.values.push_back(((a.cpu + a.ends_cpu) / a.bytes) / ((b.cpu + b.ends_cpu) / b.bytes));
      }
      if (ref == "strelay_auto") {  // issue 14.5: the clamp may cost at most 5%
        tput.target = 0.95;
        tput.target_is_max = false;
      }
      if (ref == "splice") {  // issue 17.1: what a splice forwarder costs, at every pair count
        tput.target = 0.95;
        tput.target_is_max = false;
        cpu.target = 1.10;
        path.target = 1.10;
      }
      figures.push_back(tput);
      if (ref != "direct") figures.push_back(cpu);
      figures.push_back(path);
    }
  }
  // Pacing: the limited relay's CPU per GiB over the unlimited one's, and its throughput over
  // the limit (bytes per second through all pairs together).
  for (int pairs : pair_counts) {
    if (!has("strelay") || !has("strelay_limited")) break;
    const std::string p = "p" + std::to_string(pairs);
    Figure cpu{name + "." + p + ".limited_vs_strelay.cpu",
               "strelay --global-rate / strelay CPU per GiB, " + std::to_string(pairs) + " pair(s)",
               "ratio"};
    Figure kept{
        name + "." + p + ".limited.throughput_vs_limit",
        "strelay --global-rate: throughput / the limit, " + std::to_string(pairs) + " pair(s)",
        "ratio"};
    for (int r = 0; r < rounds; ++r) {
      const auto& a = results[pairs]["strelay_limited"][static_cast<std::size_t>(r)];
      const auto& b = results[pairs]["strelay"][static_cast<std::size_t>(r)];
      cpu.values.push_back((a.cpu / a.bytes) / (b.cpu / b.bytes));
      kept.values.push_back(a.bytes / a.seconds / limit_rate);
    }
    kept.target = 1.05;  // never above the limit (its 64 KiB-to-50 ms burst aside)
    figures.push_back(cpu);
    figures.push_back(kept);
  }
  // Many pairs: aggregate throughput at the largest pair count over one pair, per round.
  if (pair_counts.size() > 1 && pair_counts.front() == 1 && has("strelay")) {
    const int most = pair_counts.back();
    Figure scale{name + ".strelay.p" + std::to_string(most) + "_vs_p1",
                 "strelay aggregate throughput, " + std::to_string(most) + " pairs / 1 pair",
                 "ratio"};
    for (int r = 0; r < rounds; ++r) {
      const auto& a = results[most]["strelay"][static_cast<std::size_t>(r)];
      const auto& b = results[1]["strelay"][static_cast<std::size_t>(r)];
      scale.values.push_back((a.bytes / a.seconds) / (b.bytes / b.seconds));
    }
    if (most == 64) {
      scale.target = 0.9;
      scale.target_is_max = false;
    }
    figures.push_back(scale);
  }
  json params{{"bytes_per_run", bytes},
              {"pairs", pair_counts},
              {"rounds", rounds},
              {"kinds", kinds},
              {"limit_rate_bytes_per_s", limit_rate},
              {"write_bytes", write_bytes},
              {"failed_runs", failures}};
  std::printf("%s\n", report(name, params, figures).dump(1).c_str());
  ::close(s.sink_fd);
  fs::remove_all(dir);
  return failures == 0 ? 0 : 3;
}
