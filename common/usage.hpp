// Usage errors that name what was meant, shared by strelay, stmgr and stcat: the nearest
// known option to an unknown one, and error text with no raw bytes for the terminal.
// (CLI11 reports a missing required flag before an unknown one, "--laddr is required" for
// `strelay --listen X`, and never suggests; the programs ask these functions first.)
#pragma once

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

namespace strelay {

// The known name closest to `name` (a typo, '_' for '-', or a common synonym such as
// "listen" for "laddr"), or "" when none is close. Names are without dashes.
std::string suggest_option(std::string_view name, const std::vector<std::string>& names);

// For the arguments a parser left over: "unknown option '--listen' (did you mean '--laddr'?)"
// for the first that looks like a flag, or "" when none does.
std::string unknown_flag_message(const std::vector<std::string>& leftovers,
                                 const std::vector<std::string>& names);

// `text` with control and non-ASCII bytes as \xNN, so an error line never carries raw bytes
// from a file or a flag to the terminal.
std::string printable(std::string_view text);

// The long option names (without dashes) of a CLI11 app: its own, its option groups' (which
// CLI11 keeps as nameless subcommands), and those of the subcommand that was chosen. A template
// so that this layer does not depend on CLI11; each program instantiates it with CLI::App.
template <class App>
std::vector<std::string> long_option_names(App& app) {
  std::vector<std::string> names;
  for (const auto* option : app.get_options()) {
    for (const auto& name : option->get_lnames()) names.push_back(name);
  }
  auto more = app.get_subcommands([](App* sub) { return sub->get_name().empty(); });
  for (App* chosen : app.get_subcommands()) more.push_back(chosen);
  for (App* sub : more) {
    for (auto& name : long_option_names(*sub)) names.push_back(std::move(name));
  }
  return names;
}

// One line for a CLI11 parse error: an unknown flag by its name (CLI11 reports a missing
// required flag first), else CLI11's own message, on one line, with raw bytes escaped.
template <class App, class ParseError>
std::string usage_message(App& app, const ParseError& error) {
  const auto unknown = unknown_flag_message(app.remaining(true), long_option_names(app));
  if (!unknown.empty()) return unknown;
  std::string message = error.what();
  std::replace(message.begin(), message.end(), '\n', ' ');
  return printable(message);
}

}  // namespace strelay
