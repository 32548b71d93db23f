// strelay/config_flags: the validators and option helpers behind strelay's flags (and its
// config file, which goes through the same CLI11 options): every value is checked whole, with
// a one-line error that quotes it, and every bound is stated in the error.
#pragma once

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace strelay::flags {

// Upper bounds: far above any sane setting, low enough that a typo (an extra 000) is caught.
constexpr double max_timeout_seconds = 24 * 3600.0;
constexpr double min_timeout_seconds = 0.01;  // tests use short timeouts; below 10 ms is noise
constexpr std::uint64_t max_count = 10'000'000;
constexpr double max_rate = 1'000'000.0;
// Tunnel buffer: at least one page, at most 64 MiB per direction (a tunnel holds two).
constexpr std::uint64_t min_tunnel_buffer = 4096;
constexpr std::uint64_t max_tunnel_buffer = 64ull * 1024 * 1024;
// Bandwidth limits: below 16 KiB/s a paced tunnel would wait longer than a second for one
// chunk (strelay/bandwidth.hpp); above 1 TB/s is a typo.
constexpr std::uint64_t min_bytes_rate = 16 * 1024;
constexpr std::uint64_t max_bytes_rate = 1'000'000'000'000ull;

// "..." around at most 80 printable characters of `text`, for error messages.
std::string quote_text(std::string_view text);
std::string format_number(double value);
std::string format_seconds(std::chrono::milliseconds ms);
// Whole text, plain decimal: no sign, no spaces, no hex, no "1e3" for counts.
bool parse_u64(std::string_view text, std::uint64_t& out);
bool parse_double(std::string_view text, double& out);

CLI::Validator seconds_between(double lo, double hi);
CLI::Validator count_between(std::uint64_t lo, std::uint64_t hi,
                             std::string what = "a whole number");
CLI::Validator rate_between(double lo, double hi, std::string unit);
CLI::Validator one_of(std::vector<std::string> names);
// "10m" -> "600": runs before the range check, which then sees seconds.
CLI::Validator duration_to_seconds();
// A byte rate: a whole number with an optional suffix k, M, G (powers of 1000) or Ki, Mi, Gi
// (powers of 1024), bytes per second; 0 is no limit.
std::optional<std::uint64_t> parse_bytes_rate(std::string_view text);

// Options: a duration in seconds (or Go-style), a count, a rate and a byte rate, each checked.
void add_seconds(CLI::App& app, const std::string& flag, std::chrono::milliseconds& target,
                 const std::string& help, double lo = min_timeout_seconds,
                 double hi = max_timeout_seconds);
void add_bytes_rate(CLI::App& app, const std::string& flag, std::uint64_t& target,
                    const std::string& help);
void add_rate(CLI::App& app, const std::string& flag, double& target, const std::string& help,
              double lo, double hi, const std::string& unit);
template <class T>
void add_count(CLI::App& app, const std::string& flag, T& target, const std::string& help,
               std::uint64_t lo, std::uint64_t hi) {
  app.add_option(flag, target, help)
      ->check(count_between(lo, hi))
      ->capture_default_str()
      ->type_name("N");
}

}  // namespace strelay::flags
