// Durations as operators write them on command lines and in config files: a plain number of
// seconds ("30", "0.5"), or Go's notation ("10m", "1h30m", "1.5s", "250ms"), which operators
// of other Go-written relays type by habit. Units: h, m, s, ms, us (or µs), ns; no sign.
#pragma once

#include <optional>
#include <string_view>

namespace strelay {

// The duration in seconds, or nullopt when `text` is neither form (or is not finite).
std::optional<double> parse_duration_seconds(std::string_view text);

}  // namespace strelay
