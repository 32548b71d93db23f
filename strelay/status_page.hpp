// The HTML status page at "/" of the metrics address.
//
// Self-contained: inline CSS and SVG, no external assets, no web fonts, light and dark.
// Without JavaScript it shows every value as rendered by the server (and a <noscript> meta
// refresh reloads it); with JavaScript a small inline script polls /status and /samples every
// 2 s and updates the numbers and the live chart in place (textContent only, never innerHTML).
//
// Every interpolated string is HTML-escaped. The QR code SVG comes from common/qr (our own
// renderer, not user input) and is embedded as markup. The inline script carries a per-response
// nonce, and status_page_csp() gives the matching Content-Security-Policy header.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "strelay/metrics.hpp"

namespace strelay {

// Where the HTTP endpoint serves the relay ticket as a file to save; the page links it.
inline constexpr std::string_view ticket_download_path = "/relay.relay";

std::string render_status_page(const StatusView& view, const std::vector<MetricsSample>& samples,
                               std::string_view script_nonce);

// default-src 'none'; the inline script only with its nonce; fetches to this origin only.
std::string status_page_csp(std::string_view script_nonce);

// & < > " ' become entities.
std::string html_escape(std::string_view text);

// 1536 -> "1.5 KiB"; 93784 s -> "1d 2h 3m".
std::string format_bytes(double bytes);
std::string format_duration(std::int64_t seconds);

}  // namespace strelay
