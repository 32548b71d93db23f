// One stcat session: the bytes between a local source and sink (stdin and stdout, or a child
// process's pipes) and an end-to-end Stream, like nc.
//
//   local source --(read)--> stream.write ... source EOF  -> stream.shutdown_send()
//   stream.read_some --(write)--> local sink ... peer EOF -> the sink is closed
//
// The session ends when both directions are done (exit code 0), or at the first error of
// either: the other direction is then cancelled, and the stream is closed.
#pragma once

#include <sys/types.h>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <utility>

#include "common/stream.hpp"

namespace strelay::stcat {

// A local file descriptor read or written by a session. Pipes, terminals and sockets are driven
// asynchronously; what epoll refuses (regular files, /dev/null) is read and written with plain
// blocking calls, which return at once for such files.
class LocalFd {
 public:
  // `own`: close the descriptor when done; otherwise (stdin, stdout) it is replaced by
  // /dev/null when closed, so the number is never reused by an unrelated socket.
  LocalFd(const boost::asio::any_io_executor& executor, int fd, bool own);
  ~LocalFd();
  LocalFd(const LocalFd&) = delete;
  LocalFd& operator=(const LocalFd&) = delete;

  // 0 bytes and no error at end of file.
  boost::asio::awaitable<std::pair<std::error_code, std::size_t>> read_some(
      std::span<std::uint8_t> out);
  boost::asio::awaitable<std::error_code> write_all(std::span<const std::uint8_t> bytes);
  // Ends a pending asynchronous read with operation_canceled.
  void cancel();
  // The reader of a sink sees end of file.
  void close();

 private:
  std::optional<boost::asio::posix::stream_descriptor> async_;
  int fd_ = -1;
  bool own_ = false;
};

// A command run with `/bin/sh -c` whose stdin and stdout are pipes to us (stderr is ours).
class Child {
 public:
  // Throws std::runtime_error when the command cannot be started.
  Child(const boost::asio::any_io_executor& executor, const std::string& command);
  ~Child();  // kills the child if it is still running
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  LocalFd& output() { return *output_; }  // the child's stdout: our source
  LocalFd& input() { return *input_; }    // the child's stdin: our sink
  // Waits up to `limit` for the child to exit (then kills it); its exit status, or -1.
  boost::asio::awaitable<int> wait(std::chrono::milliseconds limit);

 private:
  pid_t pid_ = -1;
  std::optional<LocalFd> output_;
  std::optional<LocalFd> input_;
};

// -v's progress report on stderr.
enum class ProgressMode {
  off,
  terminal,  // stderr is a terminal: one line, redrawn in place every second
  lines,     // a file, a pipe or journald: a line every 5 s in which bytes moved
};

// Draws the progress report; erase() takes a terminal's line away (before the peer's text is
// written to the same terminal, and before the summary).
class ProgressLine {
 public:
  explicit ProgressLine(ProgressMode mode) : mode_(mode) {}
  std::chrono::steady_clock::duration interval() const;
  // `moved`: bytes went either way since the last report (an idle session is not reported).
  void show(const std::string& text, bool moved);
  void erase();

 private:
  ProgressMode mode_;
  std::string drawn_;  // what the terminal shows now; empty when nothing is drawn
};

struct SessionOptions {
  // For --exec: a command that stops reading is not an error; the rest of the peer's data is
  // discarded.
  bool sink_may_refuse = false;
  // The peer's end of data closes our sink (stdout, or the command's stdin). Off for
  // --keep-listening on stdout, which later sessions still write to.
  bool close_sink_at_eof = true;
  // -v: the progress report, and a summary at the end.
  ProgressMode progress = ProgressMode::off;
  bool summary = false;
  // The sink is the terminal the progress line is drawn on: the line is erased before the
  // peer's bytes are written, so they never land in the middle of it.
  bool sink_is_terminal = false;
};

struct SessionOutcome {
  std::error_code stream_error;  // what ended the stream, if not a clean end
  std::error_code local_error;   // reading our source or writing our sink failed
  std::uint64_t sent = 0;
  std::uint64_t received = 0;
};

// Runs a session on `stream` until both directions are done or one fails, then closes the
// stream.
boost::asio::awaitable<SessionOutcome> run_session(Stream& stream, LocalFd& source, LocalFd& sink,
                                                   SessionOptions options);

// "12.3 MiB"
std::string format_bytes(double bytes);

}  // namespace strelay::stcat
