// stcat: a netcat for friends behind NAT. Pipes stdin/stdout (or a command) end to end, encrypted
// and authenticated node to node, through one or more strelay relays.
// Thin: flags, libsodium, dispatch; the exit codes are in stcat.hpp and `stcat --help`.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "common/keys.hpp"
#include "common/usage.hpp"
#include "stcat.hpp"

int main(int argc, char** argv) {
  using namespace strelay::stcat;
  // Before anything else: session keys and the peer's bytes will sit on the heap.
  strelay::disable_core_dumps();
  CLI::App app{"stcat: pipe bytes to a friend through strelay relays, like nc", "stcat"};
  app.set_version_flag("--version", std::string("stcat ") + STRELAY_VERSION);
  app.require_subcommand(1);
  app.footer(
      "Two terminals:\n"
      "  stcat listen  --idfile bob.ident --relay relay.relay --allow alice.friend\n"
      "  stcat connect --idfile alice.ident --to bob.friend\n"
      "`stcat COMMAND --help` shows each command's flags.\n\n" +
      exit_codes_help());
  ListenOptions listen;
  ConnectOptions connect;
  MeetOptions meet;
  CLI::App* listen_cmd = setup_listen(app, listen);
  CLI::App* connect_cmd = setup_connect(app, connect);
  CLI::App* meet_cmd = setup_meet(app, meet);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    std::cerr << "stcat: " << strelay::usage_message(app, e) << " (see stcat --help)\n";
    return exit_usage;
  }
  ::signal(SIGPIPE, SIG_IGN);  // a closed stdout or command is an error code, not a signal
  try {
    strelay::init_crypto();
    if (listen_cmd->parsed()) return run_listen(listen);
    if (connect_cmd->parsed()) return run_connect(connect);
    if (meet_cmd->parsed()) return run_meet(meet);
  } catch (const std::exception& e) {
    // Bad files and flags: loading happens before any connection.
    std::cerr << "stcat: " << strelay::printable(e.what()) << '\n';
    return exit_usage;
  }
  return exit_usage;
}
