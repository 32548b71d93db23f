#include "strelay/daemon.hpp"

#include <malloc.h>
#include <sys/resource.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <csignal>
#include <iostream>
#include <memory>

#include "common/qr.hpp"
#include "common/tickets.hpp"
#include "strelay/config_file.hpp"
#include "strelay/status_limits.hpp"

namespace strelay {

namespace asio = boost::asio;

std::uint64_t raise_nofile_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 1024;
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
    ::getrlimit(RLIMIT_NOFILE, &limit);
  }
  return limit.rlim_cur;
}

ServerSettings to_server_settings(const RelayOptions& options, std::uint64_t nofile) {
  const auto& l = options.limits;
  ServerSettings s;
  s.listen = options.laddr;
  s.websocket_listen = options.websocket_laddr;
  s.carrier.websocket_path = options.websocket_path;
  s.carrier.allowed_origins = options.allow_origin;
  for (const auto& range : options.trusted_proxy) s.carrier.trusted_proxies.add(range);
  s.carrier.web_root = options.web_root;
  s.threads = options.threads;
  s.admission.connections_total = effective_max_connections(l, nofile);  // refined at run()
  s.descriptors = {nofile, l.max_connections,
                   options.metrics_addr ? http_connection_cap(nofile) : 0};
  s.admission.pending_total = l.max_pending_handshakes;
  s.admission.pending = {l.max_pending_per_source, l.max_pending_per_prefix};
  s.admission.connections = {l.max_connections_per_source, l.max_connections_per_prefix};
  s.admission.prefixes.ipv4_bits = static_cast<std::uint8_t>(l.ipv4_prefix);
  s.admission.min_handshake_timeout = l.min_handshake_timeout;
  s.pairing.listeners = {l.max_listeners_per_source, 4 * l.max_listeners_per_source};
  s.pairing.half_tunnels = {l.max_pending_connects_per_source,
                            4 * l.max_pending_connects_per_source};
  s.pairing.half_tunnels_per_target = l.max_pending_connects_per_target;
  s.pairing.connect_rate_per_source = l.connect_rate_per_source_per_minute / 60.0;
  s.pairing.connect_burst_per_source = l.connect_burst_per_source;
  s.control_rate = l.control_rate;
  s.control_burst = l.control_burst;
  s.admission.rate_per_source = l.handshake_rate_per_second;
  s.admission.burst_per_source = l.handshake_burst;
  s.pairing.half_tunnel_ttl = l.half_tunnel_ttl;
  s.pairing.connect_rate = l.connect_rate_per_minute / 60.0;
  s.pairing.connect_burst = l.connect_burst;
  s.pairing.topics = {l.max_topics_per_node, l.max_members_per_topic, l.max_introductions_per_join};
  s.pairing.topic_churn_rate = l.topic_churn_rate;
  s.pairing.topic_churn_burst = l.topic_churn_burst;
  s.pairing.introduction_rate = l.introduction_rate;
  s.pairing.introduction_burst = l.introduction_burst;
  s.tunnel.buffer_bytes = l.tunnel_buffer;
  s.tunnel.clamp_socket_buffers = l.tunnel_clamp_socket_buffers;
  s.bandwidth = {l.global_rate, l.tunnel_rate};
  s.tunnel.write_stall = l.write_stall_timeout;
  s.tunnel.idle_timeout = l.dead_peer_timeout;
  s.handshake_timeout = l.handshake_timeout;
  s.write_stall = l.write_stall_timeout;
  s.keepalive = l.keepalive_interval;
  s.dead_peer = l.dead_peer_timeout;
  s.drain = l.drain_timeout;
  s.admission_hook = options.admission_hook;
  return s;
}

std::optional<Allowlist> load_allowed_keys(const RelayOptions& options) {
  if (options.allow_file.empty()) return std::nullopt;
  std::vector<std::string> warnings;
  auto list = load_allowlist(options.allow_file, &warnings);
  for (const auto& warning : warnings)
    process_logger().warn("allowlist", {}, {{"warning", warning}});
  return list;
}

std::string public_ticket(const RelayOptions& options, const PublicKey& key) {
  if (options.public_address.empty()) return {};
  return format_relay_ticket(RelayTicket{key, parse_address(options.public_address)});
}

namespace {

std::string compact_ticket(const std::string& ticket_json) {
  std::string compact;
  for (char c : ticket_json) {
    if (c != '\n' && c != ' ') compact += c;
  }
  return compact;
}

}  // namespace

std::string startup_line(const PublicKey& key, const std::vector<asio::ip::tcp::endpoint>& bound,
                         const std::optional<asio::ip::tcp::endpoint>& metrics,
                         const std::string& ticket_json) {
  std::string line = "strelay " STRELAY_VERSION " listening on";
  for (const auto& endpoint : bound) line += " " + endpoint_to_string(endpoint);
  line += " public key " + key.to_base64url();
  if (metrics) line += " metrics http://" + endpoint_to_string(*metrics) + "/";
  if (!ticket_json.empty()) line += " ticket " + compact_ticket(ticket_json);
  return line;
}

void write_startup(Logger& log, const PublicKey& key,
                   const std::vector<asio::ip::tcp::endpoint>& bound,
                   const std::optional<asio::ip::tcp::endpoint>& metrics,
                   const std::string& ticket_json) {
  if (log.format() != LogFormat::json) {
    std::cerr << startup_line(key, bound, metrics, ticket_json) << std::endl;
    return;
  }
  std::string listen;
  for (const auto& endpoint : bound)
    listen += (listen.empty() ? "" : " ") + endpoint_to_string(endpoint);
  log.info("listening", {},
           {{"version", STRELAY_VERSION},
            {"listen", listen},
            {"public_key", key.to_base64url()},
            {"metrics", metrics ? "http://" + endpoint_to_string(*metrics) + "/" : ""},
            {"ticket", compact_ticket(ticket_json)}});
}

StatusInfo status_info(const RelayOptions& options, const PublicKey& key,
                       const std::string& ticket_json,
                       const std::vector<asio::ip::tcp::endpoint>& bound) {
  StatusInfo info;
  info.version = STRELAY_VERSION;
  info.public_key = key.to_base64url();
  info.ticket_json = ticket_json;
  if (!ticket_json.empty()) info.qr_svg = render_svg(QrCode::encode(ticket_json));
  for (const auto& endpoint : bound) info.listen_addresses.push_back(endpoint_to_string(endpoint));
  info.start_time = std::chrono::system_clock::now();
  // The connection cap in force, not the flag's 0.
  info.limits = describe_limits(options.limits, raise_nofile_limit());
  return info;
}

std::unique_ptr<HttpServer> start_http(Server& server, const RelayOptions& options,
                                       StatusInfo info) {
  if (!options.metrics_addr) return nullptr;
  HttpLimits limits;
  limits.max_connections = http_connection_cap(raise_nofile_limit());  // within the fd budget
  limits.max_per_source = options.limits.http_max_per_source;
  auto http = std::make_unique<HttpServer>(server.control_executor(), *options.metrics_addr,
                                           server.metrics(), info, server.log(), limits);
  http->start();
  // The cap in force is known once run() has counted the descriptors open at start.
  server.on_budget([raw = http.get(), info](const DescriptorBudget& budget) mutable {
    set_max_connections(info.limits, budget.connections);
    raw->set_status_info(std::move(info));
  });
  server.on_drain([raw = http.get()] { raw->stop(); });
  return http;
}

void start_housekeeping(Server& server) {
  auto loop = [&server]() -> asio::awaitable<void> {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    std::chrono::steady_clock::duration since_trim = memory_trim_interval;
    MemoryTrimPolicy trim;
    while (!server.draining()) {
      timer.expires_after(log_summary_interval);
      co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
      server.log().flush_suppressed();
      const auto connections = server.metrics().connections.get();
      trim.sample(server.take_connection_peak());  // a burst between two ticks counts too
      since_trim += log_summary_interval;
      // After a burst of connections, glibc keeps their freed memory in each worker's arena;
      // handing it back keeps a small machine's relay near its idle size between bursts.
      // Checked at every tick, so a burst's memory is back within about one tick of its end
      // (issue 17.3: within 60 s); at most one trim per memory_trim_interval all the same.
      if (since_trim >= memory_trim_interval && trim.trim_due(connections)) {
        since_trim = 0s;
        malloc_trim(0);
      }
    }
  };
  asio::co_spawn(server.control_executor(), std::move(loop), asio::detached);
}

void handle_signals(Server& server, int argc, const char* const* argv, RelayOptions started,
                    std::function<void(const RelayOptions&)> on_reload) {
  // `started` is taken as main parsed it: read again here, a file edited right after the
  // start would become the baseline and its changes would pass unnoticed.
  // The handlers are installed now, before main says READY=1: made inside the coroutine, they
  // waited for the io_context to run, and a `systemctl reload` in between found SIGHUP's
  // default action and ended the relay (notify_test met it on a loaded machine). Asio keeps a
  // signal that comes before the first wait.
  auto signals =
      std::make_shared<asio::signal_set>(server.control_executor(), SIGTERM, SIGINT, SIGHUP);
  auto loop = [&server, argc, argv, signals, started = std::move(started),
               on_reload = std::move(on_reload)]() -> asio::awaitable<void> {
    for (;;) {
      auto [ec, signal] = co_await signals->async_wait(asio::as_tuple(asio::use_awaitable));
      if (ec) co_return;
      if (signal != SIGHUP) {
        server.shutdown();  // a second SIGTERM ends the drain: the tunnels left are stopped
        continue;
      }
      std::string error;
      auto options = try_parse_relay_options(argc, argv, error);
      std::optional<Allowlist> allowed;
      if (options && !options->allow_file.empty()) {
        auto list = try_load_allowlist(options->allow_file, error);
        if (list) {
          allowed = std::move(*list);
        } else {
          options.reset();
        }
      }
      if (!options) {
        server.metrics().reloads_total.inc(ReloadOutcome::failed);
        server.log().error("reload_failed", {}, {{"error", error}});
        continue;
      }
      server.reload(to_server_settings(*options, raise_nofile_limit()), std::move(allowed));
      if (on_reload) on_reload(*options);
      server.metrics().reloads_total.inc(ReloadOutcome::ok);
      server.log().info("reloaded", {}, {{"allowlist", options->allow_file}});
      if (const auto pending = restart_only_changes(started, *options); !pending.empty()) {
        std::string names;
        for (const auto& name : pending) names += (names.empty() ? "" : ",") + name;
        server.log().warn("reload_needs_restart", {}, {{"options", names}});
      }
    }
  };
  asio::co_spawn(server.control_executor(), std::move(loop), asio::detached);
}

}  // namespace strelay
