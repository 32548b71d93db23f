// Shared plumbing of the issue-6 benchmarks (bulk_bench, setup_bench, handshake_bench,
// idle_bench, fairness_bench): child processes and their /proc figures, a strelay started for
// benchmarking, statistics, and the JSON each benchmark prints.
//
// Every benchmark runs in rounds. A round measures strelay AND its references back to back, so
// a ratio is always taken between figures from the same minute of a shared, noisy machine.
// A figure is the median over the rounds, with min and max (Figure below).
//
// Header-only: bench/CMakeLists.txt builds every bench/*.cpp as its own program.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "common/identity_file.hpp"
#include "common/keys.hpp"
#include "common/tickets.hpp"

extern char** environ;

namespace bench {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

inline double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

[[noreturn]] inline void die(const std::string& why) {
  std::fprintf(stderr, "bench: %s\n", why.c_str());
  std::exit(1);
}
// A usage error (an unknown flag, a flag without its value, an unknown kind): exit 2, as every
// program of the project does.
[[noreturn]] inline void usage_error(const std::string& why) {
  std::fprintf(stderr, "bench: %s\n", why.c_str());
  std::exit(2);
}

// ---------------------------------------------------------------- flags

// `--name value` pairs; every benchmark takes --bin (the directory of strelay and the
// forwarders) and --rounds.
class Flags {
 public:
  // `known`: the flags this benchmark reads (without the dashes); any other is a usage error,
  // so a mistyped flag never runs a long benchmark with a default in its place.
  Flags(int argc, char** argv, std::initializer_list<std::string_view> known) {
    for (int i = 1; i < argc; i += 2) {
      const std::string name = argv[i];
      if (name.rfind("--", 0) != 0) usage_error("unexpected argument " + name);
      if (std::find(known.begin(), known.end(), std::string_view(name).substr(2)) == known.end()) {
        usage_error("unknown flag " + name);
      }
      if (i + 1 >= argc) usage_error(name + " needs a value");
      values_[name.substr(2)] = argv[i + 1];
    }
  }
  std::string str(const std::string& name, const std::string& fallback) const {
    const auto it = values_.find(name);
    return it == values_.end() ? fallback : it->second;
  }
  double num(const std::string& name, double fallback) const {
    const auto it = values_.find(name);
    return it == values_.end() ? fallback : std::atof(it->second.c_str());
  }
  long count(const std::string& name, long fallback) const {
    const auto it = values_.find(name);
    return it == values_.end() ? fallback : std::atol(it->second.c_str());
  }

 private:
  std::map<std::string, std::string> values_;
};

// "a,b,c" -> {"a", "b", "c"}: the list flags (--kinds, --pairs).
inline std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(item);
  return out;
}

// ---------------------------------------------------------------- statistics

inline double quantile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const auto last = static_cast<double>(values.size() - 1);
  return values[static_cast<std::size_t>(std::clamp(q * last + 0.5, 0.0, last))];
}
inline double median(const std::vector<double>& values) {
  return quantile(values, 0.5);
}

// One reported figure: its value in each round, and an optional target on the median.
struct Figure {
  Figure(std::string id_, std::string label_, std::string unit_)
      : id(std::move(id_)), label(std::move(label_)), unit(std::move(unit_)) {}
  std::string id;     // stable key, e.g. "bulk.p1.strelay.gib_per_s"
  std::string label;  // for the report table
  std::string unit;
  std::vector<double> values;
  std::optional<double> target;
  bool target_is_max = true;  // true: median must be <= target; false: >=
  std::string note;

  json to_json() const {
    json j{{"id", id}, {"label", label}, {"unit", unit}, {"values", values}};
    if (!values.empty()) {
      j["median"] = median(values);
      j["min"] = *std::min_element(values.begin(), values.end());
      j["max"] = *std::max_element(values.begin(), values.end());
    }
    if (target) {
      j["target"] = *target;
      j["target_kind"] = target_is_max ? "<=" : ">=";
      if (!values.empty()) {
        const double m = median(values);
        j["met"] = target_is_max ? m <= *target : m >= *target;
      }
    }
    if (!note.empty()) j["note"] = note;
    return j;
  }
};

// The document a benchmark prints on stdout; scripts/bench stores it under bench/results/.
inline json report(const std::string& name, const json& parameters,
                   const std::vector<Figure>& figures, json extra = json::object()) {
  json out{{"benchmark", name}, {"parameters", parameters}, {"figures", json::array()}};
  for (const auto& f : figures) out["figures"].push_back(f.to_json());
  for (auto& [k, v] : extra.items()) out[k] = v;
  return out;
}

// ---------------------------------------------------------------- processes

// utime + stime + cutime + cstime of `pid`, in seconds (children count once reaped: socat
// forks one child per connection). Readable by root or the same uid even though strelay
// clears its dumpable flag.
inline double proc_cpu_seconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close = text.rfind(')');
  if (close == std::string::npos) die("cannot read /proc/" + std::to_string(pid) + "/stat");
  std::istringstream fields(text.substr(close + 2));
  std::vector<std::string> f;
  std::string word;
  while (fields >> word) f.push_back(word);
  // Fields after the name start at 3 (state); utime is field 14, so index 11 here.
  if (f.size() < 15) die("short /proc stat");
  const double ticks = static_cast<double>(std::stoull(f[11]) + std::stoull(f[12]) +
                                           std::stoull(f[13]) + std::stoull(f[14]));
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// VmRSS of `pid` in KiB.
inline double proc_rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atof(line.c_str() + 6);
  }
  die("no VmRSS for " + std::to_string(pid));
}

// A child process, killed (SIGTERM, then SIGKILL) and reaped when this goes away.
class Child {
 public:
  Child() = default;
  Child(std::vector<std::string> args, const fs::path& log) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    if (posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ) != 0) {
      die("cannot start " + args[0]);
    }
    posix_spawn_file_actions_destroy(&actions);
  }
  Child(Child&& other) noexcept : pid_(std::exchange(other.pid_, -1)) {}
  Child& operator=(Child&& other) noexcept {
    stop();
    pid_ = std::exchange(other.pid_, -1);
    return *this;
  }
  ~Child() { stop(); }
  pid_t pid() const { return pid_; }
  double cpu_seconds() const { return proc_cpu_seconds(pid_); }
  double rss_kib() const { return proc_rss_kib(pid_); }
  // False once the process has exited (it is then reaped, and never signalled again).
  bool alive() {
    if (pid_ > 0 && ::waitpid(pid_, nullptr, WNOHANG) == pid_) pid_ = -1;
    return pid_ > 0;
  }
  // Waits up to `limit` for the process to exit by itself; true if it did.
  bool wait_exit(std::chrono::milliseconds limit) {
    const auto until = Clock::now() + limit;
    while (alive() && Clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return !alive();
  }
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 300; ++i) {  // 3 s, then no more courtesy
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
};

inline std::string read_file(const fs::path& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A port that was free a moment ago on 127.0.0.1 (for the forwarders, which take a port).
inline int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    die("no free port");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

// Waits until a socket listens on 127.0.0.1:port (a forwarder starting up). It reads
// /proc/net/tcp rather than connecting: a probe connection would be forwarded to the sink and
// sit in its accept queue.
inline void wait_listening(int port) {
  char local[32];
  std::snprintf(local, sizeof local, "0100007F:%04X", port);
  for (int i = 0; i < 500; ++i) {
    std::ifstream in("/proc/net/tcp");
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string slot, address, remote, state;
      fields >> slot >> address >> remote >> state;
      if (address == local && state == "0A") return;  // 0A: TCP_LISTEN
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  die("nothing listens on port " + std::to_string(port));
}

// A forwarder listening on 127.0.0.1:port and forwarding to 127.0.0.1:target.
inline Child start_forwarder(const std::string& kind, const fs::path& bin, int port, int target,
                             const fs::path& dir) {
  std::vector<std::string> args;
  if (kind == "socat") {
    args = {"/usr/bin/socat", "-b", "262144",
            "TCP-LISTEN:" + std::to_string(port) +
                ",bind=127.0.0.1,reuseaddr,fork,backlog=1024,nodelay",
            "TCP:127.0.0.1:" + std::to_string(target) + ",nodelay"};
  } else {
    args = {(bin / (kind + "_forwarder")).string(), std::to_string(port), std::to_string(target)};
  }
  Child child(args, dir / (kind + ".log"));
  wait_listening(port);
  return child;
}

// ---------------------------------------------------------------- strelay

// The limits that would throttle a benchmark's own load (all from one client machine) are
// lifted; everything else keeps its default. `extra` adds or overrides flags.
struct RelayUnderTest {
  Child process;
  boost::asio::ip::tcp::endpoint endpoint;
  strelay::PublicKey key;
};

inline RelayUnderTest start_relay(const fs::path& bin, const fs::path& dir,
                                  const std::vector<std::string>& extra = {}) {
  fs::create_directories(dir);
  const auto ident_path = dir / "relay.ident";
  const auto identity = strelay::Identity::generate();
  fs::remove(ident_path);
  strelay::write_identity(ident_path, identity, strelay::Overwrite::replace);
  const auto log = dir / "strelay.log";
  std::vector<std::string> args{(bin / "strelay").string(),
                                "--idfile",
                                ident_path.string(),
                                "--laddr",
                                "127.0.0.1:0",
                                "--log-level",
                                "warn",
                                "--max-pending-handshakes",
                                "100000",
                                "--max-pending-per-source",
                                "100000",
                                "--handshake-rate",
                                "1000000",
                                "--handshake-burst",
                                "1000000",
                                "--connect-rate",
                                "1000000",
                                "--connect-burst",
                                "1000000"};
  args.insert(args.end(), extra.begin(), extra.end());
  RelayUnderTest relay{Child(args, log), {}, identity.public_key()};
  const std::regex listening("listening on 127\\.0\\.0\\.1:([0-9]+)");
  for (int i = 0; i < 1000; ++i) {
    std::smatch match;
    const auto text = read_file(log);
    if (std::regex_search(text, match, listening)) {
      relay.endpoint = {boost::asio::ip::address_v4::loopback(),
                        static_cast<unsigned short>(std::stoi(match[1]))};
      return relay;
    }
    if (!relay.process.alive()) die("strelay exited at start: " + text);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  die("strelay printed no start-up line");
}

// The bench's scratch directory (identity files, logs): one per benchmark process.
inline fs::path scratch_dir(const std::string& name) {
  const auto dir =
      fs::temp_directory_path() / ("strelay-bench-" + name + "-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir;
}

}  // namespace bench
