#include "common/duration.hpp"

#include <array>
#include <charconv>
#include <cmath>
#include <utility>

namespace strelay {

namespace {

// Longest units first, so "ms" is never read as "m" followed by "s".
constexpr std::array<std::pair<std::string_view, double>, 7> units{{
    {"ms", 1e-3},
    {"us", 1e-6},
    {"\xC2\xB5s", 1e-6},  // µs
    {"ns", 1e-9},
    {"h", 3600.0},
    {"m", 60.0},
    {"s", 1.0},
}};

// A plain unsigned decimal ("1", "1.5", ".5"): from_chars would also take signs and exponents.
std::optional<double> leading_number(std::string_view& text) {
  std::size_t end = 0;
  while (end < text.size() && ((text[end] >= '0' && text[end] <= '9') || text[end] == '.')) ++end;
  double value = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + end, value);
  if (end == 0 || ec != std::errc() || ptr != text.data() + end) return std::nullopt;
  text.remove_prefix(end);
  return value;
}

}  // namespace

std::optional<double> parse_duration_seconds(std::string_view text) {
  const auto plain = [&] {
    std::string_view rest = text;
    const auto value = leading_number(rest);
    return rest.empty() ? value : std::nullopt;
  }();
  if (plain) return std::isfinite(*plain) ? plain : std::nullopt;
  if (text.empty()) return std::nullopt;
  double total = 0;
  while (!text.empty()) {
    const auto value = leading_number(text);
    if (!value) return std::nullopt;
    bool matched = false;
    for (const auto& [unit, seconds] : units) {
      if (text.substr(0, unit.size()) == unit) {
        total += *value * seconds;
        text.remove_prefix(unit.size());
        matched = true;
        break;
      }
    }
    if (!matched) return std::nullopt;
  }
  return std::isfinite(total) ? std::optional(total) : std::nullopt;
}

}  // namespace strelay
