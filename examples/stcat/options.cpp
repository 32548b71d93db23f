// stcat's flags and exit codes.
#include <chrono>
#include <sstream>

#include "common/address.hpp"  // quote_for_message
#include "common/duration.hpp"
#include "common/errors.hpp"
#include "common/protocol.hpp"
#include "stcat.hpp"

namespace strelay::stcat {

namespace {

double seconds(std::chrono::milliseconds d) {
  return std::chrono::duration<double>(d).count();
}

// Seconds (0.5) or a Go-style duration (10m, 500ms, as strelay takes them), lo..hi seconds;
// the input becomes plain seconds for CLI11's conversion.
CLI::Validator seconds_between(double lo, double hi) {
  return CLI::Validator(
      [lo, hi](std::string& input) -> std::string {
        const auto s = parse_duration_seconds(input);
        if (!s) {
          return quote_for_message(input) +
                 " is not a duration: give seconds (30, 0.5) or 10m, 1h30m, 500ms";
        }
        if (*s < lo || *s > hi) {
          std::ostringstream range;
          range << input << " is out of range: give " << lo << " to " << hi << " seconds";
          return range.str();
        }
        input = std::to_string(*s);
        return {};
      },
      "");
}

void add_common(CLI::App& cmd, CommonOptions& o) {
  cmd.add_option("-i,--idfile", o.idfile, "This node's identity file (stmgr gen-ident)")
      ->required();
  cmd.add_option("--exec", o.exec,
                 "Serve this command's stdin and stdout (run with /bin/sh -c) instead of ours");
  cmd.add_flag("-v,--verbose", o.verbose,
               "Report relays, connections and progress on stderr (-vv adds the library's log)");
  cmd.add_flag("--no-early-e2e", o.no_early_e2e,
               "Run the whole end-to-end handshake in the tunnel: no msg1 with Connect (connect),"
               " none taken with IncomingConnection (listen)");
  auto* timers = cmd.add_option_group("Timers (seconds, or 10m, 1h30m, 500ms)");
  o.backoff_initial = seconds(node_backoff_initial);
  o.backoff_cap = seconds(node_backoff_cap);
  o.keepalive_interval = seconds(keepalive_interval);
  o.dead_peer_timeout = seconds(dead_peer_timeout);
  o.connect_timeout = seconds(node_connect_timeout);
  timers->add_option("--backoff-initial", o.backoff_initial, "First reconnection delay bound")
      ->check(seconds_between(0.001, 3600.0))
      ->capture_default_str()
      ->type_name("SECONDS");
  timers->add_option("--backoff-cap", o.backoff_cap, "Largest reconnection delay")
      ->check(seconds_between(0.001, 3600.0))
      ->capture_default_str()
      ->type_name("SECONDS");
  timers
      ->add_option("--keepalive-interval", o.keepalive_interval,
                   "Ping relays and peers after this much silence")
      ->check(seconds_between(0.01, 3600.0))
      ->capture_default_str()
      ->type_name("SECONDS");
  timers
      ->add_option("--dead-peer-timeout", o.dead_peer_timeout,
                   "A relay or peer silent this long is gone")
      ->check(seconds_between(0.02, 7200.0))
      ->capture_default_str()
      ->type_name("SECONDS");
  timers
      ->add_option("--connect-timeout", o.connect_timeout,
                   "Per relay: DNS, TCP and the relay handshake")
      ->check(seconds_between(0.01, 600.0))
      ->capture_default_str()
      ->type_name("SECONDS");
}

}  // namespace

std::string exit_codes_help() {
  return "Exit codes:\n"
         "  0  end of data: both directions finished\n"
         "  1  local error: stdin/stdout or the --exec command failed\n"
         "  2  bad usage, or an identity, ticket or allow file that cannot be used\n"
         "  3  refused: the peer rejected us or does not list us as a friend, is not\n"
         "     listening, or a relay refused (not allowed, rate limited, overloaded, no\n"
         "     accept in time)\n"
         "  4  no relay could be reached (or what answered is not a strelay relay)\n"
         "  5  identity mismatch: a relay (or the peer) does not hold the key it should\n"
         "  6  integrity error: tunnel data failed to authenticate (tampering on the path)\n"
         "  7  connection lost before all data was exchanged\n"
         "  8  a relay (or the peer) speaks another strelay protocol version\n"
         "  9  meet: nobody was met on the topic before --wait ran out\n"
         "  130, 143  interrupted by SIGINT, SIGTERM";
}

int exit_code_for_connect(std::error_code error) {
  if (!error) return exit_ok;
  if (error == errc::relay_identity_mismatch || error == errc::peer_identity_mismatch) {
    return exit_identity_mismatch;
  }
  // Not "unreachable": a relay of another version answered, and retrying will not help.
  if (error == errc::unsupported_version) return exit_version;
  // Another service at a ticket's address (HTTP, SSH, ...) is a wrong address, not tampering.
  if (error == errc::relay_unreachable || error == errc::channel_closed || error == errc::aborted ||
      error == errc::bad_magic || error == errc::relay_shutting_down || is_not_a_relay(error)) {
    return exit_unreachable;
  }
  if (error == errc::decrypt_failed || error == errc::protocol_error ||
      error == errc::handshake_failed) {
    return exit_integrity;
  }
  return exit_refused;  // rejected, not_found, not_allowed, not_a_friend, timeout, peer_gone, ...
}

std::string relay_error_text(const std::string& address, std::error_code error) {
  // "not a strelay relay (it answered like HTTP)" names the address it is about.
  static constexpr std::string_view prefix = "not a strelay relay";
  auto text = error.message();
  if (is_not_a_relay(error) && text.starts_with(prefix)) {
    return std::string(prefix) + " at " + address + text.substr(prefix.size());
  }
  return "relay " + address + ": " + text;
}

int exit_code_for_stream(std::error_code error) {
  if (!error) return exit_ok;
  if (error == errc::decrypt_failed || error == errc::protocol_error) return exit_integrity;
  // The relay's allowlist, or the friend's own friend list (its close{not_allowed} end to end):
  // both are refusals, and the message says which.
  if (error == errc::not_allowed || error == errc::not_a_friend) return exit_refused;
  return exit_lost;  // aborted, peer_gone (dead peer), channel_closed early, timeout
}

CLI::App* setup_listen(CLI::App& app, ListenOptions& o) {
  CLI::App* cmd = app.add_subcommand(
      "listen", "Wait for friends on one or more relays and pipe the first connection");
  add_common(*cmd, o);
  cmd->add_option("-r,--relay", o.relays,
                  "A relay ticket (.relay) to listen on; repeat to listen on several at once")
      ->required()
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  cmd->add_option("-a,--allow", o.allow,
                  "Who may connect: a public key, a .friend file or an allowlist file "
                  "(one key per line); repeat to add more")
      ->required()
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  cmd->add_flag("-k,--keep-listening", o.keep_listening,
                "Serve connections one after another until interrupted");
  cmd->add_flag("--no-standby", o.no_standby,
                "Keep no standby connection on the relays: each accept opens a new one");
  cmd->footer(
      "Example:\n"
      "  stcat listen --idfile bob.ident --relay relay.relay --allow alice.friend\n\n" +
      exit_codes_help());
  return cmd;
}

CLI::App* setup_connect(CLI::App& app, ConnectOptions& o) {
  CLI::App* cmd = app.add_subcommand(
      "connect", "Connect to a friend through its relays (tried in order) and pipe stdin/stdout");
  add_common(*cmd, o);
  cmd->add_option("-t,--to", o.to,
                  "The friend: a .friend file (its key and relays), or a public key with --relay")
      ->required();
  cmd->add_option("-r,--relay", o.relays,
                  "A relay ticket (.relay) to reach the friend through; tried in order, after "
                  "the .friend file's own relays")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  cmd->footer(
      "Example:\n"
      "  stcat connect --idfile alice.ident --to bob.friend\n\n" +
      exit_codes_help());
  return cmd;
}

CLI::App* setup_meet(CLI::App& app, MeetOptions& o) {
  CLI::App* cmd = app.add_subcommand(
      "meet", "Meet whoever joins the same topic on the relays, and pipe stdin/stdout to them");
  add_common(*cmd, o);
  cmd->add_option("--topic", o.topic,
                  "The topic's name (1 to 256 bytes); relays see only a blinded id. Use a name "
                  "with a random part for a private room")
      ->required()
      ->check(CLI::Validator(
          [](std::string& input) -> std::string {
            if (input.empty() || input.size() > 256) return "a topic name is 1 to 256 bytes";
            return {};
          },
          ""));
  cmd->add_option("-r,--relay", o.relays,
                  "A relay ticket (.relay) to meet on; repeat to meet on several at once")
      ->required()
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  cmd->add_flag("--all", o.all,
                "List the peers introduced (\"KEY RELAY\" per line on stdout) instead of "
                "connecting to the first");
  cmd->add_option("--wait", o.wait,
                  "Give up after this long (with --all: stop listing); 0 waits without limit")
      ->check(seconds_between(0, 7 * 24 * 3600.0))
      ->capture_default_str()
      ->type_name("SECONDS");
  cmd->footer(
      "Of two peers met, the one with the lower key connects and the other accepts; anyone\n"
      "introduced on the topic may connect to this node while it waits (a third node\n"
      "may find its first choice taken: then its session ends with 7, and --all lists).\n"
      "Once met, it leaves the topic.\n"
      "Example (two terminals, or two machines):\n"
      "  stcat meet --idfile alice.ident --relay relay.relay --topic \"room 7f3a9c...\"\n"
      "  stcat meet --idfile bob.ident   --relay relay.relay --topic \"room 7f3a9c...\"\n\n" +
      exit_codes_help());
  return cmd;
}

}  // namespace strelay::stcat
