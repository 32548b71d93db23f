// stmgr relay-ticket and stmgr friend-ticket.
#include <unistd.h>

#include <algorithm>
#include <iostream>
#include <memory>
#include <stdexcept>

#include "common/identity_file.hpp"
#include "common/protocol.hpp"
#include "common/tickets.hpp"
#include "stmgr/commands.hpp"

namespace strelay::stmgr {

void write_ticket_output(const std::string& output, const std::string& text, bool force) {
  if (!is_stdout(output)) {
    write_file_atomic(output, text, FileSecrecy::shareable, overwrite_if(force));
    return;
  }
  std::cout << text << (::isatty(STDOUT_FILENO) == 1 ? "\n" : "") << std::flush;
  if (!std::cout) throw FileError("-: cannot write to standard output");
}

void setup_relay_ticket(CLI::App& app) {
  auto options = std::make_shared<RelayTicketOptions>();
  CLI::App* cmd = app.add_subcommand(
      "relay-ticket", "Write the relay ticket (.relay) that nodes and Offset's app import");
  cmd->add_option("-i,--idfile", options->idfile, "The relay's identity file")->required();
  cmd->add_option("-a,--address", options->address,
                  "The address nodes dial: HOST:PORT, a DNS name, IPv4 or [IPv6]")
      ->required()
      ->check(CLI::Validator(
          [](std::string& input) {
            std::string error;
            const auto address = try_parse_address(input, error);
            if (address && address->is_unspecified()) {
              return "address \"" + input +
                     "\" is a listen-on-all address; a ticket needs the address nodes dial (the "
                     "relay's public name or IP)";
            }
            return address ? std::string() : error;
          },
          ""));
  cmd->add_option("-o,--output", options->output, "The ticket file to write (- for stdout)")
      ->required();
  cmd->add_flag("--force", options->force, "Replace the file if it exists");
  cmd->footer(
      "Example:\n"
      "  stmgr relay-ticket --address relay.example.org:4567 --idfile relay/relay.ident \\\n"
      "    --output relay/relay.relay");
  cmd->callback([options] { run_relay_ticket(*options); });
}

void run_relay_ticket(const RelayTicketOptions& options) {
  const Address address = parse_address(options.address);  // checked by --address already
  refuse_same_file(options.output, options.idfile);
  const Identity identity = load_identity(options.idfile);
  write_ticket_output(options.output,
                      format_relay_ticket(RelayTicket{identity.public_key(), address}),
                      options.force);
}

void setup_friend_ticket(CLI::App& app) {
  auto options = std::make_shared<FriendTicketOptions>();
  CLI::App* cmd = app.add_subcommand(
      "friend-ticket", "Write a friend ticket (.friend): a node's key and the relays it uses");
  cmd->add_option("-i,--idfile", options->idfile, "The node's identity file")->required();
  cmd->add_option("-r,--relay", options->relays,
                  "A relay ticket (.relay) the node listens on; repeat for redundancy (1 to 16)")
      ->required()
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  cmd->add_option("-o,--output", options->output, "The ticket file to write (- for stdout)")
      ->required();
  cmd->add_flag("--force", options->force, "Replace the file if it exists");
  cmd->footer(
      "Example:\n"
      "  stmgr friend-ticket --idfile node/node.ident --relay relay0.relay \\\n"
      "    --relay relay1.relay --output node/node.friend");
  cmd->callback([options] { run_friend_ticket(*options); });
}

void run_friend_ticket(const FriendTicketOptions& options) {
  if (options.relays.size() > max_friend_ticket_relays) {
    throw std::invalid_argument(std::to_string(options.relays.size()) +
                                " relays given; a friend ticket names 1 to " +
                                std::to_string(max_friend_ticket_relays));
  }
  refuse_same_file(options.output, options.idfile);
  const Identity identity = load_identity(options.idfile);
  FriendTicket ticket{identity.public_key(), {}};
  for (const auto& path : options.relays) {
    refuse_same_file(options.output, path);
    RelayTicket relay = load_relay_ticket(path);
    if (std::find(ticket.relays.begin(), ticket.relays.end(), relay) != ticket.relays.end()) {
      throw FileError(path + ": names a relay already given by another --relay");
    }
    ticket.relays.push_back(std::move(relay));
  }
  write_ticket_output(options.output, format_friend_ticket(ticket), options.force);
}

}  // namespace strelay::stmgr
