#include "common/qr.hpp"

#include <qrencode.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <memory>
#include <stdexcept>

namespace strelay {

namespace {

constexpr int quiet = qr_quiet_zone_modules;
constexpr int max_module_pixels = 64;
constexpr std::size_t max_bytes_level_m = 2331;  // version 40, 8-bit mode, level M

// ---- PNG pieces (RFC 1950 zlib, RFC 1951 stored blocks, PNG spec CRC-32)

constexpr std::array<std::uint32_t, 256> make_crc_table() {
  std::array<std::uint32_t, 256> table{};
  for (std::uint32_t n = 0; n < 256; ++n) {
    std::uint32_t c = n;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
    table[n] = c;
  }
  return table;
}
constexpr auto crc_table = make_crc_table();

std::uint32_t crc32(const std::uint8_t* data, std::size_t size) {
  std::uint32_t c = 0xffffffffu;
  for (std::size_t i = 0; i < size; ++i) c = crc_table[(c ^ data[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

std::uint32_t adler32(const std::vector<std::uint8_t>& data) {
  std::uint32_t a = 1, b = 0;
  for (const std::uint8_t byte : data) {
    a = (a + byte) % 65521;
    b = (b + a) % 65521;
  }
  return (b << 16) | a;
}

void put_be32(std::vector<std::uint8_t>& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>(v >> shift));
}

void put_chunk(std::vector<std::uint8_t>& png, const char (&type)[5],
               const std::vector<std::uint8_t>& data) {
  put_be32(png, static_cast<std::uint32_t>(data.size()));
  const std::size_t start = png.size();
  png.insert(png.end(), type, type + 4);
  png.insert(png.end(), data.begin(), data.end());
  put_be32(png, crc32(png.data() + start, png.size() - start));
}

// A zlib stream of "stored" (uncompressed) deflate blocks of at most 65535 bytes each.
std::vector<std::uint8_t> zlib_stored(const std::vector<std::uint8_t>& raw) {
  std::vector<std::uint8_t> out{0x78, 0x01};  // deflate, 32 KiB window; header check bits
  std::size_t offset = 0;
  do {
    const std::size_t n = std::min<std::size_t>(65535, raw.size() - offset);
    const bool last = offset + n == raw.size();
    out.push_back(last ? 1 : 0);  // BFINAL, BTYPE = 00 (stored)
    const auto len = static_cast<std::uint16_t>(n);
    const auto nlen = static_cast<std::uint16_t>(~len);
    out.insert(out.end(),
               {static_cast<std::uint8_t>(len & 0xff), static_cast<std::uint8_t>(len >> 8),
                static_cast<std::uint8_t>(nlen & 0xff), static_cast<std::uint8_t>(nlen >> 8)});
    out.insert(out.end(), raw.begin() + static_cast<std::ptrdiff_t>(offset),
               raw.begin() + static_cast<std::ptrdiff_t>(offset + n));
    offset += n;
  } while (offset < raw.size());
  put_be32(out, adler32(raw));
  return out;
}

// ---- terminal half blocks

constexpr const char* upper_half = "\u2580";
constexpr const char* lower_half = "\u2584";
constexpr const char* full_block = "\u2588";

}  // namespace

std::optional<QrCode> QrCode::try_encode(std::string_view text, std::string& error) {
  const auto too_long = [&] {
    error = "the text is " + std::to_string(text.size()) +
            " bytes, too long for a QR code (at most " + std::to_string(max_bytes_level_m) +
            " at error correction level M)";
    return std::nullopt;
  };
  if (text.size() > max_bytes_level_m) return too_long();  // checked before the int cast
  errno = 0;
  const std::unique_ptr<QRcode, decltype(&QRcode_free)> code(
      QRcode_encodeData(static_cast<int>(text.size()),
                        reinterpret_cast<const unsigned char*>(text.data()), 0, QR_ECLEVEL_M),
      &QRcode_free);
  if (code == nullptr) {
    if (errno == ERANGE) return too_long();
    error = "libqrencode failed to encode the text";
    return std::nullopt;
  }
  const int size = code->width;
  std::vector<bool> modules(static_cast<std::size_t>(size) * static_cast<std::size_t>(size));
  for (std::size_t i = 0; i < modules.size(); ++i) modules[i] = (code->data[i] & 1) != 0;
  return QrCode(size, std::move(modules));
}

QrCode QrCode::encode(std::string_view text) {
  std::string error;
  auto code = try_encode(text, error);
  if (!code) throw std::invalid_argument(error);
  return std::move(*code);
}

bool QrCode::dark(int x, int y) const {
  if (x < 0 || y < 0 || x >= size_ || y >= size_) return false;
  return modules_[static_cast<std::size_t>(y) * static_cast<std::size_t>(size_) +
                  static_cast<std::size_t>(x)];
}

std::string render_terminal(const QrCode& code, TerminalStyle style) {
  // With colours the foreground (black) draws dark modules; without, the terminal's own
  // (usually light) foreground draws the light modules.
  const bool ink_is_dark = style == TerminalStyle::ansi_colors;
  const int first = -quiet, last = code.size() + quiet;  // [first, last)
  std::string out;
  for (int y = first; y < last; y += 2) {
    if (ink_is_dark) out += "\x1b[30;107m";
    for (int x = first; x < last; ++x) {
      const bool top = code.dark(x, y) == ink_is_dark;
      // An odd number of rows: the half row past the margin is light too.
      const bool bottom = (y + 1 < last ? code.dark(x, y + 1) : false) == ink_is_dark;
      out += top && bottom ? full_block : top ? upper_half : bottom ? lower_half : " ";
    }
    if (ink_is_dark) out += "\x1b[0m";
    out += '\n';
  }
  return out;
}

TerminalStyle terminal_style_for(int fd) {
  const char* no_color = std::getenv("NO_COLOR");
  const char* term = std::getenv("TERM");
  const bool colors = ::isatty(fd) == 1 && (no_color == nullptr || *no_color == '\0') &&
                      !(term != nullptr && std::string_view(term) == "dumb");
  return colors ? TerminalStyle::ansi_colors : TerminalStyle::plain;
}

std::string render_svg(const QrCode& code) {
  const int side = code.size() + 2 * quiet;
  const std::string s = std::to_string(side);
  std::string path;
  for (int y = 0; y < code.size(); ++y) {
    for (int x = 0; x < code.size();) {
      if (!code.dark(x, y)) {
        ++x;
        continue;
      }
      int run = 1;
      while (code.dark(x + run, y)) ++run;
      path += "M" + std::to_string(x + quiet) + " " + std::to_string(y + quiet) + "h" +
              std::to_string(run) + "v1h-" + std::to_string(run) + "z";
      x += run;
    }
  }
  return "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
         "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" viewBox=\"0 0 " +
         s + " " + s + "\" width=\"" + std::to_string(side * qr_png_module_pixels) +
         "\" height=\"" + std::to_string(side * qr_png_module_pixels) +
         "\" shape-rendering=\"crispEdges\">\n<rect width=\"" + s + "\" height=\"" + s +
         "\" fill=\"#ffffff\"/>\n<path fill=\"#000000\" d=\"" + path + "\"/>\n</svg>\n";
}

std::vector<std::uint8_t> render_png(const QrCode& code, int module_pixels) {
  if (module_pixels < 1 || module_pixels > max_module_pixels) {
    throw std::invalid_argument("module_pixels must be 1.." + std::to_string(max_module_pixels));
  }
  const int side = (code.size() + 2 * quiet) * module_pixels;
  const auto row_bytes = static_cast<std::size_t>((side + 7) / 8);
  std::vector<std::uint8_t> raw;
  raw.reserve(static_cast<std::size_t>(side) * (row_bytes + 1));
  for (int py = 0; py < side; ++py) {
    raw.push_back(0);  // filter type None
    std::vector<std::uint8_t> row(row_bytes, 0);
    for (int px = 0; px < side; ++px) {
      // In 1-bit greyscale, 1 is white: set the bit for light modules.
      if (!code.dark(px / module_pixels - quiet, py / module_pixels - quiet)) {
        row[static_cast<std::size_t>(px / 8)] |= static_cast<std::uint8_t>(0x80u >> (px % 8));
      }
    }
    raw.insert(raw.end(), row.begin(), row.end());
  }
  std::vector<std::uint8_t> png{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  std::vector<std::uint8_t> header;
  put_be32(header, static_cast<std::uint32_t>(side));
  put_be32(header, static_cast<std::uint32_t>(side));
  header.insert(header.end(), {1, 0, 0, 0, 0});  // depth 1, greyscale, deflate, no filter/interlace
  put_chunk(png, "IHDR", header);
  put_chunk(png, "IDAT", zlib_stored(raw));
  put_chunk(png, "IEND", {});
  return png;
}

}  // namespace strelay
