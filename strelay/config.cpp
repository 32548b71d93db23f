#include "strelay/config.hpp"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <limits>

#include "common/address.hpp"
#include "common/duration.hpp"
#include "strelay/carrier.hpp"
#include "strelay/config_file.hpp"
#include "strelay/config_flags.hpp"

namespace strelay {

using namespace flags;  // strelay/config_flags: the checked option helpers

namespace {

using boost::asio::ip::tcp;

// RLIMIT_NOFILE may be "infinity"; Linux never allows more than fs.nr_open (2^20 by default).
constexpr std::uint64_t max_auto_connections = 1ull << 24;

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
  add_count(*g, "--max-topics-per-node", l.max_topics_per_node,
            "Topics one listening node may be in; past it: TopicRefused{overloaded}", 1, max_count);
  add_count(*g, "--max-members-per-topic", l.max_members_per_topic,
            "Members of one topic; past it: TopicRefused{overloaded}", 1, max_count);
  add_count(*g, "--max-introductions-per-join", l.max_introductions_per_join,
            "A newcomer meets at most this many of a topic's newest members", 1, max_count);
  add_rate(*g, "--topic-churn-rate", l.topic_churn_rate,
           "Topic joins and leaves per second per listening node; past it: "
           "TopicRefused{rate_limited}",
           0.001, max_rate, " per second");
  add_rate(*g, "--topic-churn-burst", l.topic_churn_burst, "Topic join and leave burst", 1,
           max_rate, "");
  add_rate(*g, "--introduction-rate", l.introduction_rate,
           "Introductions per second to one listening node; a pair either end cannot take is "
           "not introduced (counted)",
           0.001, max_rate, " per second");
  add_rate(*g, "--introduction-burst", l.introduction_burst, "Introduction burst per node", 1,
           max_rate, "");
  add_seconds(*g, "--drain-timeout", l.drain_timeout,
              "SIGTERM: how long running tunnels get to finish (listeners are told at once; a "
              "second SIGTERM ends the drain)",
              0, 600);
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
the command line wins. Durations are seconds (30, 0.5) or Go-style (10m, 1h30m, 500ms).
SIGTERM drains and exits 0; SIGHUP reloads --allow and the limits.
Exit codes: 0 success, 1 failure after start-up (a bad identity file, a port in use), 2 bad usage
(an unknown or invalid flag or config file option).)";

}  // namespace

std::optional<tcp::endpoint> try_parse_endpoint(std::string_view text, std::string& error) {
  std::string_view host;
  std::string_view port_text;
  if (const auto scheme = text.find("://"); scheme != std::string_view::npos) {
    error = "address " + quote_text(text) + ": give IP:port without the scheme " +
            quote_text(text.substr(0, scheme + 3)) + ", e.g. 0.0.0.0:4567";
    return std::nullopt;
  }
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      error = "address " + quote_text(text) + ": expected [IPv6]:port";
      return std::nullopt;
    }
    host = text.substr(1, close - 1);
    port_text = text.substr(close + 2);
  } else if (!text.empty() && text.front() == ':' && text.rfind(':') == 0) {
    host = "0.0.0.0";  // ":4567", as Go tools write "every address"
    port_text = text.substr(1);
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
  setup_admission_hook_options(app, o.admission_hook);
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

std::size_t effective_max_connections(const RelayLimits& limits, std::uint64_t nofile_soft_limit) {
  if (limits.max_connections > 0) return limits.max_connections;
  const auto share = static_cast<std::uint64_t>(
      static_cast<double>(std::min(nofile_soft_limit, max_auto_connections)) *
      connections_share_of_nofile);
  return static_cast<std::size_t>(std::max<std::uint64_t>(share, 1));
}

}  // namespace strelay
