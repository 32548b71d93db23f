#include "strelay/config_flags.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>

#include "common/duration.hpp"
#include "common/usage.hpp"

namespace strelay::flags {

std::string quote_text(std::string_view text) {
  return "\"" + printable(text.substr(0, 80)) + (text.size() > 80 ? "...\"" : "\"");
}

std::string format_number(double value) {
  char buf[32];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  return ec == std::errc() ? std::string(buf, end) : std::string("?");
}

std::string format_seconds(std::chrono::milliseconds ms) {
  return format_number(static_cast<double>(ms.count()) / 1000.0);
}

bool parse_u64(std::string_view text, std::uint64_t& out) {
  if (text.empty()) return false;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && ptr == text.data() + text.size();
}

bool parse_double(std::string_view text, double& out) {
  if (text.empty()) return false;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && ptr == text.data() + text.size() && std::isfinite(out);
}

CLI::Validator seconds_between(double lo, double hi) {
  return CLI::Validator(
      [lo, hi](std::string& input) -> std::string {
        double v = 0;
        if (!parse_double(input, v)) {
          return quote_text(input) +
                 " is not a duration: give seconds (30, 0.5) or 10m, 1h30m, 500ms";
        }
        if (v < lo || v > hi) {
          return input + " is out of range: give " + format_number(lo) + " to " +
                 format_number(hi) + " seconds";
        }
        return {};
      },
      "");
}

CLI::Validator count_between(std::uint64_t lo, std::uint64_t hi, std::string what) {
  return CLI::Validator(
      [lo, hi, what](std::string& input) -> std::string {
        std::uint64_t v = 0;
        if (!parse_u64(input, v)) return quote_text(input) + " is not " + what;
        if (v < lo || v > hi) {
          return input + " is out of range: give " + std::to_string(lo) + " to " +
                 std::to_string(hi);
        }
        return {};
      },
      "");
}

CLI::Validator rate_between(double lo, double hi, std::string unit) {
  return CLI::Validator(
      [lo, hi, unit](std::string& input) -> std::string {
        double v = 0;
        if (!parse_double(input, v)) return quote_text(input) + " is not a number";
        if (v < lo || v > hi) {
          return input + " is out of range: give " + format_number(lo) + " to " +
                 format_number(hi) + unit;
        }
        return {};
      },
      "");
}

CLI::Validator one_of(std::vector<std::string> names) {
  return CLI::Validator(
      [names](std::string& input) -> std::string {
        if (std::find(names.begin(), names.end(), input) != names.end()) return {};
        std::string list;
        for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
        return quote_text(input) + " is not one of " + list;
      },
      "");
}

CLI::Validator duration_to_seconds() {
  return CLI::Validator(
      [](std::string& input) -> std::string {
        if (const auto seconds = parse_duration_seconds(input)) input = format_number(*seconds);
        return {};
      },
      "");
}

void add_seconds(CLI::App& app, const std::string& flag, std::chrono::milliseconds& target,
                 const std::string& help, double lo, double hi) {
  app.add_option_function<double>(
         flag,
         [&target](double s) { target = std::chrono::milliseconds(std::llround(s * 1000.0)); },
         help)
      ->transform(duration_to_seconds())
      ->check(seconds_between(lo, hi))
      ->default_str(format_seconds(target))
      ->type_name("SECONDS");
}

std::optional<std::uint64_t> parse_bytes_rate(std::string_view text) {
  static constexpr std::pair<std::string_view, std::uint64_t> suffixes[] = {
      {"Ki", 1ull << 10}, {"Mi", 1ull << 20}, {"Gi", 1ull << 30},
      {"k", 1000},        {"M", 1000'000},    {"G", 1000'000'000}};
  std::uint64_t scale = 1;
  for (const auto& [suffix, factor] : suffixes) {
    if (text.size() > suffix.size() && text.ends_with(suffix)) {
      text.remove_suffix(suffix.size());
      scale = factor;
      break;
    }
  }
  std::uint64_t value = 0;
  if (!parse_u64(text, value) || value > max_bytes_rate / scale) return std::nullopt;
  return value * scale;
}

void add_bytes_rate(CLI::App& app, const std::string& flag, std::uint64_t& target,
                    const std::string& help) {
  app.add_option_function<std::string>(
         flag, [&target](const std::string& v) { target = parse_bytes_rate(v).value_or(0); }, help)
      ->check(CLI::Validator(
          [](std::string& input) -> std::string {
            const auto rate = parse_bytes_rate(input);
            if (!rate) {
              return quote_text(input) +
                     " is not a byte rate (a whole number of bytes per "
                     "second, with an optional k, M, G, Ki, Mi or Gi)";
            }
            if (*rate != 0 && *rate < min_bytes_rate) {
              return input + " is below " + std::to_string(min_bytes_rate) +
                     " bytes per second (0 is no limit)";
            }
            return {};
          },
          ""))
      ->default_str("0")
      ->type_name("BYTES/S");
}

void add_rate(CLI::App& app, const std::string& flag, double& target, const std::string& help,
              double lo, double hi, const std::string& unit) {
  app.add_option(flag, target, help)
      ->check(rate_between(lo, hi, unit))
      ->capture_default_str()
      ->type_name("N");
}

}  // namespace strelay::flags
