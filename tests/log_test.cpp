// Tests for common/log: line formats, escaping, rate limiting and thread safety.
#include "common/log.hpp"

#include <doctest/doctest.h>

#include <array>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/errors.hpp"
#include "common/keys.hpp"

using namespace strelay;
using namespace std::chrono_literals;

namespace {

// Collects lines and lets a test drive the steady clock by hand.
struct Capture {
  std::vector<std::string> lines;
  std::chrono::steady_clock::time_point now{};

  Logger::Options options(LogFormat format, LogLevel level = LogLevel::debug) {
    Logger::Options o;
    o.format = format;
    o.level = level;
    o.sink = [this](std::string_view line) { lines.emplace_back(line); };
    o.steady_now = [this] { return now; };
    o.wall_now = [] { return std::chrono::system_clock::time_point(1714564800123ms); };
    return o;
  }
};

PublicKey key_from_seed_0_to_31() {
  std::array<std::uint8_t, key_bytes> seed{};
  for (std::size_t i = 0; i < seed.size(); ++i) seed[i] = static_cast<std::uint8_t>(i);
  return Identity::from_seed(seed).public_key();
}

std::uint64_t suppressed_in(const std::string& line) {
  static const std::regex re(R"( suppressed=(\d+))");
  std::smatch m;
  return std::regex_search(line, m, re) ? std::stoull(m[1]) : 0;
}

}  // namespace

// Secrets have no way into a log line: these must not compile.
static_assert(!std::is_constructible_v<LogField, std::string_view, const Identity&>);
static_assert(!std::is_constructible_v<LogField, std::string_view, const Secret<32>&>);
static_assert(!std::is_constructible_v<LogField, std::string_view, const unsigned char*>);
static_assert(
    !std::is_constructible_v<LogField, std::string_view, std::span<const unsigned char, 32>>);
static_assert(std::is_constructible_v<LogField, std::string_view, const PublicKey&>);

TEST_CASE("a text line carries time, level, connection id, key fingerprint, event and fields") {
  Capture cap;
  Logger logger(cap.options(LogFormat::text));
  const auto pk = key_from_seed_0_to_31();
  logger.info("listen", {.conn = 17, .key = pk},
              {{"addr", "0.0.0.0:4567"},
               {"n", 3},
               {"ok", true},
               {"rtt", 1500us},
               {"big", std::uint64_t{1} << 63}});
  REQUIRE(cap.lines.size() == 1);
  CHECK(cap.lines[0] ==
        "ts=2024-05-01T12:00:00.123Z level=info conn=17 key=A6EHv_PO event=listen "
        "addr=0.0.0.0:4567 n=3 ok=true rtt=1 big=9223372036854775808\n");
  // Only the fingerprint: the full key is not in the line.
  CHECK(cap.lines[0].find(pk.to_base64url()) == std::string::npos);
}

TEST_CASE("a process-level line has conn=0 and no key") {
  Capture cap;
  Logger logger(cap.options(LogFormat::text));
  logger.warn("start", {}, {{"version", "0.1.0"}});
  REQUIRE(cap.lines.size() == 1);
  CHECK(cap.lines[0] ==
        "ts=2024-05-01T12:00:00.123Z level=warn conn=0 event=start version=0.1.0\n");
}

TEST_CASE("an error code is logged as its message") {
  Capture cap;
  Logger logger(cap.options(LogFormat::text));
  logger.error("handshake", {.conn = 2}, {{"error", make_error_code(errc::handshake_timeout)}});
  REQUIRE(cap.lines.size() == 1);
  const auto expected = make_error_code(errc::handshake_timeout).message();
  CHECK(cap.lines[0].find("error=\"" + expected + "\"") != std::string::npos);
}

TEST_CASE("text escaping keeps every record on one line whatever a string holds") {
  Capture cap;
  Logger logger(cap.options(LogFormat::text));
  logger.info("close", {.conn = 5},
              {{"detail", "line one\nlevel=error conn=1 event=forged"},
               {"quote", "say \"hi\" \\ now"},
               {"ctl", std::string("\x1b[31mred\r\t\x7f", 11)},
               {"utf8", "caf\xc3\xa9"},
               {"empty", ""},
               {"bad key=", 1}});
  REQUIRE(cap.lines.size() == 1);
  const auto& line = cap.lines[0];
  CHECK(std::count(line.begin(), line.end(), '\n') == 1);
  CHECK(line.find("detail=\"line one\\nlevel=error conn=1 event=forged\"") != std::string::npos);
  CHECK(line.find("quote=\"say \\\"hi\\\" \\\\ now\"") != std::string::npos);
  CHECK(line.find("ctl=\"\\x1b[31mred\\r\\t\\x7f\"") != std::string::npos);
  CHECK(line.find("utf8=\"caf\\xc3\\xa9\"") != std::string::npos);
  CHECK(line.find("empty=\"\"") != std::string::npos);
  CHECK(line.find(" bad_key_=1") != std::string::npos);
}

TEST_CASE("a long string value is cut at the limit and marked") {
  Capture cap;
  Logger logger(cap.options(LogFormat::text));
  logger.info("close", {},
              {{"at_max", std::string(log_max_value_bytes, 'a')},
               {"over", std::string(log_max_value_bytes + 1, 'b')}});
  REQUIRE(cap.lines.size() == 1);
  CHECK(cap.lines[0].find("at_max=" + std::string(log_max_value_bytes, 'a') + " ") !=
        std::string::npos);
  CHECK(cap.lines[0].find("over=\"" + std::string(log_max_value_bytes, 'b') + "...\"") !=
        std::string::npos);
}

TEST_CASE("JSON lines are valid JSON with the fixed fields first") {
  Capture cap;
  Logger logger(cap.options(LogFormat::json));
  const auto pk = key_from_seed_0_to_31();
  logger.info("listen", {.conn = 17, .key = pk},
              {{"detail", "a\nb\"c"}, {"n", -3}, {"ratio", 0.5}, {"bad_utf8", "\xff\xfe"}});
  logger.debug("tick", {});
  REQUIRE(cap.lines.size() == 2);
  CHECK(cap.lines[0].rfind("{\"ts\":\"2024-05-01T12:00:00.123Z\",\"level\":\"info\",\"conn\":17,",
                           0) == 0);
  CHECK(std::count(cap.lines[0].begin(), cap.lines[0].end(), '\n') == 1);
  const auto j = nlohmann::json::parse(cap.lines[0]);
  CHECK(j["key"] == "A6EHv_PO");
  CHECK(j["event"] == "listen");
  CHECK(j["detail"] == "a\nb\"c");
  CHECK(j["n"] == -3);
  CHECK(j["ratio"] == 0.5);
  CHECK(j["bad_utf8"] == "\xef\xbf\xbd\xef\xbf\xbd");  // U+FFFD twice
  const auto j2 = nlohmann::json::parse(cap.lines[1]);
  CHECK(j2["conn"] == 0);
  CHECK_FALSE(j2.contains("key"));
}

TEST_CASE("lines below the level are not written") {
  Capture cap;
  Logger logger(cap.options(LogFormat::text, LogLevel::warn));
  logger.debug("a", {});
  logger.info("b", {});
  logger.warn("c", {});
  logger.error("d", {});
  REQUIRE(cap.lines.size() == 2);
  CHECK(cap.lines[0].find("event=c") != std::string::npos);
  CHECK(cap.lines[1].find("event=d") != std::string::npos);
  logger.set_level(LogLevel::debug);
  logger.debug("e", {});
  CHECK(cap.lines.size() == 3);
}

TEST_CASE("level and format names parse and print") {
  for (auto level : {LogLevel::error, LogLevel::warn, LogLevel::info, LogLevel::debug}) {
    CHECK(parse_log_level(to_string(level)) == level);
  }
  CHECK(parse_log_format("json") == LogFormat::json);
  CHECK(parse_log_format("text") == LogFormat::text);
  CHECK_FALSE(parse_log_level("verbose").has_value());
  CHECK_FALSE(parse_log_format("JSON").has_value());
}

TEST_CASE("100,000 lines of one event are rate-limited and the suppressed count is reported") {
  Capture cap;
  Logger logger(cap.options(LogFormat::text));
  const int calls = 100'000;
  SUBCASE("all at one instant: exactly the burst gets through") {
    for (int i = 0; i < calls; ++i) logger.warn("accept_error", {}, {{"i", i}});
    CHECK(cap.lines.size() == static_cast<std::size_t>(log_burst_per_event));
    CHECK(logger.suppressed_total() == calls - static_cast<std::uint64_t>(log_burst_per_event));
    // One second later, the next line reports how many were dropped before it.
    cap.now += 1s;
    logger.warn("accept_error", {}, {{"i", calls}});
    REQUIRE(cap.lines.size() == static_cast<std::size_t>(log_burst_per_event) + 1);
    CHECK(suppressed_in(cap.lines.back()) ==
          calls - static_cast<std::uint64_t>(log_burst_per_event));
  }
  SUBCASE("spread over 10 seconds: burst plus rate times time") {
    for (int i = 0; i < calls; ++i) {
      cap.now += 100us;
      logger.warn("accept_error", {}, {{"i", i}});
    }
    logger.flush_suppressed();
    std::uint64_t written = 0;
    std::uint64_t reported = 0;
    for (const auto& line : cap.lines) {
      if (line.find(" event=accept_error") != std::string::npos) ++written;
      reported += suppressed_in(line);
    }
    const auto max_lines =
        static_cast<std::uint64_t>(log_burst_per_event + 10.0 * log_rate_per_event) + 1;
    CHECK(written <= max_lines);
    CHECK(written >= max_lines - 2);
    // Nothing lost silently: every call is either a line or part of a suppressed count.
    CHECK(written + reported == static_cast<std::uint64_t>(calls));
  }
}

TEST_CASE("suppressed lines are summarised by flush_suppressed and periodically") {
  Capture cap;
  Logger logger(cap.options(LogFormat::text));
  for (int i = 0; i < 60; ++i) logger.info("noisy", {});
  CHECK(cap.lines.size() == 50);
  logger.flush_suppressed();
  REQUIRE(cap.lines.size() == 51);
  CHECK(cap.lines.back().find(
            "level=warn conn=0 event=log_suppressed suppressed_event=noisy suppressed=10") !=
        std::string::npos);
  logger.flush_suppressed();  // nothing new: no line
  CHECK(cap.lines.size() == 51);

  for (int i = 0; i < 60; ++i) logger.info("noisy", {});  // bucket empty: all 60 suppressed
  CHECK(cap.lines.size() == 51);
  cap.now += log_summary_interval;
  logger.info("other_event", {});  // any line after the interval triggers the summary
  REQUIRE(cap.lines.size() == 53);
  CHECK(cap.lines.back().find("suppressed_event=noisy suppressed=60") != std::string::npos);
}

TEST_CASE("each event name has its own bucket") {
  Capture cap;
  Logger logger(cap.options(LogFormat::text));
  for (int i = 0; i < 1000; ++i) logger.info("flood", {});
  logger.info("quiet", {});
  CHECK(cap.lines.back().find("event=quiet") != std::string::npos);
}

TEST_CASE("several threads logging at once never interleave lines") {
  std::mutex m;
  std::vector<std::string> lines;
  Logger::Options o;
  o.format = LogFormat::json;
  o.sink = [&](std::string_view line) {
    std::lock_guard lock(m);  // the logger already serialises; this guards the test's vector
    lines.emplace_back(line);
  };
  Logger logger(std::move(o));
  constexpr int threads = 4;
  constexpr int per_thread = 2000;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&logger, t] {
      const std::string event = "worker" + std::to_string(t);
      for (int i = 0; i < per_thread; ++i) {
        logger.info(event, {.conn = static_cast<std::uint64_t>(t + 1)},
                    {{"i", i}, {"pad", std::string(64, 'x')}});
      }
    });
  }
  for (auto& th : pool) th.join();
  logger.flush_suppressed();
  std::uint64_t written = 0;
  std::uint64_t suppressed = 0;
  for (const auto& line : lines) {
    REQUIRE(line.back() == '\n');
    const auto j = nlohmann::json::parse(line);  // throws on a torn line
    if (j.contains("suppressed")) suppressed += j["suppressed"].get<std::uint64_t>();
    if (j["event"] != "log_suppressed") ++written;
  }
  CHECK(written + suppressed == threads * per_thread);
}
