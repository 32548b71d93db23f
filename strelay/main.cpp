// strelay: the relay daemon. Parses flags, sets up the process, loads the identity, runs.
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <exception>
#include <iostream>

#include "common/identity_file.hpp"
#include "common/qr.hpp"
#include "common/usage.hpp"
#include "strelay/activation.hpp"
#include "strelay/daemon.hpp"
#include "strelay/notify.hpp"
#include "strelay/status_limits.hpp"

int main(int argc, char** argv) {
  using namespace strelay;
  int exit_code = 0;
  auto options = parse_relay_options(argc, argv, exit_code);
  if (!options) return exit_code;
  try {
    disable_core_dumps();
    // splice(2) into a socket whose peer has reset raises SIGPIPE (it has no MSG_NOSIGNAL); the
    // error is handled where it happens, so the signal must not end every user's session.
    std::signal(SIGPIPE, SIG_IGN);
    init_crypto();
    const std::uint64_t nofile = raise_nofile_limit();
    Logger& log = process_logger();
    log.set_format(options->log_format);
    log.set_level(options->log_level);

    const Identity identity = load_identity(options->idfile);
    const auto allowed = load_allowed_keys(*options);
    const std::string ticket = public_ticket(*options, identity.public_key());

    Metrics metrics;
    Server server(identity, to_server_settings(*options, nofile), metrics, log);
    // Under a strelay.socket unit systemd passes the listening sockets (they replace --laddr).
    const auto activated = take_activated_sockets();
    if (activated.empty()) {
      server.bind();
    } else {
      server.adopt(activated);
    }
    if (allowed) server.set_allowlist(*allowed);
    auto info = status_info(*options, identity.public_key(), ticket, server.local_endpoints());
    const auto http = start_http(server, *options, info);
    handle_signals(server, argc, argv, *options,
                   [&http, info](const RelayOptions& reloaded) mutable {
                     notify(status_message("reloaded the limits and the allowlist"));
                     if (!http) return;
                     info.limits = describe_limits(reloaded.limits, raise_nofile_limit());
                     http->set_status_info(info);
                   });

    // The start-up line goes to stderr, so `strelay ... &` and nohup keep stdout for the ticket.
    write_startup(log, identity.public_key(), server.local_endpoints(),
                  http ? std::optional(http->local_endpoint()) : std::nullopt, ticket);
    if (!ticket.empty()) {
      std::cout << ticket << "\n"
                << render_terminal(QrCode::encode(ticket), terminal_style_for(STDOUT_FILENO))
                << std::flush;
    }
    start_housekeeping(server);
    start_notify(server);
    // Every socket listens already (the kernel queues connections until run() accepts them).
    notify(ready_message("serving " + std::to_string(server.local_endpoints().size()) +
                         " addresses, key " + identity.public_key().fingerprint()));
    server.run();
    log.flush_suppressed();
    return 0;
  } catch (const std::exception& e) {
    // With --log-format json the cause is a JSON line too, like every other line on stderr.
    if (process_logger().format() == LogFormat::json)
      process_logger().error("cannot_start", {}, {{"error", e.what()}});
    else
      std::cerr << "strelay: " << printable(e.what()) << std::endl;  // a path may hold any byte
    return 1;
  }
}
