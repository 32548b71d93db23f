// QR codes of tickets, for phones to scan: encoded with libqrencode (8-bit mode, error
// correction level M), drawn in a terminal, as SVG or as PNG.
//
// Every rendering has the 4-module light margin (quiet zone) that scanners need.
// Never QR-encode an identity file: callers pass ticket text only.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/protocol.hpp"

namespace strelay {

class QrCode {
 public:
  // nullopt and an error when the text does not fit (more than 2331 bytes at level M).
  static std::optional<QrCode> try_encode(std::string_view text, std::string& error);
  static QrCode encode(std::string_view text);  // throws std::invalid_argument

  // Modules per side, without the quiet zone (21 for version 1, up to 177).
  int size() const { return size_; }
  // Outside the symbol (the quiet zone and beyond) every module is light.
  bool dark(int x, int y) const;

  friend bool operator==(const QrCode&, const QrCode&) = default;

 private:
  QrCode(int size, std::vector<bool> modules) : size_(size), modules_(std::move(modules)) {}
  int size_ = 0;
  std::vector<bool> modules_;  // row-major, true = dark
};

// How a terminal draws the code, two module rows per text line with Unicode half blocks.
enum class TerminalStyle {
  // ANSI colours: black modules on a bright white background; right on any terminal that
  // understands colours, dark or light.
  ansi_colors,
  // No escape codes: light modules are drawn as blocks and dark modules left blank, which is
  // right on the usual light-on-dark terminal (and inverted on a dark-on-light one).
  plain,
};
std::string render_terminal(const QrCode& code, TerminalStyle style);
// The style for output on `fd`: colours only on a terminal, and never when NO_COLOR is set
// (https://no-color.org: present and not empty) or TERM is "dumb". A file, a pipe or journald
// gets plain blocks, with no escape codes to show up as "[30;107m" in a log viewer.
TerminalStyle terminal_style_for(int fd);

// A self-contained SVG: a white background and one <path> of the dark modules.
std::string render_svg(const QrCode& code);

// A 1-bit greyscale PNG, each module module_pixels wide (stored deflate blocks: no zlib).
std::vector<std::uint8_t> render_png(const QrCode& code, int module_pixels = qr_png_module_pixels);

}  // namespace strelay
