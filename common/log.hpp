// Structured, rate-limited log lines for strelay and the node tools.
//
// A line is an event name plus typed fields, written as text (logfmt-like key=value pairs)
// or as one JSON object per line:
//
//   ts=2024-05-01T12:00:00.123Z level=info conn=17 key=A6EHv_PO event=listen addr=0.0.0.0:4567
//   {"ts":"2024-05-01T12:00:00.123Z","level":"info","conn":17,"key":"A6EHv_PO","event":"listen",...}
//
// Every line carries `conn` (the connection id; 0 for process-level lines) and, when known, `key`
// (PublicKey::fingerprint(), the first 8 base64url characters).
//
// Secrets: fields are typed, and the only ways to log a key are PublicKey (logged as its
// fingerprint) and strings. There is no overload for Identity, Secret<N>, spans or raw pointers,
// so a seed cannot be logged by accident; the deleted overloads below make the intent explicit.
//
// Rate limiting: each event name has a token bucket (log_rate_per_event, log_burst_per_event in
// protocol.hpp). A suppressed line is counted; the next line of that event that gets through
// carries `suppressed=N`, and flush_suppressed() (called from a timer and at exit, and also run
// opportunistically every log_summary_interval) writes `event=log_suppressed` summary lines, so
// nothing is dropped silently.
//
// Threads: every public member is safe to call from any thread. The level and format are
// atomics; formatting, the buckets and the sink run under one mutex, so lines never interleave.
#pragma once

#include <atomic>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <variant>

#include "common/clock.hpp"
#include "common/keys.hpp"
#include "common/secure.hpp"

namespace strelay {

enum class LogLevel : std::uint8_t { error = 0, warn = 1, info = 2, debug = 3 };
enum class LogFormat : std::uint8_t { text, json };

std::string_view to_string(LogLevel level);
std::string_view to_string(LogFormat format);
// Accept exactly the names to_string gives ("error", "warn", "info", "debug"; "text", "json").
std::optional<LogLevel> parse_log_level(std::string_view text);
std::optional<LogFormat> parse_log_format(std::string_view text);

// One key=value pair. The key should be a short snake_case name from code; characters outside
// [A-Za-z0-9_.-] are replaced by '_' so a key can never break the line format.
class LogField {
 public:
  using Value = std::variant<std::int64_t, std::uint64_t, double, bool, std::string>;

  LogField(std::string_view key, std::string_view value) : key_(key), value_(std::string(value)) {}
  LogField(std::string_view key, const char* value) : LogField(key, std::string_view(value)) {}
  LogField(std::string_view key, const std::string& value)
      : LogField(key, std::string_view(value)) {}
  template <std::signed_integral T>
  requires(!std::same_as<T, bool> && !std::same_as<T, char>) LogField(std::string_view key, T value)
      : key_(key), value_(static_cast<std::int64_t>(value)) {}
  template <std::unsigned_integral T>
  requires(!std::same_as<T, bool>) LogField(std::string_view key, T value)
      : key_(key), value_(static_cast<std::uint64_t>(value)) {}
  template <std::same_as<bool> T>
  LogField(std::string_view key, T value) : key_(key), value_(value) {}
  template <std::floating_point T>
  LogField(std::string_view key, T value) : key_(key), value_(static_cast<double>(value)) {}
  // A duration is logged in whole milliseconds; name the key accordingly (`rtt_ms`).
  template <class Rep, class Period>
  LogField(std::string_view key, std::chrono::duration<Rep, Period> value)
      : key_(key),
        value_(static_cast<std::int64_t>(
            std::chrono::duration_cast<std::chrono::milliseconds>(value).count())) {}
  // A public key is logged as its fingerprint only.
  LogField(std::string_view key, const PublicKey& value) : key_(key), value_(value.fingerprint()) {}
  // An error is logged as its message (what an operator can act on), never as a raw number.
  LogField(std::string_view key, const std::error_code& value)
      : key_(key), value_(value.message()) {}

  // No way to log secret material or unknown bytes.
  LogField(std::string_view, const Identity&) = delete;
  template <std::size_t N>
  LogField(std::string_view, const Secret<N>&) = delete;
  template <class T>
  LogField(std::string_view, const T*) = delete;
  LogField(std::string_view, std::nullptr_t) = delete;

  std::string_view key() const { return key_; }
  const Value& value() const { return value_; }

 private:
  std::string_view key_;  // from code: string literals outlive the call
  Value value_;
};

// Who a line is about. Designated initialisers read well: {.conn = id, .key = pk}.
struct LogTags {
  std::uint64_t conn = 0;          // 0: a process-level line
  std::optional<PublicKey> key{};  // logged as its fingerprint
};

class Logger {
 public:
  // Receives one complete line, ending in '\n'. Called under the logger's mutex.
  using Sink = std::function<void(std::string_view line)>;
  using SteadyClock = SteadyNow;  // common/clock.hpp: the node side's one clock type
  using WallClock = std::function<std::chrono::system_clock::time_point()>;

  struct Options {
    LogFormat format = LogFormat::text;
    LogLevel level = LogLevel::info;
    Sink sink{};               // empty: write to stderr
    SteadyClock steady_now{};  // empty: std::chrono::steady_clock (tests inject a fake clock)
    WallClock wall_now{};      // empty: std::chrono::system_clock (the `ts` field)
  };

  Logger();
  explicit Logger(Options options);
  Logger(const Logger&) = delete;
  Logger& operator=(const Logger&) = delete;

  void set_level(LogLevel level) { level_.store(level, std::memory_order_relaxed); }
  void set_format(LogFormat format) { format_.store(format, std::memory_order_relaxed); }
  LogLevel level() const { return level_.load(std::memory_order_relaxed); }
  LogFormat format() const { return format_.load(std::memory_order_relaxed); }
  bool enabled(LogLevel level) const { return level <= this->level(); }

  void log(LogLevel level, std::string_view event, const LogTags& tags,
           std::initializer_list<LogField> fields = {});
  void error(std::string_view event, const LogTags& tags,
             std::initializer_list<LogField> fields = {}) {
    log(LogLevel::error, event, tags, fields);
  }
  void warn(std::string_view event, const LogTags& tags,
            std::initializer_list<LogField> fields = {}) {
    log(LogLevel::warn, event, tags, fields);
  }
  void info(std::string_view event, const LogTags& tags,
            std::initializer_list<LogField> fields = {}) {
    log(LogLevel::info, event, tags, fields);
  }
  void debug(std::string_view event, const LogTags& tags,
             std::initializer_list<LogField> fields = {}) {
    log(LogLevel::debug, event, tags, fields);
  }

  // Writes one `event=log_suppressed suppressed_event=<name> suppressed=N` line per event
  // that has unreported suppressed lines. Call it from a timer and before exit.
  void flush_suppressed();
  // Lines suppressed since construction, over all events (for a metric).
  std::uint64_t suppressed_total() const {
    return suppressed_total_.load(std::memory_order_relaxed);
  }

 private:
  struct Bucket {
    double tokens = 0;
    std::chrono::steady_clock::time_point refilled{};
    std::uint64_t suppressed = 0;  // since the last line of this event that was written
  };
  using Clock = std::chrono::steady_clock;

  Bucket& bucket_for(std::string_view event);  // under mutex_
  bool take_token(Bucket& bucket, Clock::time_point now);
  void write_line(LogLevel level, std::string_view event, const LogTags& tags,
                  std::initializer_list<LogField> fields, std::uint64_t suppressed);
  void flush_suppressed_locked();

  std::atomic<LogLevel> level_;
  std::atomic<LogFormat> format_;
  std::atomic<std::uint64_t> suppressed_total_{0};
  Sink sink_;
  SteadyClock steady_now_;
  WallClock wall_now_;
  std::mutex mutex_;  // guards everything below, and the sink
  std::map<std::string, Bucket, std::less<>> buckets_;
  Bucket overflow_bucket_;  // shared by event names beyond log_max_events
  Clock::time_point last_summary_{};
};

// The process's logger: stderr, text, info until main configures it with set_format/set_level.
Logger& process_logger();

}  // namespace strelay
