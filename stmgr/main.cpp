// stmgr: writes identity files, relay tickets and friend tickets, and shows tickets as QR
// codes. Thin: flags, libsodium, dispatch; every failure ends here as one line on stderr.
//
// Exit codes: 0 success, 1 the command failed (bad file, refused overwrite, ...), 2 bad usage.
#include <CLI/CLI.hpp>
#include <iostream>
#include <string>

#include "common/keys.hpp"
#include "common/usage.hpp"
#include "stmgr/commands.hpp"

namespace {

// Error texts must stay on one line: newlines become "; ".
std::string one_line(std::string text) {
  while (!text.empty() && text.back() == '\n') text.pop_back();
  for (std::size_t at = text.find('\n'); at != std::string::npos; at = text.find('\n', at)) {
    text.replace(at, 1, "; ");
  }
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  // Before anything else: gen-ident and pubkey hold identity seeds.
  strelay::disable_core_dumps();
  CLI::App app{
      "stmgr: identity files, relay tickets and friend tickets for strelay "
      "(Offset-compatible)",
      "stmgr"};
  app.set_version_flag("--version", std::string("stmgr ") + STRELAY_VERSION);
  app.require_subcommand(1);
  app.footer(
      "Run a relay (the Offset workflow):\n"
      "  stmgr gen-ident --output relay/relay.ident\n"
      "  stmgr relay-ticket --address relay.example.org:4567 --idfile relay/relay.ident \\\n"
      "    --output relay/relay.relay\n"
      "  stmgr qr relay/relay.relay\n"
      "`stmgr COMMAND --help` shows each command's flags.");
  strelay::stmgr::setup_gen_ident(app);
  strelay::stmgr::setup_relay_ticket(app);
  strelay::stmgr::setup_friend_ticket(app);
  strelay::stmgr::setup_pubkey(app);
  strelay::stmgr::setup_show(app);
  strelay::stmgr::setup_qr(app);

  try {
    strelay::init_crypto();
    app.parse(argc, argv);  // runs the chosen subcommand's callback
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    std::cerr << "stmgr: " << strelay::usage_message(app, e) << " (see stmgr --help)\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "stmgr: " << strelay::printable(one_line(e.what())) << '\n';
    return 1;
  }
  return 0;
}
