// stmgr's subcommands. Each is an options struct, a setup_x() that declares its flags on the
// main CLI::App (the parsed options are bound to the subcommand's callback), and a run_x()
// that does the work. run_x() throws on any failure with a one-line message; main() prints it.
#pragma once

#include <CLI/CLI.hpp>
#include <filesystem>
#include <string>
#include <vector>

#include "common/secure_file.hpp"

namespace strelay::stmgr {

struct GenIdentOptions {
  std::string output;
  bool force = false;
};
void setup_gen_ident(CLI::App& app);
void run_gen_ident(const GenIdentOptions& options);

struct RelayTicketOptions {
  std::string idfile;
  std::string address;
  std::string output;
  bool force = false;
};
void setup_relay_ticket(CLI::App& app);
void run_relay_ticket(const RelayTicketOptions& options);

struct FriendTicketOptions {
  std::string idfile;
  std::vector<std::string> relays;
  std::string output;
  bool force = false;
};
void setup_friend_ticket(CLI::App& app);
void run_friend_ticket(const FriendTicketOptions& options);

struct PubkeyOptions {
  std::string idfile;
};
void setup_pubkey(CLI::App& app);
void run_pubkey(const PubkeyOptions& options);

struct ShowOptions {
  std::string file;
};
void setup_show(CLI::App& app);
void run_show(const ShowOptions& options);

struct QrOptions {
  std::string file;
  std::string png;
  std::string svg;
  std::string colors = "auto";  // auto | always | never
  bool force = false;
};
void setup_qr(CLI::App& app);
void run_qr(const QrOptions& options);

// --force means: replace an existing file.
inline Overwrite overwrite_if(bool force) {
  return force ? Overwrite::replace : Overwrite::refuse;
}

// "-o -": standard output; /dev/stdout is read the same way (it is a symlink to a terminal or
// pipe, which --force must never replace by a file).
inline bool is_stdout(const std::string& output) {
  return output == "-" || output == "/dev/stdout";
}

// Writes a ticket's exact bytes to `output`, or to standard output for "-" (with a final
// newline only on a terminal, so `> file` keeps the file's bytes).
void write_ticket_output(const std::string& output, const std::string& text, bool force);

// Refuses to write `output` over `input` (say, a ticket over the identity it was made from,
// which would destroy the key with --force).
inline void refuse_same_file(const std::filesystem::path& output,
                             const std::filesystem::path& input) {
  std::error_code ignored;
  if (is_stdout(output.string())) return;
  if (output == input || std::filesystem::equivalent(output, input, ignored)) {
    throw FileError(output.string() + ": is also an input file (" + input.string() +
                    "); choose another output");
  }
}

}  // namespace strelay::stmgr
