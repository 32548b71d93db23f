#include "common/log.hpp"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>

#include "common/protocol.hpp"

namespace strelay {
namespace {

constexpr std::string_view level_names[] = {"error", "warn", "info", "debug"};

// 2024-05-01T12:00:00.123Z: UTC with milliseconds, sortable, what log shippers expect.
std::string format_timestamp(std::chrono::system_clock::time_point when) {
  const auto ms = std::chrono::time_point_cast<std::chrono::milliseconds>(when);
  const std::time_t seconds = std::chrono::system_clock::to_time_t(ms);
  const auto millis = static_cast<int>((ms.time_since_epoch() % std::chrono::seconds(1)).count());
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char buf[40];
  const auto n = std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                               utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour,
                               utc.tm_min, utc.tm_sec, millis < 0 ? 0 : millis);
  return std::string(buf, static_cast<std::size_t>(std::max(n, 0)));
}

// Keys come from code, but a stray space or '=' must still not break the format.
std::string clean_key(std::string_view key) {
  std::string out;
  out.reserve(key.size());
  for (char c : key) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '-';
    out.push_back(ok ? c : '_');
  }
  if (out.empty()) out = "_";
  return out;
}

// Cuts a value to log_max_value_bytes (at a byte boundary; JSON output repairs a split UTF-8
// sequence), so a hostile peer's detail string cannot inflate the logs.
std::string_view capped(std::string_view value, bool& truncated) {
  truncated = value.size() > log_max_value_bytes;
  return truncated ? value.substr(0, log_max_value_bytes) : value;
}

// Text values: bare when they are plain, otherwise quoted with C-like escapes. Every byte
// outside printable ASCII is escaped, so neither a newline nor a terminal escape sequence
// nor a bidi control from a peer's string can forge a line or disturb a terminal.
void append_text_value(std::string& out, std::string_view value) {
  bool truncated = false;
  value = capped(value, truncated);
  const bool bare =
      !value.empty() && !truncated && std::all_of(value.begin(), value.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return u > 0x20 && u < 0x7f && c != '"' && c != '=' && c != '\\';
      });
  if (bare) {
    out += value;
    return;
  }
  out.push_back('"');
  for (char c : value) {
    const auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (u < 0x20 || u >= 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(u));
          out += buf;
        } else {
          out.push_back(c);
        }
    }
  }
  if (truncated) out += "...";
  out.push_back('"');
}

void append_text_field(std::string& out, std::string_view key, const LogField::Value& value) {
  out.push_back(' ');
  out += clean_key(key);
  out.push_back('=');
  std::visit(
      [&out](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) {
          append_text_value(out, v);
        } else if constexpr (std::is_same_v<T, bool>) {
          out += v ? "true" : "false";
        } else if constexpr (std::is_same_v<T, double>) {
          char buf[32];
          std::snprintf(buf, sizeof buf, "%.6g", v);
          out += buf;
        } else {
          out += std::to_string(v);
        }
      },
      value);
}

nlohmann::ordered_json json_value(const LogField::Value& value) {
  return std::visit(
      [](const auto& v) -> nlohmann::ordered_json {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) {
          bool truncated = false;
          std::string s(capped(v, truncated));
          if (truncated) s += "...";
          return s;
        } else {
          return v;
        }
      },
      value);
}

void write_stderr(std::string_view line) {
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace

std::string_view to_string(LogLevel level) {
  return level_names[static_cast<std::size_t>(level)];
}

std::string_view to_string(LogFormat format) {
  return format == LogFormat::json ? "json" : "text";
}

std::optional<LogLevel> parse_log_level(std::string_view text) {
  for (std::size_t i = 0; i < std::size(level_names); ++i) {
    if (text == level_names[i]) return static_cast<LogLevel>(i);
  }
  return std::nullopt;
}

std::optional<LogFormat> parse_log_format(std::string_view text) {
  if (text == "text") return LogFormat::text;
  if (text == "json") return LogFormat::json;
  return std::nullopt;
}

Logger::Logger() : Logger(Options{}) {}

Logger::Logger(Options options)
    : level_(options.level),
      format_(options.format),
      sink_(options.sink ? std::move(options.sink) : Sink(write_stderr)),
      steady_now_(options.steady_now ? std::move(options.steady_now) : SteadyClock([] {
        return std::chrono::steady_clock::now();
      })),
      wall_now_(options.wall_now ? std::move(options.wall_now)
                                 : WallClock([] { return std::chrono::system_clock::now(); })) {
  last_summary_ = steady_now_();
  overflow_bucket_.tokens = log_burst_per_event;
  overflow_bucket_.refilled = last_summary_;
}

Logger::Bucket& Logger::bucket_for(std::string_view event) {
  if (auto it = buckets_.find(event); it != buckets_.end()) return it->second;
  if (buckets_.size() >= log_max_events) return overflow_bucket_;
  Bucket fresh;
  fresh.tokens = log_burst_per_event;
  fresh.refilled = steady_now_();
  return buckets_.emplace(std::string(event), fresh).first->second;
}

bool Logger::take_token(Bucket& bucket, Clock::time_point now) {
  if (now > bucket.refilled) {
    const std::chrono::duration<double> elapsed = now - bucket.refilled;
    bucket.tokens =
        std::min(log_burst_per_event, bucket.tokens + elapsed.count() * log_rate_per_event);
    bucket.refilled = now;
  }
  if (bucket.tokens < 1.0) return false;
  bucket.tokens -= 1.0;
  return true;
}

void Logger::log(LogLevel level, std::string_view event, const LogTags& tags,
                 std::initializer_list<LogField> fields) {
  if (!enabled(level)) return;
  std::lock_guard lock(mutex_);
  const auto now = steady_now_();
  Bucket& bucket = bucket_for(event);
  if (take_token(bucket, now)) {
    write_line(level, event, tags, fields, std::exchange(bucket.suppressed, 0));
  } else {
    ++bucket.suppressed;
    suppressed_total_.fetch_add(1, std::memory_order_relaxed);
  }
  if (now - last_summary_ >= log_summary_interval) flush_suppressed_locked();
}

void Logger::flush_suppressed() {
  std::lock_guard lock(mutex_);
  flush_suppressed_locked();
}

void Logger::flush_suppressed_locked() {
  last_summary_ = steady_now_();
  auto report = [this](std::string_view event, Bucket& bucket) {
    if (bucket.suppressed == 0) return;
    const auto n = std::exchange(bucket.suppressed, 0);
    write_line(LogLevel::warn, "log_suppressed", {}, {{"suppressed_event", event}}, n);
  };
  for (auto& [event, bucket] : buckets_) report(event, bucket);
  report("other", overflow_bucket_);
}

void Logger::write_line(LogLevel level, std::string_view event, const LogTags& tags,
                        std::initializer_list<LogField> fields, std::uint64_t suppressed) {
  const std::string ts = format_timestamp(wall_now_());
  std::string line;
  if (format() == LogFormat::json) {
    // nlohmann::ordered_json keeps the fixed fields first, as in the text format.
    nlohmann::ordered_json j;
    j["ts"] = ts;
    j["level"] = to_string(level);
    j["conn"] = tags.conn;
    if (tags.key) j["key"] = tags.key->fingerprint();
    j["event"] = event;
    for (const auto& field : fields) j[clean_key(field.key())] = json_value(field.value());
    if (suppressed > 0) j["suppressed"] = suppressed;
    // Invalid UTF-8 from a peer becomes U+FFFD instead of an exception.
    line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } else {
    line = "ts=" + ts + " level=" + std::string(to_string(level)) +
           " conn=" + std::to_string(tags.conn);
    if (tags.key) line += " key=" + tags.key->fingerprint();
    line += " event=";
    append_text_value(line, event);
    for (const auto& field : fields) append_text_field(line, field.key(), field.value());
    if (suppressed > 0) line += " suppressed=" + std::to_string(suppressed);
  }
  line.push_back('\n');
  sink_(line);
}

Logger& process_logger() {
  static Logger logger;
  return logger;
}

}  // namespace strelay
