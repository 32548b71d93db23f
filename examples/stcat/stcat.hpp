// stcat's subcommands (listen, connect): options structs, their CLI set-up, their runs, and
// the exit codes (docs/node-library.md has the same table).
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <system_error>
#include <vector>

namespace strelay::stcat {

enum ExitCode : int {
  exit_ok = 0,                 // end of data: both directions finished
  exit_local_error = 1,        // stdin/stdout or the --exec command failed, or a bug
  exit_usage = 2,              // bad flags, or an identity/ticket/allow file that cannot be used
  exit_refused = 3,            // the peer or the relay said no (rejected, not listening, ...)
  exit_unreachable = 4,        // no relay could be reached
  exit_identity_mismatch = 5,  // a relay's (or the peer's) key is not the pinned one
  exit_integrity = 6,          // tunnel data failed to authenticate (tampering), either side
  exit_lost = 7,               // the connection ended before all data was exchanged
  exit_version = 8,            // a relay (or the peer) speaks another protocol version
  exit_nobody = 9,             // meet: nobody was met before --wait ran out
};

// The --help text of the table above.
std::string exit_codes_help();
// For a failed connect (before any data), and for the end of a session's stream.
int exit_code_for_connect(std::error_code error);
int exit_code_for_stream(std::error_code error);
// "relay HOST:PORT: <message>", or "not a strelay relay at HOST:PORT (it answered like HTTP)".
std::string relay_error_text(const std::string& address, std::error_code error);

struct CommonOptions {
  std::string idfile;
  std::vector<std::string> relays;
  std::string exec;
  int verbose = 0;
  // Timers, in seconds (defaults from common/protocol.hpp); tests make them small.
  double backoff_initial = 0;
  double backoff_cap = 0;
  double keepalive_interval = 0;
  double dead_peer_timeout = 0;
  double connect_timeout = 0;
  bool no_standby = false;    // listen: accept on a new connection each time (issue 17.2)
  bool no_early_e2e = false;  // the whole end-to-end handshake in the pipe (issue 17.2)
};

struct ListenOptions : CommonOptions {
  std::vector<std::string> allow;
  bool keep_listening = false;
};

struct ConnectOptions : CommonOptions {
  std::string to;
};

struct MeetOptions : CommonOptions {
  std::string topic;
  bool all = false;  // list the peers introduced, exchange nothing
  double wait = 0;   // seconds; 0: no limit
};

CLI::App* setup_listen(CLI::App& app, ListenOptions& options);
CLI::App* setup_meet(CLI::App& app, MeetOptions& options);
CLI::App* setup_connect(CLI::App& app, ConnectOptions& options);

// Both throw std::exception for bad files (main reports it with exit_usage).
int run_listen(const ListenOptions& options);
int run_connect(const ConnectOptions& options);
int run_meet(const MeetOptions& options);

}  // namespace strelay::stcat
