// Tests for strelay/config: every flag, the defaults, the config file, and one-line errors.
#include "strelay/config.hpp"

#include <doctest/doctest.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "support/temp_dir.hpp"

using namespace strelay;
using namespace std::chrono_literals;
using boost::asio::ip::tcp;

namespace {

std::optional<RelayOptions> parse(std::vector<std::string> args, std::string& error) {
  args.insert(args.begin(), "strelay");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  return try_parse_relay_options(static_cast<int>(argv.size()), argv.data(), error);
}

RelayOptions parse_ok(std::vector<std::string> args) {
  std::string error;
  auto options = parse(std::move(args), error);
  INFO(error);
  REQUIRE(options.has_value());
  return *options;
}

// The error for `args`; it must be one line and name what is wrong.
std::string parse_error(std::vector<std::string> args) {
  std::string error;
  const auto options = parse(std::move(args), error);
  CHECK_FALSE(options.has_value());
  CHECK_FALSE(error.empty());
  CHECK(error.find('\n') == std::string::npos);
  return error;
}

using TempDir = strelay::testing::TempDir;

const std::vector<std::string> required{"--idfile", "relay.ident", "--laddr", "0.0.0.0:4567"};

std::vector<std::string> with_required(std::vector<std::string> extra) {
  auto args = required;
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

}  // namespace

TEST_CASE("the start-up line of Offset's guide parses, and every default is protocol.hpp's") {
  const auto o = parse_ok({"--idfile", "relay/relay.ident", "--laddr", "0.0.0.0:4567"});
  CHECK(o.idfile == "relay/relay.ident");
  REQUIRE(o.laddr.size() == 1);
  CHECK(o.laddr[0] == tcp::endpoint(boost::asio::ip::make_address("0.0.0.0"), 4567));
  CHECK(o.public_address.empty());
  CHECK(o.config_file.empty());
  CHECK(o.log_format == LogFormat::text);
  CHECK(o.log_level == LogLevel::info);
  CHECK_FALSE(o.metrics_addr.has_value());
  CHECK(o.allow_file.empty());
  const auto& l = o.limits;
  CHECK(l == RelayLimits{});
  CHECK(l.handshake_timeout == handshake_deadline);
  CHECK(l.max_pending_handshakes == max_pending_handshakes);
  CHECK(l.max_pending_per_source == max_pending_per_source);
  CHECK(l.handshake_rate_per_second == handshake_rate_per_source);
  CHECK(l.handshake_burst == handshake_burst_per_source);
  CHECK(l.max_connections == 0);
  CHECK(l.half_tunnel_ttl == half_tunnel_ttl);
  CHECK(l.connect_rate_per_minute == doctest::Approx(60.0));
  CHECK(l.connect_burst == connect_burst_per_identity);
  CHECK(l.tunnel_buffer == tunnel_buffer_bytes);
  CHECK(l.write_stall_timeout == write_stall_timeout);
  CHECK(l.keepalive_interval == keepalive_interval);
  CHECK(l.dead_peer_timeout == dead_peer_timeout);
  CHECK(l.drain_timeout == 30s);
}

TEST_CASE("every flag parses into its field") {
  const auto o = parse_ok({"--idfile",
                           "id",
                           "--laddr",
                           "127.0.0.1:0",
                           "--laddr",
                           "[::1]:4567",
                           "--public-address",
                           "relay.example.org:4567",
                           "--log-format",
                           "json",
                           "--log-level",
                           "debug",
                           "--metrics-addr",
                           "127.0.0.1:9090",
                           "--allow",
                           "members.txt",
                           "--handshake-timeout",
                           "2.5",
                           "--max-pending-handshakes",
                           "100",
                           "--max-pending-per-source",
                           "3",
                           "--handshake-rate",
                           "7",
                           "--handshake-burst",
                           "2",
                           "--max-connections",
                           "500",
                           "--half-tunnel-ttl",
                           "0.25",
                           "--connect-rate",
                           "120",
                           "--connect-burst",
                           "9",
                           "--tunnel-buffer",
                           "65536",
                           "--write-stall-timeout",
                           "4",
                           "--keepalive-interval",
                           "1",
                           "--dead-peer-timeout",
                           "3",
                           "--drain-timeout",
                           "0"});
  REQUIRE(o.laddr.size() == 2);
  CHECK(o.laddr[0] == tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
  CHECK(o.laddr[1] == tcp::endpoint(boost::asio::ip::make_address("::1"), 4567));
  CHECK(o.public_address == "relay.example.org:4567");
  CHECK(o.log_format == LogFormat::json);
  CHECK(o.log_level == LogLevel::debug);
  REQUIRE(o.metrics_addr.has_value());
  CHECK(endpoint_to_string(*o.metrics_addr) == "127.0.0.1:9090");
  CHECK(o.allow_file == "members.txt");
  const auto& l = o.limits;
  CHECK(l.handshake_timeout == 2500ms);
  CHECK(l.max_pending_handshakes == 100);
  CHECK(l.max_pending_per_source == 3);
  CHECK(l.handshake_rate_per_second == 7.0);
  CHECK(l.handshake_burst == 2.0);
  CHECK(l.max_connections == 500);
  CHECK(l.half_tunnel_ttl == 250ms);
  CHECK(l.connect_rate_per_minute == 120.0);
  CHECK(l.connect_burst == 9.0);
  CHECK(l.tunnel_buffer == 65536);
  CHECK(l.write_stall_timeout == 4s);
  CHECK(l.keepalive_interval == 1s);
  CHECK(l.dead_peer_timeout == 3s);
  CHECK(l.drain_timeout == 0ms);
}

TEST_CASE("a TOML config file sets every kind of option, and the command line wins") {
  TempDir dir;
  const auto file = dir.write("strelay.conf", R"(# a comment
idfile = "/var/lib/strelay/relay.ident"
laddr = ["0.0.0.0:4567", "[::]:4567"]
log-format = "json"
metrics-addr = "127.0.0.1:9090"
handshake-timeout = 3
max-pending-per-source = 4
connect-rate = 30
)");
  SUBCASE("file alone") {
    const auto o = parse_ok({"--config", file});
    CHECK(o.config_file == file);
    CHECK(o.idfile == "/var/lib/strelay/relay.ident");
    REQUIRE(o.laddr.size() == 2);
    CHECK(endpoint_to_string(o.laddr[1]) == "[::]:4567");
    CHECK(o.log_format == LogFormat::json);
    CHECK(o.metrics_addr.has_value());
    CHECK(o.limits.handshake_timeout == 3s);
    CHECK(o.limits.max_pending_per_source == 4);
    CHECK(o.limits.connect_rate_per_minute == 30.0);
  }
  SUBCASE("the command line overrides the file") {
    const auto o =
        parse_ok({"--config", file, "--handshake-timeout", "7", "--laddr", "127.0.0.1:1"});
    CHECK(o.limits.handshake_timeout == 7s);
    REQUIRE(o.laddr.size() == 1);
    CHECK(endpoint_to_string(o.laddr[0]) == "127.0.0.1:1");
    CHECK(o.limits.max_pending_per_source == 4);
  }
}

TEST_CASE("an INI-style config file also works") {
  TempDir dir;
  const auto file =
      dir.write("strelay.ini", "idfile=id\nladdr=127.0.0.1:4567\nhalf-tunnel-ttl=2\n");
  const auto o = parse_ok({"--config", file});
  CHECK(o.limits.half_tunnel_ttl == 2s);
}

TEST_CASE("the example config in examples/ parses and holds the defaults") {
  const auto example =
      std::filesystem::path(STRELAY_TESTS_DIR) / ".." / "examples" / "strelay.conf";
  REQUIRE(std::filesystem::exists(example));
  // Everything in the example is commented out except idfile and laddr.
  const auto o = parse_ok({"--config", example.string()});
  CHECK(o.limits == RelayLimits{});
  CHECK_FALSE(o.laddr.empty());
}

TEST_CASE("the example config documents every option with its default") {
  const auto example =
      std::filesystem::path(STRELAY_TESTS_DIR) / ".." / "examples" / "strelay.conf";
  std::ifstream in(example);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CLI::App app;
  RelayOptions options;
  setup_relay_options(app, options);
  // The limits live in an option group, which CLI11 keeps as a nameless subcommand.
  std::vector<const CLI::Option*> all;
  for (const CLI::Option* option : app.get_options()) all.push_back(option);
  for (const CLI::App* group : app.get_subcommands([](CLI::App*) { return true; })) {
    for (const CLI::Option* option : group->get_options()) all.push_back(option);
  }
  std::size_t checked = 0;
  for (const auto* option : all) {
    const auto name = option->get_single_name();
    if (name == "help" || name == "version" || name == "config") continue;
    ++checked;
    const auto line = name + " = ";
    const bool documented = text.find("\n" + line) != std::string::npos ||
                            text.find("\n# " + line) != std::string::npos;
    CHECK_MESSAGE(documented, name);
    // String defaults are quoted in TOML ("text"), so only the numbers are compared as text.
    if (!option->get_default_str().empty() && name != "log-format" && name != "log-level" &&
        name != "websocket-path" && name != "admission-fail") {
      CHECK_MESSAGE(text.find("# " + line + option->get_default_str() + "\n") != std::string::npos,
                    name);
    }
  }
  CHECK(checked == 55);  // 8 general options, 5 of the carriers, 5 of the hook and 37 limits
}

TEST_CASE("config file mistakes are one-line errors") {
  TempDir dir;
  SUBCASE("an unknown key") {
    const auto file =
        dir.write("bad.conf", "idfile = \"id\"\nladdr = \"0.0.0.0:1\"\nhandshake-timeot = 3\n");
    CHECK(parse_error({"--config", file}).find("handshake-timeot") != std::string::npos);
  }
  SUBCASE("a bad value") {
    const auto file = dir.write("bad.conf", "idfile = \"id\"\nladdr = \"0.0.0.0:65536\"\n");
    CHECK(parse_error({"--config", file}).find("65536") != std::string::npos);
  }
  SUBCASE("a missing file") {
    CHECK(parse_error({"--config", (dir.path / "nope.conf").string()}).find("nope.conf") !=
          std::string::npos);
  }
}

TEST_CASE("bad flags give one-line errors that name the flag") {
  SUBCASE("port 65536") {
    CHECK(parse_error({"--idfile", "i", "--laddr", "0.0.0.0:65536"}).find("--laddr") !=
          std::string::npos);
  }
  SUBCASE("a port with a sign or leading zero") {
    parse_error({"--idfile", "i", "--laddr", "0.0.0.0:+1"});
    parse_error({"--idfile", "i", "--laddr", "0.0.0.0:0080"});
    parse_error({"--idfile", "i", "--laddr", "0.0.0.0:"});
  }
  SUBCASE("an IPv6 address without brackets") {
    CHECK(parse_error({"--idfile", "i", "--laddr", "::1:4567"}).find("brackets") !=
          std::string::npos);
  }
  SUBCASE("a host name as a listen address") {
    CHECK(parse_error({"--idfile", "i", "--laddr", "localhost:4567"}).find("not an IP address") !=
          std::string::npos);
  }
  SUBCASE("an IPv4 address in brackets") {
    parse_error({"--idfile", "i", "--laddr", "[127.0.0.1]:4567"});
  }
  SUBCASE("negative numbers") {
    CHECK(parse_error(with_required({"--max-pending-handshakes=-1"}))
              .find("--max-pending-handshakes") != std::string::npos);
    CHECK(parse_error(with_required({"--handshake-timeout=-1"})).find("--handshake-timeout") !=
          std::string::npos);
  }
  SUBCASE("zero where zero makes no sense") {
    parse_error(with_required({"--max-pending-handshakes", "0"}));
    parse_error(with_required({"--max-pending-per-source", "0"}));
    parse_error(with_required({"--handshake-rate", "0"}));
    parse_error(with_required({"--handshake-burst", "0"}));
    parse_error(with_required({"--connect-rate", "0"}));
    parse_error(with_required({"--half-tunnel-ttl", "0"}));
    parse_error(with_required({"--keepalive-interval", "0"}));
    parse_error(with_required({"--tunnel-buffer", "0"}));
  }
  SUBCASE("upper bounds") {
    parse_error(with_required({"--handshake-timeout", "86401"}));
    parse_error(with_required({"--drain-timeout", "601"}));
    parse_error(with_required({"--tunnel-buffer", "67108865"}));
    parse_error(with_required({"--max-connections", "10000001"}));
    parse_ok(with_required({"--tunnel-buffer", "67108864"}));  // the maximum itself
  }
  SUBCASE("not numbers") {
    parse_error(with_required({"--handshake-timeout", "10x"}));
    parse_error(with_required({"--handshake-timeout", "-10s"}));
    parse_error(with_required({"--handshake-timeout", "nan"}));
    parse_error(with_required({"--max-connections", "1e3"}));
  }
  SUBCASE("an unknown flag") {
    CHECK(parse_error(with_required({"--frobnicate"})).find("frobnicate") != std::string::npos);
  }
  SUBCASE("a missing required flag") {
    CHECK(parse_error({"--laddr", "0.0.0.0:1"}).find("--idfile") != std::string::npos);
    CHECK(parse_error({"--idfile", "i"}).find("--laddr") != std::string::npos);
  }
  SUBCASE("unknown log format and level") {
    parse_error(with_required({"--log-format", "xml"}));
    parse_error(with_required({"--log-level", "verbose"}));
  }
  SUBCASE("a public address nobody can dial") {
    parse_error(with_required({"--public-address", "0.0.0.0:4567"}));
    parse_error(with_required({"--public-address", "relay.example.org:0"}));
    parse_error(with_required({"--public-address", "relay.example.org"}));
  }
}

TEST_CASE("options that contradict each other are refused") {
  CHECK(parse_error(with_required({"--keepalive-interval", "45"})).find("--dead-peer-timeout") !=
        std::string::npos);
  CHECK(
      parse_error(with_required({"--max-pending-handshakes", "4", "--max-pending-per-source", "5"}))
          .find("--max-pending-per-source") != std::string::npos);
  CHECK(
      parse_error({"--idfile", "i", "--laddr", "0.0.0.0:4567", "--metrics-addr", "127.0.0.1:4567"})
          .find("--metrics-addr") != std::string::npos);
  CHECK(parse_error({"--idfile", "i", "--laddr", "0.0.0.0:4567", "--laddr", "0.0.0.0:4567"})
            .find("twice") != std::string::npos);
  // Port 0 twice is two different free ports, and metrics on port 0 cannot collide.
  parse_ok({"--idfile", "i", "--laddr", "127.0.0.1:0", "--laddr", "127.0.0.1:0", "--metrics-addr",
            "127.0.0.1:0"});
}

TEST_CASE("--help and --version print and ask main to exit 0; errors exit non-zero") {
  std::ostringstream out;
  std::ostringstream err;
  auto* old_out = std::cout.rdbuf(out.rdbuf());
  auto* old_err = std::cerr.rdbuf(err.rdbuf());
  int code = -1;
  const char* help[] = {"strelay", "--help"};
  const bool help_parsed = parse_relay_options(2, help, code).has_value();
  const int help_code = code;
  const char* version[] = {"strelay", "--version"};
  const bool version_parsed = parse_relay_options(2, version, code).has_value();
  const int version_code = code;
  const char* bad[] = {"strelay", "--idfile", "i", "--laddr", "0.0.0.0:99999"};
  const bool bad_parsed = parse_relay_options(5, bad, code).has_value();
  const int bad_code = code;
  std::cout.rdbuf(old_out);
  std::cerr.rdbuf(old_err);

  CHECK_FALSE(help_parsed);
  CHECK(help_code == 0);
  CHECK(out.str().find("--handshake-timeout") != std::string::npos);
  CHECK(out.str().find("strelay --idfile relay/relay.ident --laddr 0.0.0.0:4567") !=
        std::string::npos);
  CHECK_FALSE(version_parsed);
  CHECK(version_code == 0);
  CHECK(out.str().find(std::string("strelay ") + STRELAY_VERSION) != std::string::npos);
  CHECK_FALSE(bad_parsed);
  CHECK(bad_code != 0);
  const auto message = err.str();
  CHECK(message.rfind("strelay: ", 0) == 0);
  CHECK(std::count(message.begin(), message.end(), '\n') == 1);
}

TEST_CASE("endpoints parse strictly and print back") {
  std::string error;
  for (const auto* good :
       {"0.0.0.0:4567", "[::]:4567", "127.0.0.1:0", "[::1]:65535", "10.1.2.3:1"}) {
    const auto e = try_parse_endpoint(good, error);
    REQUIRE_MESSAGE(e.has_value(), good);
    CHECK(endpoint_to_string(*e) == good);
  }
  for (const auto* bad : {"", ":", "0.0.0.0", "0.0.0.0:", "[::]", "[::]4567", "[::1:4567",
                          "::1:4567", "1.2.3:4", "256.0.0.1:1", "host:1", "0.0.0.0:65536",
                          "0.0.0.0:-1", "0.0.0.0: 1", "[127.0.0.1]:1", "0.0.0.0:1 "}) {
    CHECK_FALSE_MESSAGE(try_parse_endpoint(bad, error).has_value(), bad);
  }
}

TEST_CASE("the automatic connection cap is 80% of the descriptor limit") {
  RelayLimits l;
  CHECK(effective_max_connections(l, 1024) == 819);
  CHECK(effective_max_connections(l, 1) == 1);
  CHECK(effective_max_connections(l, ~std::uint64_t{0}) ==
        static_cast<std::size_t>((1ull << 24) * 0.8));
  l.max_connections = 10;
  CHECK(effective_max_connections(l, 1024) == 10);
}
