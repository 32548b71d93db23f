// Usage errors that name what was meant, shared by strelay, stmgr and stcat: the nearest
// known option to an unknown one, and error text with no raw bytes for the terminal.
// (CLI11 reports a missing required flag before an unknown one, "--laddr is required" for
// `strelay --listen X`, and never suggests; the programs ask these functions first.)
#pragma once

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

}  // namespace strelay
