#include "strelay/config.hpp"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <limits>

#include "common/address.hpp"
#include "strelay/carrier.hpp"

namespace strelay {
namespace {

using boost::asio::ip::tcp;

// Upper bounds: far above any sane setting, low enough that a typo (an extra 000) is caught.
constexpr double max_timeout_seconds = 24 * 3600.0;
constexpr double min_timeout_seconds = 0.01;  // tests use short timeouts; below 10 ms is noise
constexpr std::uint64_t max_count = 10'000'000;
constexpr double max_rate = 1'000'000.0;
// Tunnel buffer: at least one page, at most 64 MiB per direction (a tunnel holds two).
constexpr std::uint64_t min_tunnel_buffer = 4096;
constexpr std::uint64_t max_tunnel_buffer = 64ull * 1024 * 1024;
// Bandwidth limits: below 16 KiB/s a paced tunnel would wait longer than a second for one
// chunk (strelay/bandwidth.hpp); above 1 TB/s is a typo.
constexpr std::uint64_t min_bytes_rate = 16 * 1024;
constexpr std::uint64_t max_bytes_rate = 1'000'000'000'000ull;
// RLIMIT_NOFILE may be "infinity"; Linux never allows more than fs.nr_open (2^20 by default).
constexpr std::uint64_t max_auto_connections = 1ull << 24;

std::string quote_text(std::string_view text) {
  return "\"" + std::string(text.substr(0, 80)) + (text.size() > 80 ? "...\"" : "\"");
}

std::string format_number(double value) {
  char buf[32];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  return ec == std::errc() ? std::string(buf, end) : std::string("?");
}

std::string format_seconds(std::chrono::milliseconds ms) {
  return format_number(static_cast<double>(ms.count()) / 1000.0);
}

// Whole text, plain decimal: no sign, no spaces, no hex, no "1e3" for counts.
bool parse_u64(std::string_view text, std::uint64_t& out) {
  if (text.empty()) return false;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && ptr == text.data() + text.size();
}

bool parse_double(std::string_view text, double& out) {
  if (text.empty()) return false;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && ptr == text.data() + text.size() && std::isfinite(out);
}

CLI::Validator seconds_between(double lo, double hi) {
  return CLI::Validator(
      [lo, hi](std::string& input) -> std::string {
        double v = 0;
        if (!parse_double(input, v)) return quote_text(input) + " is not a number of seconds";
        if (v < lo || v > hi) {
          return input + " is out of range: give " + format_number(lo) + " to " +
                 format_number(hi) + " seconds";
        }
        return {};
      },
      "");
}

CLI::Validator count_between(std::uint64_t lo, std::uint64_t hi,
                             std::string what = "a whole number") {
  return CLI::Validator(
      [lo, hi, what](std::string& input) -> std::string {
        std::uint64_t v = 0;
        if (!parse_u64(input, v)) return quote_text(input) + " is not " + what;
        if (v < lo || v > hi) {
          return input + " is out of range: give " + std::to_string(lo) + " to " +
                 std::to_string(hi);
        }
        return {};
      },
      "");
}

CLI::Validator rate_between(double lo, double hi, std::string unit) {
  return CLI::Validator(
      [lo, hi, unit](std::string& input) -> std::string {
        double v = 0;
        if (!parse_double(input, v)) return quote_text(input) + " is not a number";
        if (v < lo || v > hi) {
          return input + " is out of range: give " + format_number(lo) + " to " +
                 format_number(hi) + unit;
        }
        return {};
      },
      "");
}

CLI::Validator endpoint_validator() {
  return CLI::Validator(
      [](std::string& input) -> std::string {
        std::string error;
        return try_parse_endpoint(input, error) ? std::string() : error;
      },
      "");
}

CLI::Validator public_address_validator() {
  return CLI::Validator(
      [](std::string& input) -> std::string {
        std::string error;
        const auto address = try_parse_address(input, error);
        if (!address) return error;
        if (address->is_unspecified()) {
          return quote_text(input) + " cannot be dialled: give the address nodes should connect to";
        }
        return {};
      },
      "");
}

CLI::Validator one_of(std::vector<std::string> names) {
  return CLI::Validator(
      [names](std::string& input) -> std::string {
        if (std::find(names.begin(), names.end(), input) != names.end()) return {};
        std::string list;
        for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
        return quote_text(input) + " is not one of " + list;
      },
      "");
}

void add_seconds(CLI::App& app, const std::string& flag, std::chrono::milliseconds& target,
                 const std::string& help, double lo = min_timeout_seconds,
                 double hi = max_timeout_seconds) {
  app.add_option_function<double>(
         flag,
         [&target](double s) { target = std::chrono::milliseconds(std::llround(s * 1000.0)); },
         help)
      ->check(seconds_between(lo, hi))
      ->default_str(format_seconds(target))
      ->type_name("SECONDS");
}

template <class T>
void add_count(CLI::App& app, const std::string& flag, T& target, const std::string& help,
               std::uint64_t lo, std::uint64_t hi) {
  app.add_option(flag, target, help)
      ->check(count_between(lo, hi))
      ->capture_default_str()
      ->type_name("N");
}

// A byte rate: a whole number with an optional suffix k, M, G (powers of 1000) or Ki, Mi, Gi
// (powers of 1024), bytes per second; 0 is no limit.
std::optional<std::uint64_t> parse_bytes_rate(std::string_view text) {
  static constexpr std::pair<std::string_view, std::uint64_t> suffixes[] = {
      {"Ki", 1ull << 10}, {"Mi", 1ull << 20}, {"Gi", 1ull << 30},
      {"k", 1000},        {"M", 1000'000},    {"G", 1000'000'000}};
  std::uint64_t scale = 1;
  for (const auto& [suffix, factor] : suffixes) {
    if (text.size() > suffix.size() && text.ends_with(suffix)) {
      text.remove_suffix(suffix.size());
      scale = factor;
      break;
    }
  }
  std::uint64_t value = 0;
  if (!parse_u64(text, value) || value > max_bytes_rate / scale) return std::nullopt;
  return value * scale;
}

void add_bytes_rate(CLI::App& app, const std::string& flag, std::uint64_t& target,
                    const std::string& help) {
  app.add_option_function<std::string>(
         flag, [&target](const std::string& v) { target = parse_bytes_rate(v).value_or(0); }, help)
      ->check(CLI::Validator(
          [](std::string& input) -> std::string {
            const auto rate = parse_bytes_rate(input);
            if (!rate) {
              return quote_text(input) +
                     " is not a byte rate (a whole number of bytes per "
                     "second, with an optional k, M, G, Ki, Mi or Gi)";
            }
            if (*rate != 0 && *rate < min_bytes_rate) {
              return input + " is below " + std::to_string(min_bytes_rate) +
                     " bytes per second (0 is no limit)";
            }
            return {};
          },
          ""))
      ->default_str("0")
      ->type_name("BYTES/S");
}

void add_rate(CLI::App& app, const std::string& flag, double& target, const std::string& help,
              double lo, double hi, const std::string& unit) {
  app.add_option(flag, target, help)
      ->check(rate_between(lo, hi, unit))
      ->capture_default_str()
      ->type_name("N");
}

CLI::Validator websocket_path_validator() {
  return CLI::Validator(
      [](std::string& input) -> std::string {
        if (input.empty() || input.front() != '/' || input.size() > 200 ||
            input.find_first_of("?# \t\r\n%") != std::string::npos) {
          return quote_text(input) +
                 " is not a path: give one starting with / (no ?, #, % or spaces), e.g. /strelay";
        }
        return {};
      },
      "");
}

// "https://app.example.org" or "http://127.0.0.1:8080": what browsers send as Origin.
CLI::Validator origin_validator() {
  return CLI::Validator(
      [](std::string& input) -> std::string {
        const auto scheme = input.find("://");
        const bool ok = scheme != std::string::npos && scheme > 0 && input.size() > scheme + 3 &&
                        input.find('/', scheme + 3) == std::string::npos && input.size() <= 256;
        if (!ok)
          return quote_text(input) +
                 " is not an origin: give scheme://host[:port], e.g. https://app.example.org";
        return {};
      },
      "");
}

CLI::Validator cidr_validator() {
  return CLI::Validator([](std::string& input) -> std::string { return CidrList::check(input); },
                        "");
}

CLI::Validator directory_validator() {
  return CLI::Validator(
      [](std::string& input) -> std::string {
        std::error_code ec;
        if (!std::filesystem::is_directory(input, ec))
          return quote_text(input) + " is not a directory";
        return {};
      },
      "");
}

void setup_carriers(CLI::App& app, RelayOptions& o) {
  auto* g = app.add_option_group("WebSocket, proxies and the web root");
  g->add_option(
       "--websocket-path", o.websocket_path,
       "Path of the WebSocket endpoint on every relay address (the relay tells TCP and WebSocket "
       "apart by their first bytes)")
      ->check(websocket_path_validator())
      ->capture_default_str()
      ->type_name("PATH");
  g->add_option_function<std::vector<std::string>>(
       "--websocket-laddr",
       [&o](const std::vector<std::string>& values) {
         o.websocket_laddr.clear();
         std::string error;
         for (const auto& v : values) o.websocket_laddr.push_back(*try_parse_endpoint(v, error));
       },
       "An extra address that serves only WebSocket (and the web root), repeatable")
      ->check(endpoint_validator())
      ->type_name("ADDR");
  g->add_option(
       "--allow-origin", o.allow_origin,
       "Only browser pages from this origin may open a WebSocket, repeatable (default: any origin; "
       "the protocol authenticates nodes itself)")
      ->check(origin_validator())
      ->type_name("ORIGIN");
  g->add_option(
       "--trusted-proxy", o.trusted_proxy,
       "An address or CIDR range whose PROXY headers and X-Forwarded-For / Forwarded are believed, "
       "repeatable; SIGHUP reloads it")
      ->check(cidr_validator())
      ->type_name("CIDR");
  g->add_option(
       "--web-root", o.web_root,
       "Serve the static files of this directory (GET/HEAD) at the relay address's other paths")
      ->check(directory_validator())
      ->type_name("DIR");
}

void setup_limits(CLI::App& app, RelayLimits& l) {
  const std::string group = "Limits (each is a metric; SIGHUP reloads them)";
  auto* g = app.add_option_group(group);
  add_seconds(*g, "--handshake-timeout", l.handshake_timeout,
              "Absolute deadline from TCP accept to the first request");
  add_count(*g, "--max-pending-handshakes", l.max_pending_handshakes, "Pending handshakes in total",
            1, max_count);
  add_count(*g, "--max-pending-per-source", l.max_pending_per_source,
            "Pending handshakes per source (IPv4 /32, IPv6 /64)", 1, max_count);
  add_count(*g, "--max-pending-per-prefix", l.max_pending_per_prefix,
            "Pending handshakes per prefix: IPv6 /48 (each /56 in it: half), IPv4 /24 with "
            "--ipv4-prefix 24",
            1, max_count);
  add_count(
      *g, "--ipv4-prefix", l.ipv4_prefix,
      "IPv4 sources are also counted by this prefix (24: per /24); 32 counts each address alone", 8,
      32);
  add_seconds(*g, "--min-handshake-timeout", l.min_handshake_timeout,
              "The handshake deadline at a full pending table (it shortens from half full on)");
  add_count(*g, "--max-connections-per-source", l.max_connections_per_source,
            "Open connections per source (IPv4 /32, IPv6 /64), handshaking or authenticated", 1,
            max_count);
  add_count(*g, "--max-connections-per-prefix", l.max_connections_per_prefix,
            "Open connections per prefix (IPv6 /48, its /56s half; IPv4 /24 with --ipv4-prefix 24)",
            1, max_count);
  add_count(*g, "--max-listeners-per-source", l.max_listeners_per_source,
            "Listeners per source (IPv4 /32, IPv6 /64); per prefix 4 times as many", 1, max_count);
  add_count(*g, "--max-pending-connects-per-source", l.max_pending_connects_per_source,
            "Pending connects per source (IPv4 /32, IPv6 /64); per prefix 4 times as many", 1,
            max_count);
  add_count(*g, "--max-pending-connects-per-target", l.max_pending_connects_per_target,
            "Pending connects to one listener key", 1, max_count);
  add_rate(
      *g, "--connect-rate-per-source", l.connect_rate_per_source_per_minute,
      "Connect requests per minute per source (IPv4 /32, IPv6 /64), all its identities together",
      0.001, max_rate, " per minute");
  add_rate(*g, "--connect-burst-per-source", l.connect_burst_per_source,
           "Connect request burst per source", 1, max_rate, "");
  add_rate(*g, "--control-rate", l.control_rate,
           "Control frames (pings, RejectConnection) per second per connection; past it: "
           "Close{rate_limited}",
           0.001, max_rate, " per second");
  add_rate(*g, "--control-burst", l.control_burst, "Control frame burst per connection", 1,
           max_rate, "");
  add_count(*g, "--http-max-per-source", l.http_max_per_source,
            "HTTP endpoint connections per source address (/healthz is always answered)", 1,
            max_count);
  add_rate(*g, "--handshake-rate", l.handshake_rate_per_second, "Handshakes per second per source",
           0.001, max_rate, " per second");
  add_rate(*g, "--handshake-burst", l.handshake_burst, "Handshake burst per source", 1, max_rate,
           "");
  add_count(*g, "--max-connections", l.max_connections,
            "Connections in total; 0 = 80% of RLIMIT_NOFILE (raised to the hard limit at start), "
            "but no more "
            "than the descriptors left after the relay's own (counted at start), the HTTP "
            "endpoint's and a "
            "margin; spare descriptors go to tunnel pipes (4 each), and a tunnel without them "
            "copies instead "
            "of splicing",
            0, max_count);
  add_seconds(*g, "--half-tunnel-ttl", l.half_tunnel_ttl,
              "How long a Connect waits for the listener's Accept");
  add_rate(*g, "--connect-rate", l.connect_rate_per_minute,
           "Connect requests per minute per identity", 0.001, max_rate, " per minute");
  add_rate(*g, "--connect-burst", l.connect_burst, "Connect request burst per identity", 1,
           max_rate, "");
  add_count(*g, "--tunnel-buffer", l.tunnel_buffer,
            "User-space buffer per tunnel direction, in bytes (backpressure beyond it)",
            min_tunnel_buffer, max_tunnel_buffer);
  g->add_option_function<std::string>(
       "--tunnel-socket-buffers",
       [&l](const std::string& v) { l.tunnel_clamp_socket_buffers = v == "clamp"; },
       "clamp: each of a tunnel's kernel socket queues is clamped to --tunnel-buffer; auto: the "
       "kernel's autotuning (faster on long fat links, but a stalled tunnel then holds megabytes)")
      ->check(one_of({"clamp", "auto"}))
      ->default_str("clamp")
      ->type_name("clamp|auto");
  add_bytes_rate(*g, "--global-rate", l.global_rate,
                 "Bytes per second through all tunnels together; 0 = no limit. Paced, never "
                 "dropped: senders are slowed by TCP backpressure");
  add_bytes_rate(*g, "--tunnel-rate", l.tunnel_rate,
                 "Bytes per second through each direction of each tunnel; 0 = no limit");
  add_seconds(*g, "--write-stall-timeout", l.write_stall_timeout,
              "A peer that accepts no bytes for this long is stalled and closed");
  add_seconds(*g, "--keepalive-interval", l.keepalive_interval, "Ping after this much silence");
  add_seconds(*g, "--dead-peer-timeout", l.dead_peer_timeout,
              "Close a connection silent for this long");
  add_seconds(*g, "--drain-timeout", l.drain_timeout,
              "SIGTERM: how long sessions get to close politely", 0, 600);
}

std::string one_line(std::string text) {
  std::replace(text.begin(), text.end(), '\n', ' ');
  while (!text.empty() && text.back() == ' ') text.pop_back();
  return text;
}

constexpr const char* footer = R"(Example (as in Offset's relay guide):
  stmgr gen-ident --output relay/relay.ident
  stmgr relay-ticket --address relay.example.org:4567 --idfile relay/relay.ident --output relay/relay.relay
  strelay --idfile relay/relay.ident --laddr 0.0.0.0:4567 --laddr [::]:4567 --metrics-addr 127.0.0.1:9090

Every flag can also go in the --config file, without its leading dashes (handshake-timeout = 10);
the command line wins. Durations are in seconds and may have fractions (0.5).
SIGTERM drains and exits 0; SIGHUP reloads --allow and the limits.)";

}  // namespace

std::optional<tcp::endpoint> try_parse_endpoint(std::string_view text, std::string& error) {
  std::string_view host;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      error = "address " + quote_text(text) + ": expected [IPv6]:port";
      return std::nullopt;
    }
    host = text.substr(1, close - 1);
    port_text = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      error = "address " + quote_text(text) + ": expected IP:port, e.g. 0.0.0.0:4567 or [::]:4567";
      return std::nullopt;
    }
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      error = "address " + quote_text(text) + ": an IPv6 address needs brackets, e.g. [::]:4567";
      return std::nullopt;
    }
  }
  std::uint64_t port = 0;
  if (!parse_u64(port_text, port) || port > 65535 ||
      (port_text.size() > 1 && port_text.front() == '0')) {
    error = "address " + quote_text(text) + ": port " + quote_text(port_text) +
            " is not a number from 0 to 65535";
    return std::nullopt;
  }
  boost::system::error_code ec;
  const auto address = boost::asio::ip::make_address(std::string(host), ec);
  if (ec || (text.front() == '[') != address.is_v6()) {
    error = "address " + quote_text(text) + ": " + quote_text(host) +
            " is not an IP address (names are not resolved)";
    return std::nullopt;
  }
  return tcp::endpoint(address, static_cast<std::uint16_t>(port));
}

std::string endpoint_to_string(const tcp::endpoint& endpoint) {
  const auto address = endpoint.address();
  const std::string host = address.is_v6() ? "[" + address.to_string() + "]" : address.to_string();
  return host + ":" + std::to_string(endpoint.port());
}

void setup_relay_options(CLI::App& app, RelayOptions& o) {
  if (app.get_name().empty()) app.name("strelay");
  app.description("strelay: an identity-authenticated relay that pairs nodes by public key");
  app.footer(footer);
  app.set_version_flag("--version", std::string("strelay ") + STRELAY_VERSION);
  app.set_config("--config", "", "Read options from a TOML or INI file (the command line wins)")
      ->type_name("FILE");
  app.allow_config_extras(CLI::config_extras_mode::error);  // a typo in the file is an error
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return "strelay: " + one_line(e.what()) + " (see strelay --help)\n";
  });

  app.add_option("--idfile", o.idfile, "The relay's identity file (stmgr gen-ident)")
      ->required()
      ->type_name("PATH");
  app.add_option_function<std::vector<std::string>>(
         "--laddr",
         [&o](const std::vector<std::string>& values) {
           o.laddr.clear();
           std::string error;
           for (const auto& v : values)
             o.laddr.push_back(*try_parse_endpoint(v, error));  // checked already
         },
         "Address to listen on, repeatable: 0.0.0.0:4567, [::]:4567 (port 0: any free port)")
      ->check(endpoint_validator())
      ->required()
      ->type_name("ADDR");
  app.add_option("--public-address", o.public_address,
                 "The HOST:PORT nodes dial; prints the relay ticket and its QR code at start")
      ->check(public_address_validator())
      ->type_name("HOST:PORT");
  app.add_option_function<std::string>(
         "--log-format", [&o](const std::string& v) { o.log_format = *parse_log_format(v); },
         "Log lines as text or json")
      ->check(one_of({"text", "json"}))
      ->default_str("text")
      ->type_name("FORMAT");
  app.add_option_function<std::string>(
         "--log-level", [&o](const std::string& v) { o.log_level = *parse_log_level(v); },
         "Least severe level written: error, warn, info, debug")
      ->check(one_of({"error", "warn", "info", "debug"}))
      ->default_str("info")
      ->type_name("LEVEL");
  app.add_option_function<std::string>(
         "--metrics-addr",
         [&o](const std::string& v) {
           std::string error;
           o.metrics_addr = try_parse_endpoint(v, error);
         },
         "HTTP address for /metrics, /status, /healthz and the status page, e.g. 127.0.0.1:9090")
      ->check(endpoint_validator())
      ->type_name("ADDR");
  app.add_option(
         "--allow", o.allow_file,
         "Allowlist file: only these node keys may listen, connect or accept (a private relay)")
      ->type_name("FILE");
  app.add_option("--threads", o.threads,
                 "Worker threads, each with its own event loop (0: one per core)")
      ->check(CLI::Range(0u, 256u))
      ->capture_default_str()
      ->type_name("N");
  setup_carriers(app, o);
  setup_limits(app, o.limits);
}

void validate_relay_options(const RelayOptions& o) {
  using CLI::ValidationError;
  if (o.idfile.empty()) throw ValidationError("--idfile", "is required");
  if (o.laddr.empty()) throw ValidationError("--laddr", "give at least one address to listen on");
  for (std::size_t i = 0; i < o.laddr.size(); ++i) {
    for (std::size_t j = i + 1; j < o.laddr.size(); ++j) {
      if (o.laddr[i] == o.laddr[j] && o.laddr[i].port() != 0) {
        throw ValidationError("--laddr", endpoint_to_string(o.laddr[i]) + " is given twice");
      }
    }
  }
  if (o.metrics_addr && o.metrics_addr->port() != 0) {
    for (const auto& l : o.laddr) {
      if (l.port() == o.metrics_addr->port() &&
          (l.address() == o.metrics_addr->address() || l.address().is_unspecified() ||
           o.metrics_addr->address().is_unspecified())) {
        throw ValidationError("--metrics-addr", endpoint_to_string(*o.metrics_addr) +
                                                    " overlaps the relay address " +
                                                    endpoint_to_string(l));
      }
    }
  }
  for (const auto& w : o.websocket_laddr) {
    for (const auto& l : o.laddr) {
      if (w == l && w.port() != 0) {
        throw ValidationError(
            "--websocket-laddr",
            endpoint_to_string(w) + " is also a --laddr (every --laddr serves WebSocket already)");
      }
    }
  }
  const auto& l = o.limits;
  if (l.keepalive_interval >= l.dead_peer_timeout) {
    throw ValidationError("--keepalive-interval",
                          "must be shorter than --dead-peer-timeout (" +
                              format_seconds(l.keepalive_interval) +
                              " s >= " + format_seconds(l.dead_peer_timeout) + " s)");
  }
  if (l.max_pending_per_source > l.max_pending_handshakes) {
    throw ValidationError("--max-pending-per-source",
                          "must not exceed --max-pending-handshakes (" +
                              std::to_string(l.max_pending_per_source) + " > " +
                              std::to_string(l.max_pending_handshakes) + ")");
  }
}

std::optional<RelayOptions> parse_relay_options(int argc, const char* const* argv, int& exit_code) {
  CLI::App app;
  RelayOptions options;
  setup_relay_options(app, options);
  try {
    app.parse(argc, argv);
    validate_relay_options(options);
  } catch (const CLI::ParseError& e) {
    exit_code = app.exit(e);
    return std::nullopt;
  }
  options.config_file = app.get_config_ptr()->as<std::string>();
  exit_code = 0;
  return options;
}

std::optional<RelayOptions> try_parse_relay_options(int argc, const char* const* argv,
                                                    std::string& error) {
  CLI::App app;
  RelayOptions options;
  setup_relay_options(app, options);
  try {
    app.parse(argc, argv);
    validate_relay_options(options);
  } catch (const CLI::ParseError& e) {
    error = one_line(e.what());
    return std::nullopt;
  }
  options.config_file = app.get_config_ptr()->as<std::string>();
  return options;
}

std::size_t effective_max_connections(const RelayLimits& limits, std::uint64_t nofile_soft_limit) {
  if (limits.max_connections > 0) return limits.max_connections;
  const auto share = static_cast<std::uint64_t>(
      static_cast<double>(std::min(nofile_soft_limit, max_auto_connections)) *
      connections_share_of_nofile);
  return static_cast<std::size_t>(std::max<std::uint64_t>(share, 1));
}

}  // namespace strelay
