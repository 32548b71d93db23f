// The glue between strelay's flags and its server: process set-up, the settings in the
// server's units, the start-up line, and the signals. Kept apart so main.cpp stays thin.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/allowlist.hpp"
#include "common/keys.hpp"
#include "strelay/config.hpp"
#include "strelay/http.hpp"
#include "strelay/relay_state.hpp"
#include "strelay/server.hpp"

namespace strelay {

// Raises the soft RLIMIT_NOFILE to the hard limit and returns the soft limit in force.
std::uint64_t raise_nofile_limit();

// The flags in the server's units; `nofile` is the soft RLIMIT_NOFILE (for the 80% default).
ServerSettings to_server_settings(const RelayOptions& options, std::uint64_t nofile);
// The --allow file as the pairing table wants it; nullopt without --allow. Throws on a bad file.
std::optional<Allowlist> load_allowed_keys(const RelayOptions& options);

// "strelay 0.1.0 listening on 0.0.0.0:4567 [::]:4567 public key A6EH... metrics 127.0.0.1:9090
//  ticket {...}": one line with everything an operator needs to check and share.
std::string startup_line(const PublicKey& key,
                         const std::vector<boost::asio::ip::tcp::endpoint>& bound,
                         const std::optional<boost::asio::ip::tcp::endpoint>& metrics,
                         const std::string& ticket_json);
// Writes the start-up line to stderr, or with --log-format json the same facts as one JSON log
// line (event "listening"), so that every line on stderr is JSON.
void write_startup(Logger& log, const PublicKey& key,
                   const std::vector<boost::asio::ip::tcp::endpoint>& bound,
                   const std::optional<boost::asio::ip::tcp::endpoint>& metrics,
                   const std::string& ticket_json);
// The relay ticket for --public-address, as Offset writes it; empty without the flag.
std::string public_ticket(const RelayOptions& options, const PublicKey& key);

// What the status page and /status show about this relay.
StatusInfo status_info(const RelayOptions& options, const PublicKey& key,
                       const std::string& ticket_json,
                       const std::vector<boost::asio::ip::tcp::endpoint>& bound);

// The HTTP endpoint on --metrics-addr, on the server's control worker; null without the flag.
// It is stopped when the server starts draining.
std::unique_ptr<HttpServer> start_http(Server& server, const RelayOptions& options,
                                       StatusInfo info);

// Every log_summary_interval, writes a summary of log lines suppressed by rate limiting, and
// returns the heap's free pages to the system (malloc_trim) when the connections have dropped
// since their peak (MemoryTrimPolicy), at most once per memory_trim_interval.
void start_housekeeping(Server& server);

// SIGTERM/SIGINT drain the server; SIGHUP re-reads the flags (and the config file), then
// reloads the limits and the allowlist, keeping the old ones when anything is wrong.
// `on_reload` then sees the new options (the status page shows the new limits). `started` are
// the options the relay runs with until a restart: a reload that changes one only a restart
// applies says so.
void handle_signals(Server& server, int argc, const char* const* argv, RelayOptions started,
                    std::function<void(const RelayOptions&)> on_reload);

}  // namespace strelay
