// stmgr gen-ident and stmgr pubkey.
#include <iostream>
#include <memory>

#include "common/identity_file.hpp"
#include "stmgr/commands.hpp"

namespace strelay::stmgr {

void setup_gen_ident(CLI::App& app) {
  auto options = std::make_shared<GenIdentOptions>();
  CLI::App* cmd = app.add_subcommand(
      "gen-ident", "Write a new identity (Ed25519 key) file, mode 0600; print its public key");
  cmd->add_option("-o,--output", options->output, "The identity file to write")->required();
  cmd->add_flag("--force", options->force, "Replace the file if it exists (the old key is lost)");
  cmd->footer(
      "Example:\n"
      "  stmgr gen-ident --output relay/relay.ident");
  cmd->callback([options] { run_gen_ident(*options); });
}

void run_gen_ident(const GenIdentOptions& options) {
  if (is_stdout(options.output)) {
    throw CLI::ValidationError("--output",
                               "an identity holds a private key and is never written to standard "
                               "output; give a file name");
  }
  const Identity identity = Identity::generate();
  write_identity(options.output, identity, overwrite_if(options.force));
  std::cout << identity.public_key().to_base64url() << '\n';
}

void setup_pubkey(CLI::App& app) {
  auto options = std::make_shared<PubkeyOptions>();
  CLI::App* cmd = app.add_subcommand("pubkey", "Print the base64url public key of an identity");
  cmd->add_option("-i,--idfile", options->idfile, "The identity file")->required();
  cmd->footer(
      "Example:\n"
      "  stmgr pubkey --idfile relay/relay.ident");
  cmd->callback([options] { run_pubkey(*options); });
}

void run_pubkey(const PubkeyOptions& options) {
  std::cout << load_identity(options.idfile).public_key().to_base64url() << '\n';
}

}  // namespace strelay::stmgr
