#include "session.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <cstdio>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <vector>

#include "common/coro.hpp"
#include "common/wakeup.hpp"

extern char** environ;

namespace strelay::stcat {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

std::error_code last_errno() {
  return {errno, std::generic_category()};
}

asio::awaitable<void> sleep_for(Clock::duration d) {
  asio::steady_timer timer(co_await asio::this_coro::executor, d);
  co_await timer.async_wait(await_tuple);
}

}  // namespace

std::string format_bytes(double bytes) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int unit = 0;
  while (bytes >= 1024 && unit < 4) {
    bytes /= 1024;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof text, unit == 0 ? "%.0f %s" : "%.1f %s", bytes, units[unit]);
  return text;
}

// ---------------------------------------------------------------- LocalFd

LocalFd::LocalFd(const asio::any_io_executor& executor, int fd, bool own) : fd_(fd), own_(own) {
  asio::posix::stream_descriptor descriptor(executor);
  boost::system::error_code ec;
  descriptor.assign(fd, ec);  // epoll refuses regular files and /dev/null: blocking I/O then
  if (!ec) async_.emplace(std::move(descriptor));
}

LocalFd::~LocalFd() {
  if (async_ && !own_) {
    // Asio made the descriptor non-blocking; stdin and stdout are shared with the shell.
    boost::system::error_code ignored;
    async_->native_non_blocking(false, ignored);
    async_->release();
  } else if (async_) {
    boost::system::error_code ignored;
    async_->close(ignored);
  } else if (own_ && fd_ >= 0) {
    ::close(fd_);
  }
}

asio::awaitable<std::pair<std::error_code, std::size_t>> LocalFd::read_some(
    std::span<std::uint8_t> out) {
  if (async_) {
    auto [ec, n] =
        co_await async_->async_read_some(asio::buffer(out.data(), out.size()), await_tuple);
    if (ec == asio::error::eof) co_return std::pair{std::error_code{}, std::size_t{0}};
    co_return std::pair{std::error_code(ec), n};
  }
  for (;;) {
    const ssize_t n = ::read(fd_, out.data(), out.size());
    if (n >= 0) co_return std::pair{std::error_code{}, static_cast<std::size_t>(n)};
    if (errno != EINTR) co_return std::pair{last_errno(), std::size_t{0}};
  }
}

asio::awaitable<std::error_code> LocalFd::write_all(std::span<const std::uint8_t> bytes) {
  if (async_) {
    auto [ec, n] =
        co_await asio::async_write(*async_, asio::buffer(bytes.data(), bytes.size()), await_tuple);
    co_return std::error_code(ec);
  }
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd_, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) co_return last_errno();
    bytes = bytes.subspan(static_cast<std::size_t>(n));
  }
  co_return std::error_code{};
}

void LocalFd::cancel() {
  boost::system::error_code ignored;
  if (async_) async_->cancel(ignored);
}

void LocalFd::close() {
  if (fd_ < 0) return;
  if (own_) {
    boost::system::error_code ignored;
    if (async_)
      async_->close(ignored);
    else
      ::close(fd_);
  } else {
    if (async_) {
      boost::system::error_code ignored;
      async_->native_non_blocking(false, ignored);
      async_->release();
    }
    // Replaces the descriptor atomically: its reader sees end of file, and the number stays
    // taken, so nothing else can end up writing to it as "stdout".
    const int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
      ::dup2(null, fd_);
      ::close(null);
    }
  }
  async_.reset();
  fd_ = -1;
}

// ---------------------------------------------------------------- Child

Child::Child(const asio::any_io_executor& executor, const std::string& command) {
  int to_child[2];    // we write [1], the child reads [0] as its stdin
  int from_child[2];  // the child writes [1] as its stdout, we read [0]
  if (::pipe2(to_child, O_CLOEXEC) != 0) throw std::runtime_error("--exec: pipe failed");
  if (::pipe2(from_child, O_CLOEXEC) != 0) {
    ::close(to_child[0]);
    ::close(to_child[1]);
    throw std::runtime_error("--exec: pipe failed");
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, to_child[0], 0);  // dup2 clears close-on-exec
  posix_spawn_file_actions_adddup2(&actions, from_child[1], 1);
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);  // we ignore SIGPIPE; the command gets the usual behaviour
  posix_spawnattr_setsigdefault(&attributes, &defaults);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGDEF);
  std::string sh = "/bin/sh", dash_c = "-c", text = command;
  char* argv[] = {sh.data(), dash_c.data(), text.data(), nullptr};
  const int error = ::posix_spawn(&pid_, "/bin/sh", &actions, &attributes, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  ::close(to_child[0]);
  ::close(from_child[1]);
  if (error != 0) {
    ::close(to_child[1]);
    ::close(from_child[0]);
    pid_ = -1;
    throw std::runtime_error("--exec: cannot start /bin/sh: " +
                             std::error_code(error, std::generic_category()).message());
  }
  input_.emplace(executor, to_child[1], true);
  output_.emplace(executor, from_child[0], true);
}

Child::~Child() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

asio::awaitable<int> Child::wait(std::chrono::milliseconds limit) {
  if (pid_ <= 0) co_return -1;
  const auto until = Clock::now() + limit;
  int status = 0;
  while (::waitpid(pid_, &status, WNOHANG) == 0) {
    if (Clock::now() >= until) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      break;
    }
    co_await sleep_for(std::chrono::milliseconds(20));
  }
  pid_ = -1;
  co_return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// ---------------------------------------------------------------- progress

Clock::duration ProgressLine::interval() const {
  return mode_ == ProgressMode::terminal ? std::chrono::seconds(1) : std::chrono::seconds(5);
}

void ProgressLine::show(const std::string& text, bool moved) {
  if (mode_ == ProgressMode::lines) {
    if (moved) std::cerr << text << std::endl;
    return;
  }
  if (mode_ != ProgressMode::terminal || text == drawn_) return;
  // Carriage return, the text, erase to the end of the line: the cursor stays on the line.
  std::cerr << "\r" << text << "\x1b[K" << std::flush;
  drawn_ = text;
}

void ProgressLine::erase() {
  if (drawn_.empty()) return;
  std::cerr << "\r\x1b[K" << std::flush;
  drawn_.clear();
}

// ---------------------------------------------------------------- the session

namespace {

std::string format_rate(std::uint64_t bytes, Clock::duration over) {
  const double seconds = std::chrono::duration<double>(over).count();
  return format_bytes(seconds > 0 ? static_cast<double>(bytes) / seconds : 0) + "/s";
}

std::string format_rtt(const StreamStats& stats) {
  if (!stats.rtt) return "rtt ?";
  char text[32];
  std::snprintf(text, sizeof text, "rtt %.1f ms",
                std::chrono::duration<double, std::milli>(*stats.rtt).count());
  return text;
}

std::string progress_text(const StreamStats& stats, const StreamStats& last, Clock::duration over) {
  return "stcat: sent " + format_bytes(static_cast<double>(stats.bytes_sent)) + " (" +
         format_rate(stats.bytes_sent - last.bytes_sent, over) + "), received " +
         format_bytes(static_cast<double>(stats.bytes_received)) + " (" +
         format_rate(stats.bytes_received - last.bytes_received, over) + "), " + format_rtt(stats);
}

// Progress on stderr every interval: on a terminal one line redrawn in place, elsewhere (a
// file, a pipe, journald) a line per interval in which bytes moved, so an idle session is quiet.
// `done` is shared: this coroutine may wake after the session (and its stream) are gone.
asio::awaitable<void> report_progress(Stream& stream, ProgressLine& line,
                                      std::shared_ptr<const bool> done) {
  StreamStats last = stream.stats();
  auto last_at = Clock::now();
  while (!*done) {
    co_await sleep_for(line.interval());
    if (*done) break;
    stream.ping();
    const auto now = Clock::now();
    const auto stats = stream.stats();
    const bool moved =
        stats.bytes_sent != last.bytes_sent || stats.bytes_received != last.bytes_received;
    line.show(progress_text(stats, last, now - last_at), moved);
    last = stats;
    last_at = now;
  }
}

}  // namespace

asio::awaitable<SessionOutcome> run_session(Stream& stream, LocalFd& source, LocalFd& sink,
                                            SessionOptions options) {
  auto executor = co_await asio::this_coro::executor;
  SessionOutcome out;
  Wakeup wake(executor);
  ProgressLine progress(options.progress);
  int running = 2;
  bool up_done = false, down_done = false, failed = false;
  auto finished = std::make_shared<bool>(false);
  auto fail_stream = [&](std::error_code e) {
    if (!out.stream_error) out.stream_error = e;
    failed = true;
  };
  auto fail_local = [&](std::error_code e) {
    if (!out.local_error) out.local_error = e;
    failed = true;
  };

  // Our source to the peer; its end of file becomes the stream's end of data.
  auto up = [&]() -> asio::awaitable<void> {
    std::vector<std::uint8_t> buffer(Stream::max_frame_data);
    for (;;) {
      auto [ec, n] = co_await source.read_some(buffer);
      if (ec) {
        if (ec != std::errc::operation_canceled) fail_local(ec);
        co_return;
      }
      if (n == 0) {
        if (auto e = co_await stream.shutdown_send())
          fail_stream(e);
        else
          up_done = true;
        co_return;
      }
      if (auto e = co_await stream.write(std::span(buffer.data(), n))) {
        fail_stream(e);
        co_return;
      }
    }
  };
  // The peer to our sink; the peer's end of data closes the sink.
  auto down = [&]() -> asio::awaitable<void> {
    std::vector<std::uint8_t> buffer(Stream::max_frame_data);
    bool discarding = false;
    for (;;) {
      const auto r = co_await stream.read_some(buffer);
      if (r.error) {
        fail_stream(r.error);
        co_return;
      }
      if (r.eof()) {
        if (options.close_sink_at_eof) sink.close();
        down_done = true;
        co_return;
      }
      if (discarding) continue;
      if (options.sink_is_terminal) progress.erase();  // the peer's text, not over our line
      if (auto e = co_await sink.write_all(std::span(buffer.data(), r.bytes))) {
        if (!options.sink_may_refuse) {
          fail_local(e);
          co_return;
        }
        discarding = true;  // the command stopped reading: the rest is not for anyone
      }
    }
  };
  auto finished_one = [&](std::exception_ptr error) {
    --running;
    wake.notify();
    rethrow(error);
  };
  asio::co_spawn(executor, up(), finished_one);
  asio::co_spawn(executor, down(), finished_one);
  if (options.progress != ProgressMode::off)
    asio::co_spawn(executor, report_progress(stream, progress, finished), rethrow);

  const auto started = Clock::now();
  while (running > 0 && !failed) co_await wake.wait();
  // On a failure, the other direction is told to stop: our source's read is cancelled, and
  // the close ends any read or write pending on the stream.
  if (failed) source.cancel();
  const auto closed =
      co_await stream.close(CloseReason::normal, out.local_error ? "local input/output error" : "");
  while (running > 0) co_await wake.wait();
  *finished = true;
  if (!out.stream_error && !(up_done && down_done)) out.stream_error = closed;
  // A write or read that found the stream closed says only that; the outcome says why (the
  // peer's close reason: protocol_error when it found our data tampered with).
  if (out.stream_error == errc::channel_closed && closed) out.stream_error = closed;
  if (!out.stream_error && !out.local_error && closed) out.stream_error = closed;

  const auto stats = stream.stats();
  out.sent = stats.bytes_sent;
  out.received = stats.bytes_received;
  progress.erase();
  if (options.summary) {
    const auto took = Clock::now() - started;
    std::cerr << "stcat: done: sent " << format_bytes(static_cast<double>(out.sent)) << " ("
              << format_rate(out.sent, took) << "), received "
              << format_bytes(static_cast<double>(out.received)) << " ("
              << format_rate(out.received, took) << ") in "
              << std::chrono::duration<double>(took).count() << " s, " << format_rtt(stats)
              << std::endl;
  }
  co_return out;
}

}  // namespace strelay::stcat
