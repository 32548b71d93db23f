// stmgr show and stmgr qr: inspect a file, draw a ticket as a QR code.
#include <unistd.h>

#include <iostream>
#include <memory>
#include <stdexcept>

#include "common/identity_file.hpp"
#include "common/protocol.hpp"
#include "common/qr.hpp"
#include "common/tickets.hpp"
#include "stmgr/commands.hpp"

namespace strelay::stmgr {

namespace {

// A file's text and its kind. An identity is read here only to learn its kind; it is then
// loaded again by load_identity, which applies the secret-file rules.
struct Inspected {
  SecretText text;
  FileKind kind;
};

Inspected inspect(const std::string& path) {
  SecretText text = read_file_bounded(path, max_ticket_file_bytes, FileSecrecy::shareable);
  std::string error;
  const auto kind = try_detect_file_kind({text.data(), text.size()}, path, error);
  if (!kind) throw FileError(error);
  return {std::move(text), *kind};
}

TerminalStyle terminal_style(const std::string& choice) {
  if (choice == "auto") return terminal_style_for(STDOUT_FILENO);
  return choice == "always" ? TerminalStyle::ansi_colors : TerminalStyle::plain;
}

}  // namespace

void setup_show(CLI::App& app) {
  auto options = std::make_shared<ShowOptions>();
  CLI::App* cmd = app.add_subcommand(
      "show", "Check an identity, relay ticket or friend ticket; print its kind and keys");
  cmd->add_option("file", options->file, "The file to check")->required();
  cmd->footer(
      "Never prints a private key. Exits non-zero, with the reason, if the file is invalid.\n"
      "Example:\n"
      "  stmgr show relay/relay.relay");
  cmd->callback([options] { run_show(*options); });
}

void run_show(const ShowOptions& options) {
  const Inspected file = inspect(options.file);
  const std::string_view text(file.text.data(), file.text.size());
  switch (file.kind) {
    case FileKind::identity: {
      const Identity identity = load_identity(options.file);
      std::cout << "kind: identity\npublic key: " << identity.public_key().to_base64url() << '\n';
      return;
    }
    case FileKind::relay_ticket: {
      const RelayTicket ticket = parse_relay_ticket(text, options.file);
      std::cout << "kind: relay ticket\npublic key: " << ticket.public_key.to_base64url()
                << "\naddress: " << ticket.address.to_string() << '\n';
      return;
    }
    case FileKind::friend_ticket: {
      const FriendTicket ticket = parse_friend_ticket(text, options.file);
      std::cout << "kind: friend ticket\npublic key: " << ticket.public_key.to_base64url() << '\n';
      for (std::size_t i = 0; i < ticket.relays.size(); ++i) {
        std::cout << "relay " << i + 1 << ": " << ticket.relays[i].address.to_string() << ' '
                  << ticket.relays[i].public_key.to_base64url() << '\n';
      }
      return;
    }
  }
}

void setup_qr(CLI::App& app) {
  auto options = std::make_shared<QrOptions>();
  CLI::App* cmd = app.add_subcommand(
      "qr", "Draw a relay or friend ticket as a QR code for a phone; optionally save PNG/SVG");
  cmd->add_option("file", options->file, "The ticket file (.relay or .friend)")->required();
  cmd->add_option("--png", options->png, "Also write the code as a PNG image");
  cmd->add_option("--svg", options->svg, "Also write the code as an SVG image");
  cmd->add_option("--colors", options->colors,
                  "auto: ANSI colours on a terminal; always; never: plain blocks, right on "
                  "light-on-dark terminals")
      ->check(CLI::IsMember({"auto", "always", "never"}));
  cmd->add_flag("--force", options->force, "Replace image files that exist");
  cmd->footer(
      "The code holds the ticket's JSON, as `relay-ticket` writes it. Identity files are refused.\n"
      "Example:\n"
      "  stmgr qr relay/relay.relay --png relay/relay.png");
  cmd->callback([options] { run_qr(*options); });
}

void run_qr(const QrOptions& options) {
  const Inspected file = inspect(options.file);
  const std::string_view text(file.text.data(), file.text.size());
  std::string content;  // the ticket as the writer lays it out, whatever the file's spacing
  switch (file.kind) {
    case FileKind::identity:
      throw FileError(options.file +
                      ": is an identity file; it holds a private key and is never shown as a QR "
                      "code (use its .relay or .friend ticket)");
    case FileKind::relay_ticket:
      content = format_relay_ticket(parse_relay_ticket(text, options.file));
      break;
    case FileKind::friend_ticket:
      content = format_friend_ticket(parse_friend_ticket(text, options.file));
      break;
  }
  std::string error;
  const auto encoded = QrCode::try_encode(content, error);
  if (!encoded) throw FileError(options.file + ": " + error);
  const QrCode& code = *encoded;
  for (const auto& image : {options.png, options.svg}) {
    if (!image.empty()) refuse_same_file(image, options.file);
  }
  if (!options.png.empty()) {
    const auto png = render_png(code);
    write_file_atomic(options.png,
                      std::string_view(reinterpret_cast<const char*>(png.data()), png.size()),
                      FileSecrecy::shareable, overwrite_if(options.force));
  }
  if (!options.svg.empty()) {
    write_file_atomic(options.svg, render_svg(code), FileSecrecy::shareable,
                      overwrite_if(options.force));
  }
  std::cout << render_terminal(code, terminal_style(options.colors));
}

}  // namespace strelay::stmgr
