#include "common/usage.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <utility>

namespace strelay {

namespace {

// Names operators reach for from other relays' configs, and what strelay calls them.
constexpr std::array<std::pair<std::string_view, std::string_view>, 9> synonyms{{
    {"listen", "laddr"},
    {"listen-addr", "laddr"},
    {"listen-address", "laddr"},
    {"bind", "laddr"},
    {"address", "laddr"},
    {"identity", "idfile"},
    {"key", "idfile"},
    {"metrics", "metrics-addr"},
    {"allowlist", "allow"},
}};

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

}  // namespace

std::string printable(std::string_view text) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (const char c : text) {
    const auto b = static_cast<unsigned char>(c);
    if (b >= 0x20 && b < 0x7f) {
      out += c;
    } else {
      out += "\\x";
      out += hex[b >> 4];
      out += hex[b & 0xf];
    }
  }
  return out;
}

std::string suggest_option(std::string_view name, const std::vector<std::string>& names) {
  std::string wanted(name);
  std::replace(wanted.begin(), wanted.end(), '_', '-');
  std::transform(wanted.begin(), wanted.end(), wanted.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (const auto& [alias, meant] : synonyms) {
    if (wanted == alias && std::find(names.begin(), names.end(), meant) != names.end()) {
      return std::string(meant);
    }
  }
  // An abbreviation of exactly one name ("--out" for "--output"): CLI11 takes none.
  std::vector<std::string> extended;
  for (const auto& candidate : names) {
    if (wanted.size() >= 3 && candidate.starts_with(wanted)) extended.push_back(candidate);
  }
  if (extended.size() == 1) return extended.front();
  std::string best;
  std::size_t best_distance = wanted.size() < 6 ? 2 : 3;  // beyond this it is a guess
  for (const auto& candidate : names) {
    const auto d = edit_distance(wanted, candidate);
    if (d < best_distance) {
      best = candidate;
      best_distance = d;
    }
  }
  return best;
}

std::string unknown_flag_message(const std::vector<std::string>& leftovers,
                                 const std::vector<std::string>& names) {
  for (const auto& extra : leftovers) {
    if (extra.size() < 2 || extra.front() != '-') continue;
    const auto flag = extra.substr(0, extra.find('='));
    std::string message = "unknown option '" + printable(flag) + "'";
    const auto guess = suggest_option(flag.substr(flag.find_first_not_of('-')), names);
    if (!guess.empty()) message += " (did you mean '--" + guess + "'?)";
    return message;
  }
  return {};  // no flag among them: the parser's own message says it
}

}  // namespace strelay
