// netem_tun: a userspace network impairer between two TUN devices, for scripts/netns-test on
// kernels without sch_netem.
//
// It creates two TUN devices (IFF_TUN, no packet info) in its own network namespace; the script
// moves each into a namespace and gives them addresses, so that they form one point-to-point
// link. Every IP packet read from one device is written to the other after the impairments of
// the control file, in both directions alike (as netem on both ends of a veth pair):
//
//   delay_ms N      base one-way delay
//   jitter_ms N     uniform in [-N, +N] around the delay (reorders, as netem's jitter does)
//   loss_pct P      share of packets dropped at random
//   reorder_pct P   share of packets sent at once, skipping the delay (netem's "reorder")
//   rate_kbit N     serialisation rate per direction, 0 = unlimited
//   blackhole 0|1   drop everything (100% loss)
//   limit N         packets queued per direction beyond which new ones are dropped (1000)
//
// The file is read at start and again on SIGHUP. SIGUSR1 prints the counters to stderr; SIGINT
// and SIGTERM print them and exit 0. One thread, one poll loop; packets wait in a queue ordered
// by release time.
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <queue>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Impairment {
  double delay_ms = 0, jitter_ms = 0, loss_pct = 0, reorder_pct = 0, rate_kbit = 0;
  bool blackhole = false;
  std::size_t limit = 1000;
};

struct Counters {
  std::uint64_t forwarded = 0, lost = 0, blackholed = 0, overflowed = 0, reordered = 0;
};

struct Packet {
  Clock::time_point release;
  std::uint64_t seq;
  int to;  // 0 or 1: the device it goes out on
  std::vector<std::uint8_t> bytes;
  bool operator>(const Packet& o) const {
    return release != o.release ? release > o.release : seq > o.seq;
  }
};

int open_tun(const std::string& name) {
  const int fd = ::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    std::perror("netem_tun: /dev/net/tun");
    return -1;
  }
  ifreq request{};
  request.ifr_flags = IFF_TUN | IFF_NO_PI;
  std::snprintf(request.ifr_name, IFNAMSIZ, "%s", name.c_str());
  if (::ioctl(fd, TUNSETIFF, &request) < 0) {
    std::perror(("netem_tun: TUNSETIFF " + name).c_str());
    ::close(fd);
    return -1;
  }
  return fd;
}

bool read_control(const std::string& path, Impairment& out) {
  std::ifstream in(path);
  if (!in) return false;
  Impairment next;
  std::string key;
  double value = 0;
  while (in >> key >> value) {
    if (key == "delay_ms")
      next.delay_ms = value;
    else if (key == "jitter_ms")
      next.jitter_ms = value;
    else if (key == "loss_pct")
      next.loss_pct = value;
    else if (key == "reorder_pct")
      next.reorder_pct = value;
    else if (key == "rate_kbit")
      next.rate_kbit = value;
    else if (key == "blackhole")
      next.blackhole = value != 0;
    else if (key == "limit")
      next.limit = static_cast<std::size_t>(std::max(1.0, value));
    else
      std::cerr << "netem_tun: unknown control key " << key << '\n';
  }
  out = next;
  return true;
}

void print(const Counters& c, const Impairment& i) {
  std::cerr << "netem_tun: forwarded " << c.forwarded << ", lost " << c.lost << ", blackholed "
            << c.blackholed << ", queue overflow " << c.overflowed << ", reordered " << c.reordered
            << " (delay " << i.delay_ms << "+-" << i.jitter_ms << " ms, loss " << i.loss_pct
            << "%, reorder " << i.reorder_pct << "%, rate " << i.rate_kbit << " kbit, blackhole "
            << i.blackhole << ")" << std::endl;
}

Clock::duration ms(double v) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double, std::milli>(v));
}

class Impairer {
 public:
  Impairer(std::array<int, 2> fds, std::string control) : fds_(fds), control_(std::move(control)) {
    read_control(control_, impairment_);
  }
  int run(int signals);

 private:
  void take(int from, std::vector<std::uint8_t> bytes);
  void release_due();
  int poll_timeout() const;
  bool handle_signal(int signals);

  std::array<int, 2> fds_;
  std::string control_;
  Impairment impairment_;
  Counters counters_;
  std::mt19937_64 rng_{std::random_device{}()};
  std::priority_queue<Packet, std::vector<Packet>, std::greater<>> queue_;
  std::array<std::size_t, 2> queued_{};
  std::array<Clock::time_point, 2> link_free_{};  // when each direction's "wire" is free
  std::uint64_t seq_ = 0;
};

void Impairer::take(int from, std::vector<std::uint8_t> bytes) {
  const int to = 1 - from;
  std::uniform_real_distribution<double> percent(0, 100);
  if (impairment_.blackhole) {
    ++counters_.blackholed;
    return;
  }
  if (percent(rng_) < impairment_.loss_pct) {
    ++counters_.lost;
    return;
  }
  if (queued_[static_cast<std::size_t>(to)] >= impairment_.limit) {
    ++counters_.overflowed;
    return;
  }
  const auto now = Clock::now();
  auto release = now;
  if (impairment_.reorder_pct > 0 && percent(rng_) < impairment_.reorder_pct) {
    ++counters_.reordered;  // goes out at once, ahead of the delayed ones
  } else {
    std::uniform_real_distribution<double> jitter(-impairment_.jitter_ms, impairment_.jitter_ms);
    release += ms(std::max(0.0, impairment_.delay_ms + jitter(rng_)));
  }
  if (impairment_.rate_kbit > 0) {
    auto& free = link_free_[static_cast<std::size_t>(to)];
    release = std::max(release, free);
    free = release + ms(static_cast<double>(bytes.size()) * 8.0 / impairment_.rate_kbit);
  }
  ++queued_[static_cast<std::size_t>(to)];
  queue_.push(Packet{release, seq_++, to, std::move(bytes)});
}

void Impairer::release_due() {
  const auto now = Clock::now();
  while (!queue_.empty() && queue_.top().release <= now) {
    const Packet& p = queue_.top();
    --queued_[static_cast<std::size_t>(p.to)];
    if (::write(fds_[static_cast<std::size_t>(p.to)], p.bytes.data(), p.bytes.size()) > 0)
      ++counters_.forwarded;
    queue_.pop();
  }
}

int Impairer::poll_timeout() const {
  if (queue_.empty()) return -1;
  const auto wait = queue_.top().release - Clock::now();
  const auto whole = std::chrono::ceil<std::chrono::milliseconds>(wait).count();
  return static_cast<int>(std::clamp<long long>(whole, 0, 1000));
}

// False when the program should end.
bool Impairer::handle_signal(int signals) {
  signalfd_siginfo info{};
  while (::read(signals, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
    if (info.ssi_signo == SIGHUP) {
      if (!read_control(control_, impairment_))
        std::cerr << "netem_tun: cannot read " << control_ << '\n';
      print(counters_, impairment_);
    } else if (info.ssi_signo == SIGUSR1) {
      print(counters_, impairment_);
    } else {
      return false;
    }
  }
  return true;
}

int Impairer::run(int signals) {
  std::vector<std::uint8_t> buffer(65536);
  for (;;) {
    std::array<pollfd, 3> fds{{{fds_[0], POLLIN, 0}, {fds_[1], POLLIN, 0}, {signals, POLLIN, 0}}};
    if (::poll(fds.data(), fds.size(), poll_timeout()) < 0 && errno != EINTR) {
      std::perror("netem_tun: poll");
      return 1;
    }
    if (fds[2].revents & POLLIN) {
      if (!handle_signal(signals)) break;
    }
    for (int from = 0; from < 2; ++from) {
      if (fds[static_cast<std::size_t>(from)].revents & (POLLERR | POLLHUP | POLLNVAL)) {
        std::cerr << "netem_tun: a device went away (its namespace deleted?)\n";
        print(counters_, impairment_);
        return 1;
      }
      if (!(fds[static_cast<std::size_t>(from)].revents & POLLIN)) continue;
      for (int i = 0; i < 256; ++i) {  // a bounded batch, then the other device gets its turn
        const ssize_t n =
            ::read(fds_[static_cast<std::size_t>(from)], buffer.data(), buffer.size());
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
          std::perror("netem_tun: read");
          print(counters_, impairment_);
          return 1;
        }
        if (n <= 0) break;
        take(from, std::vector<std::uint8_t>(buffer.begin(), buffer.begin() + n));
      }
    }
    release_due();
  }
  print(counters_, impairment_);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr
        << "usage: netem_tun DEVICE_A DEVICE_B CONTROL_FILE\n"
           "  creates TUN devices DEVICE_A and DEVICE_B and forwards IP packets between them\n"
           "  with the impairments in CONTROL_FILE (re-read on SIGHUP; see the source)\n";
    return 2;
  }
  sigset_t mask;
  sigemptyset(&mask);
  for (int s : {SIGHUP, SIGUSR1, SIGINT, SIGTERM}) sigaddset(&mask, s);
  ::sigprocmask(SIG_BLOCK, &mask, nullptr);
  const int signals = ::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  const int a = open_tun(argv[1]);
  const int b = open_tun(argv[2]);
  if (signals < 0 || a < 0 || b < 0) return 1;
  Impairer impairer({a, b}, argv[3]);
  std::cout << "ready" << std::endl;
  return impairer.run(signals);
}
