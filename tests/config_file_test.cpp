// Tests for strelay/config_file: the config file's pre-pass (FILE:LINE messages, suggestions,
// escaped bytes), Go-style durations, ":PORT", exit code 2, and the changes a reload cannot apply.
#include "strelay/config_file.hpp"

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "common/duration.hpp"
#include "support/temp_dir.hpp"

using namespace strelay;
using namespace std::chrono_literals;

namespace {

using TempDir = strelay::testing::TempDir;

std::optional<RelayOptions> parse(std::vector<std::string> args, std::string& error) {
  args.insert(args.begin(), "strelay");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  return try_parse_relay_options(static_cast<int>(argv.size()), argv.data(), error);
}

// The one-line error for a config file holding `text` after a valid first line.
std::string file_error(const std::string& text) {
  TempDir dir;
  const auto file = dir.write("s.conf", "idfile = \"relay.ident\"\n" + text);
  std::string error;
  CHECK_FALSE(parse({"--config", file}, error).has_value());
  CHECK(error.find('\n') == std::string::npos);
  const std::string prefix = file + ":";
  REQUIRE(error.rfind(prefix, 0) == 0);
  return error.substr(prefix.size());
}

}  // namespace

TEST_CASE("config file mistakes are FILE:LINE: and say what was meant") {
  CHECK(file_error("listen = \"0.0.0.0:22067\"\n") ==
        "2: unknown option 'listen' (did you mean 'laddr'?)");
  CHECK(file_error("laddr = \"0.0.0.0:1\"\nmetrics_addr = \"127.0.0.1:9\"\n") ==
        "3: unknown option 'metrics_addr' (did you mean 'metrics-addr'?)");
  CHECK(file_error("handshake-timeot = 3\n") ==
        "2: unknown option 'handshake-timeot' (did you mean 'handshake-timeout'?)");
  CHECK(file_error("frobnicate = 3\n") == "2: unknown option 'frobnicate'");
  CHECK(file_error("\x89PNG\r\n\x1a\n") == "2: expected name = value, found \\x89PNG");
  CHECK(file_error("\x1b[31m = 1\n") == "2: unknown option '\\x1b[31m'");
  CHECK(file_error("laddr = [::1]:27597\n") == "2: quote the address: laddr = \"[::1]:27597\"");
  CHECK(file_error("laddr = \"0.0.0.0:1\"\nladdr = \"0.0.0.0:2\"\n") ==
        "3: 'laddr' is set twice (first on line 2); give several values as a list: laddr = "
        "[\"a\", \"b\"]");
  CHECK(file_error("laddr = \"0.0.0.0:1\n") == "2: the value of 'laddr' has no closing quote");
  CHECK(file_error("[relay]\n") == "2: strelay's options take no section: remove [relay]");
  // A value CLI11 refuses is reported at its line too.
  CHECK(file_error("# comment\nladdr = \"0.0.0.0:65536\"\n") ==
        "3: --laddr: address \"0.0.0.0:65536\": port \"65536\" is not a number from 0 to 65535");
  CHECK(file_error("laddr = \"0.0.0.0:1\"\nlog-level = \"loud\x07\"\n") ==
        "3: --log-level: \"loud\\x07\" is not one of error, warn, info, debug");
}

TEST_CASE("a good config file passes the pre-pass: lists, comments, [default], INI") {
  TempDir dir;
  std::string error;
  const auto toml = dir.write("a.conf",
                              "# c\n[default]\nidfile = \"i\"  # trailing comment\n"
                              "laddr = [\"0.0.0.0:4567\", \"[::]:4567\"]\n\n"
                              "handshake-timeout = 10\n");
  const auto o = parse({"--config", toml}, error);
  INFO(error);
  REQUIRE(o.has_value());
  CHECK(o->laddr.size() == 2);
  const auto ini = dir.write("a.ini", "idfile=i\r\nladdr=127.0.0.1:4567\r\n");
  CHECK(parse({"--config", ini}, error).has_value());
}

TEST_CASE("an unknown flag is named, before a missing required one") {
  std::string error;
  CHECK_FALSE(parse({"--listen", "X"}, error));
  CHECK(error == "unknown option '--listen' (did you mean '--laddr'?)");
  CHECK_FALSE(parse({"--idfile", "i", "--laddr", "0.0.0.0:1", "--metrics_addr=1"}, error));
  CHECK(error == "unknown option '--metrics_addr' (did you mean '--metrics-addr'?)");
  CHECK_FALSE(parse({"--idfile", "i"}, error));
  CHECK(error == "--laddr is required");
}

TEST_CASE("usage errors exit 2 with one line on stderr") {
  std::ostringstream err;
  auto* old_err = std::cerr.rdbuf(err.rdbuf());
  int code = -1;
  const char* args[] = {"strelay", "--listen", "X"};
  const bool parsed = parse_relay_options(3, args, code).has_value();
  std::cerr.rdbuf(old_err);
  CHECK_FALSE(parsed);
  CHECK(code == 2);
  CHECK(err.str() ==
        "strelay: unknown option '--listen' (did you mean '--laddr'?) (see strelay --help)\n");
}

TEST_CASE("durations: seconds or Go's notation") {
  CHECK(parse_duration_seconds("30") == 30.0);
  CHECK(parse_duration_seconds("0.5") == 0.5);
  CHECK(parse_duration_seconds("10m") == 600.0);
  CHECK(parse_duration_seconds("1h30m") == 5400.0);
  CHECK(parse_duration_seconds("1.5s") == 1.5);
  CHECK(parse_duration_seconds("250ms") == 0.25);
  CHECK(parse_duration_seconds("2m30s") == 150.0);
  for (const char* bad :
       {"", "m", "10", "-1s", "+1s", "1e3s", "10x", "1h 30m", "s10", "nan", "1..5s"}) {
    if (std::string_view(bad) == "10") continue;  // plain seconds
    CHECK_FALSE_MESSAGE(parse_duration_seconds(bad).has_value(), bad);
  }
  std::string error;
  const auto o = parse({"--idfile", "i", "--laddr", "0.0.0.0:1", "--handshake-timeout", "1m30s",
                        "--half-tunnel-ttl", "500ms", "--drain-timeout", "10m"},
                       error);
  INFO(error);
  REQUIRE(o.has_value());
  CHECK(o->limits.handshake_timeout == 90s);
  CHECK(o->limits.half_tunnel_ttl == 500ms);
  CHECK(o->limits.drain_timeout == 600s);
  CHECK_FALSE(parse({"--idfile", "i", "--laddr", "0.0.0.0:1", "--drain-timeout", "11m"}, error));
  CHECK(error == "--drain-timeout: 660 is out of range: give 0 to 600 seconds");
}

TEST_CASE(":PORT listens on every IPv4 address, as Go tools read it") {
  std::string error;
  const auto e = try_parse_endpoint(":4567", error);
  REQUIRE(e.has_value());
  CHECK(endpoint_to_string(*e) == "0.0.0.0:4567");
  CHECK_FALSE(try_parse_endpoint(":", error));
  CHECK_FALSE(try_parse_endpoint("::1:4567", error));
  CHECK(error.find("brackets") != std::string::npos);
}

TEST_CASE("suggestions: typos, underscores, synonyms; nothing when nothing is close") {
  const std::vector<std::string> names{"laddr", "metrics-addr", "idfile", "allow", "threads"};
  CHECK(suggest_option("listen", names) == "laddr");
  CHECK(suggest_option("METRICS_ADDR", names) == "metrics-addr");
  CHECK(suggest_option("idfiel", names) == "idfile");
  CHECK(suggest_option("thread", names) == "threads");
  CHECK(suggest_option("zzzzzz", names).empty());
  CHECK(suggest_option("met", names) == "metrics-addr");  // the one name it abbreviates
  CHECK(suggest_option("al", names).empty());             // too short to be sure
}

TEST_CASE("an unknown flag among the leftovers is named; synonyms only for known names") {
  const std::vector<std::string> names{"idfile", "to", "connect-timeout"};
  CHECK(unknown_flag_message({"x", "--conect-timeout=3"}, names) ==
        "unknown option '--conect-timeout' (did you mean '--connect-timeout'?)");
  CHECK(unknown_flag_message({"--listen", "X"}, names) == "unknown option '--listen'");
  CHECK(unknown_flag_message({"--\x1b[2J"}, names) == "unknown option '--\\x1b[2J'");
  CHECK(unknown_flag_message({"positional"}, names).empty());
  CHECK(unknown_flag_message({}, names).empty());
}

TEST_CASE("a reload names the changes it cannot apply") {
  std::string error;
  const auto before = parse({"--idfile", "i", "--laddr", "0.0.0.0:1"}, error);
  const auto after = parse({"--idfile", "j", "--laddr", "0.0.0.0:2", "--threads", "2",
                            "--handshake-timeout", "3", "--log-level", "debug"},
                           error);
  REQUIRE(before.has_value());
  REQUIRE(after.has_value());
  CHECK(restart_only_changes(*before, *after) ==
        std::vector<std::string>{"idfile", "laddr", "threads", "log-level"});
  CHECK(restart_only_changes(*before, *before).empty());
}
