#include "strelay/config_file.hpp"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <utility>

namespace strelay {

namespace {

// A config file is a few kilobytes; more is a wrong path (a log, a binary), not a config.
constexpr std::size_t max_config_file_bytes = 1 << 20;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

// The value with a trailing # comment removed (a # inside quotes is kept).
std::string_view without_comment(std::string_view value) {
  bool quoted = false;
  for (std::size_t i = 0; i < value.size(); ++i) {
    if (value[i] == '"') quoted = !quoted;
    if (value[i] == '#' && !quoted) return trim(value.substr(0, i));
  }
  return value;
}

// The problem with a value, or "". Only what CLI11 would misread is refused here; the value's
// meaning is its option's check.
std::string value_problem(std::string_view name, std::string_view value) {
  if (value.empty()) return "'" + std::string(name) + "' has no value";
  if (value.front() == '"' && (value.size() < 2 || value.back() != '"')) {
    return "the value of '" + std::string(name) + "' has no closing quote";
  }
  // An unquoted [::1]:4567 is a TOML list "::1" followed by junk, which CLI11 mangles.
  if (value.front() == '[' && value.back() != ']') {
    return "quote the address: " + std::string(name) + " = \"" + printable(value) + "\"";
  }
  return {};
}

// The problem with one line (1-based `number`), or "".
std::string line_problem(std::string_view line, std::size_t number,
                         const std::vector<std::string>& names, ConfigLines& lines) {
  line = trim(line);
  if (line.empty() || line.front() == '#' || line.front() == ';') return {};
  if (line.front() == '[') {
    return without_comment(line) == "[default]"
               ? std::string()
               : "strelay's options take no section: remove " + printable(line);
  }
  const auto equals = line.find('=');
  if (equals == std::string_view::npos) {
    return "expected name = value, found " + printable(line.substr(0, 80));
  }
  const auto name = trim(line.substr(0, equals));
  const std::string shown = printable(name);
  if (std::find(names.begin(), names.end(), name) == names.end()) {
    std::string problem = "unknown option '" + shown + "'";
    if (const auto guess = suggest_option(name, names); !guess.empty()) {
      problem += " (did you mean '" + guess + "'?)";
    }
    return problem;
  }
  if (const auto [it, fresh] = lines.emplace(std::string(name), number); !fresh) {
    return "'" + shown + "' is set twice (first on line " + std::to_string(it->second) +
           "); give several values as a list: " + shown + " = [\"a\", \"b\"]";
  }
  return value_problem(name, without_comment(trim(line.substr(equals + 1))));
}

// The --config value in argv, or "" (CLI11 reads it later; the pre-pass needs it first).
std::string config_path_in(int argc, const char* const* argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--") break;
    if (arg == "--config" && i + 1 < argc) return argv[i + 1];
    if (arg.starts_with("--config=")) return std::string(arg.substr(9));
  }
  return {};
}

bool on_command_line(std::string_view flag, int argc, const char* const* argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == flag ||
        (arg.starts_with(flag) && arg.size() > flag.size() && arg[flag.size()] == '=')) {
      return true;
    }
  }
  return false;
}

// The names a config file may set (--config, --help and --version are not among them).
std::vector<std::string> option_names(CLI::App& app) {
  auto names = long_option_names(app);
  std::erase_if(
      names, [](const std::string& n) { return n == "help" || n == "version" || n == "config"; });
  return names;
}

struct Failure {
  std::string message;
  bool from_config_file = false;
};

// CLI11's refusal, said better: an unknown flag by its name (CLI11 reports a missing required
// flag first), and a value from the config file at its line.
Failure explain(CLI::App& app, const CLI::ParseError& e, const std::vector<std::string>& names,
                const ConfigLines& lines, const std::string& config, int argc,
                const char* const* argv) {
  if (auto unknown = unknown_flag_message(app.remaining(), names); !unknown.empty()) {
    return {unknown};
  }
  std::string message = printable(e.what());
  std::replace(message.begin(), message.end(), '\n', ' ');
  // CLI11's messages name the option first: "--laddr: address ...".
  if (message.starts_with("--")) {
    const auto name = message.substr(2, message.find_first_of(": ") - 2);
    const auto line = lines.find(name);
    if (line != lines.end() && !on_command_line("--" + name, argc, argv)) {
      return {printable(config) + ":" + std::to_string(line->second) + ": " + message, true};
    }
  }
  return {message};
}

enum class Parsed { ok, printed, failed };

Parsed parse_checked(CLI::App& app, RelayOptions& options, int argc, const char* const* argv,
                     Failure& failure, bool print) {
  const auto names = option_names(app);
  const std::string config = config_path_in(argc, argv);
  ConfigLines lines;
  if (!config.empty()) {
    failure = {check_config_file(config, names, lines), true};
    if (!failure.message.empty()) return Parsed::failed;
  }
  try {
    app.parse(argc, argv);
    validate_relay_options(options);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) {  // --help, --version
      if (print) app.exit(e);
      return Parsed::printed;
    }
    failure = explain(app, e, names, lines, config, argc, argv);
    return Parsed::failed;
  }
  options.config_file = app.get_config_ptr()->as<std::string>();
  return Parsed::ok;
}

}  // namespace

std::optional<RelayOptions> parse_relay_options(int argc, const char* const* argv, int& exit_code) {
  CLI::App app;
  RelayOptions options;
  setup_relay_options(app, options);
  Failure failure;
  const auto parsed = parse_checked(app, options, argc, argv, failure, true);
  exit_code = parsed == Parsed::failed ? exit_usage : 0;
  if (parsed == Parsed::ok) return options;
  if (parsed == Parsed::failed) {
    std::cerr << "strelay: " << failure.message
              << (failure.from_config_file ? "" : " (see strelay --help)") << std::endl;
  }
  return std::nullopt;
}

std::optional<RelayOptions> try_parse_relay_options(int argc, const char* const* argv,
                                                    std::string& error) {
  CLI::App app;
  RelayOptions options;
  setup_relay_options(app, options);
  Failure failure;
  if (parse_checked(app, options, argc, argv, failure, false) == Parsed::ok) return options;
  error = failure.message;
  return std::nullopt;
}

std::string check_config_file(const std::string& path, const std::vector<std::string>& names,
                              ConfigLines& lines) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return printable(path) + ": cannot read the config file: " + std::strerror(errno);
  std::string text(max_config_file_bytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(in.gcount()));
  if (text.size() > max_config_file_bytes) {
    return printable(path) + ": the config file is larger than " +
           std::to_string(max_config_file_bytes) + " bytes";
  }
  std::istringstream stream(text);
  std::string line;
  for (std::size_t number = 1; std::getline(stream, line); ++number) {
    if (auto problem = line_problem(line, number, names, lines); !problem.empty()) {
      return printable(path) + ":" + std::to_string(number) + ": " + problem;
    }
  }
  return {};
}

std::vector<std::string> restart_only_changes(const RelayOptions& before,
                                              const RelayOptions& after) {
  std::vector<std::string> changed;
  const auto note = [&changed](bool differs, const char* name) {
    if (differs) changed.emplace_back(name);
  };
  note(before.idfile != after.idfile, "idfile");
  note(before.laddr != after.laddr, "laddr");
  note(before.websocket_laddr != after.websocket_laddr, "websocket-laddr");
  note(before.metrics_addr != after.metrics_addr, "metrics-addr");
  note(before.public_address != after.public_address, "public-address");
  note(before.threads != after.threads, "threads");
  note(before.log_format != after.log_format, "log-format");
  note(before.log_level != after.log_level, "log-level");
  return changed;
}

}  // namespace strelay
