// What CLI11 cannot say about strelay's options: where in a config file a problem is, which
// flag was meant, and which changes a SIGHUP cannot apply.
//
// CLI11 reads the --config file (TOML, or INI) but reports a bad line as "INI was not able to
// parse listen", without the file, the line or a suggestion, echoes its bytes raw, and says
// "At Most 1 required but received 2" for a key given twice. So before CLI11 reads the file,
// a small pre-pass reads it too, knowing the option names and the TOML subset strelay's files
// use (`name = value`, # comments, "quoted strings", [lists], an optional [default] section),
// and refuses what CLI11 would misreport, as one line "FILE:LINE: problem". It remembers each
// name's line, so a value CLI11 refuses later is reported at its line as well.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/usage.hpp"  // suggest_option, printable
#include "strelay/config.hpp"

namespace strelay {

// name (without dashes) -> the line of the config file that sets it.
using ConfigLines = std::map<std::string, std::size_t>;

// Checks the config file at `path` against the option names (without dashes). Returns "" when
// CLI11 may read it, else one line: "strelay.conf:3: unknown option 'listen' (did you mean
// 'laddr'?)". Fills `lines` with the names the file sets.
std::string check_config_file(const std::string& path, const std::vector<std::string>& names,
                              ConfigLines& lines);

// The flags (without dashes) whose values differ between `before` and `after` but that a
// reload cannot apply (addresses, identity, threads, log settings): they need a restart.
std::vector<std::string> restart_only_changes(const RelayOptions& before,
                                              const RelayOptions& after);

}  // namespace strelay
