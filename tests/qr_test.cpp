// Tests for common/qr: each rendering is read back into modules and compared with the code,
// and the PNG container (chunks, CRCs, zlib stored blocks, Adler-32) is checked by hand.
// tests/stmgr_test.sh also has zbarimg decode a PNG back to the ticket text.
#include "common/qr.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <regex>
#include <string>
#include <vector>

using namespace strelay;

namespace {

const std::string ticket =
    "{\n  \"publicKey\": \"pgl9Jm109Q5d69EN4WjjVBbRmCLHJfgyR0pSoJflvzE\",\n"
    "  \"address\": \"relay0.offsetcredit.org:11051\"\n}";

constexpr int quiet = qr_quiet_zone_modules;

// Splits UTF-8 text into code points (as strings), dropping ANSI escape sequences.
std::vector<std::string> glyphs(const std::string& line) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < line.size();) {
    if (line[i] == '\x1b') {
      i = line.find('m', i) + 1;
      continue;
    }
    const auto lead = static_cast<unsigned char>(line[i]);
    const std::size_t n = lead < 0x80 ? 1 : lead < 0xe0 ? 2 : lead < 0xf0 ? 3 : 4;
    out.push_back(line.substr(i, n));
    i += n;
  }
  return out;
}

// Reads a terminal rendering back: `ink` is what a drawn half means (dark or light).
std::vector<std::vector<bool>> read_terminal(const std::string& text, bool ink_is_dark) {
  std::vector<std::vector<bool>> rows;
  std::size_t start = 0;
  while (start < text.size()) {
    const std::size_t end = text.find('\n', start);
    REQUIRE(end != std::string::npos);  // every line ends with a newline
    std::vector<bool> top, bottom;
    for (const auto& g : glyphs(text.substr(start, end - start))) {
      const bool t = g == "\u2588" || g == "\u2580";
      const bool b = g == "\u2588" || g == "\u2584";
      REQUIRE((g == " " || t || b));
      top.push_back(t == ink_is_dark);
      bottom.push_back(b == ink_is_dark);
    }
    rows.push_back(top);
    rows.push_back(bottom);
    start = end + 1;
  }
  return rows;
}

void check_matches(const QrCode& code, const std::vector<std::vector<bool>>& rows) {
  const int side = code.size() + 2 * quiet;
  REQUIRE(rows.size() == static_cast<std::size_t>(side + 1));  // odd side: one spare half row
  for (int y = 0; y < side + 1; ++y) {
    REQUIRE(rows[static_cast<std::size_t>(y)].size() == static_cast<std::size_t>(side));
    for (int x = 0; x < side; ++x) {
      CAPTURE(x);
      CAPTURE(y);
      CHECK(rows[static_cast<std::size_t>(y)][static_cast<std::size_t>(x)] ==
            code.dark(x - quiet, y - quiet));
    }
  }
}

std::uint32_t be32(const std::vector<std::uint8_t>& b, std::size_t at) {
  return std::uint32_t{b[at]} << 24 | std::uint32_t{b[at + 1]} << 16 |
         std::uint32_t{b[at + 2]} << 8 | b[at + 3];
}

// A bitwise CRC-32, independent of the table-driven one in common/qr.cpp.
std::uint32_t slow_crc32(const std::uint8_t* p, std::size_t n) {
  std::uint32_t c = 0xffffffffu;
  for (std::size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
  }
  return ~c;
}

}  // namespace

TEST_CASE("a relay ticket encodes to a QR code with finder patterns and a light margin") {
  const QrCode code = QrCode::encode(ticket);
  CHECK(code.size() >= 21);
  CHECK((code.size() - 21) % 4 == 0);
  for (const auto& [cx, cy] : {std::pair{0, 0}, {code.size() - 7, 0}, {0, code.size() - 7}}) {
    CHECK(code.dark(cx, cy));                // the finder's outer ring
    CHECK_FALSE(code.dark(cx + 1, cy + 1));  // its light ring
    CHECK(code.dark(cx + 3, cy + 3));        // its centre
  }
  CHECK_FALSE(code.dark(-1, 0));
  CHECK_FALSE(code.dark(0, code.size()));
  CHECK(QrCode::encode(ticket) == code);
  CHECK_FALSE(QrCode::encode(ticket + " ") == code);
}

TEST_CASE("2331 bytes fit in a QR code at level M and 2332 do not") {
  std::string error;
  const auto largest = QrCode::try_encode(std::string(2331, 'a'), error);
  REQUIRE(largest);
  CHECK(largest->size() == 177);  // version 40
  CHECK_FALSE(QrCode::try_encode(std::string(2332, 'a'), error));
  CHECK(error ==
        "the text is 2332 bytes, too long for a QR code (at most 2331 at error "
        "correction level M)");
  CHECK_THROWS_AS(QrCode::encode(std::string(5000, 'a')), std::invalid_argument);
}

TEST_CASE("the terminal rendering with colours draws dark modules on a white background") {
  const QrCode code = QrCode::encode(ticket);
  const std::string text = render_terminal(code, TerminalStyle::ansi_colors);
  CHECK(text.find("\x1b[30;107m") == 0);
  CHECK(text.find("\x1b[0m\n") != std::string::npos);
  check_matches(code, read_terminal(text, true));
}

TEST_CASE("the plain terminal rendering draws the light modules and no escape codes") {
  const QrCode code = QrCode::encode(ticket);
  const std::string text = render_terminal(code, TerminalStyle::plain);
  CHECK(text.find('\x1b') == std::string::npos);
  check_matches(code, read_terminal(text, false));
}

TEST_CASE("colours only on a terminal, and not with NO_COLOR or TERM=dumb") {
  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  const int master = ::posix_openpt(O_RDWR | O_NOCTTY);
  REQUIRE(master >= 0);
  REQUIRE(::grantpt(master) == 0);
  REQUIRE(::unlockpt(master) == 0);
  const int tty = ::open(::ptsname(master), O_RDWR | O_NOCTTY);
  REQUIRE(tty >= 0);
  ::unsetenv("NO_COLOR");
  ::setenv("TERM", "xterm", 1);
  CHECK(terminal_style_for(tty) == TerminalStyle::ansi_colors);
  CHECK(terminal_style_for(pipe_fds[1]) == TerminalStyle::plain);
  ::setenv("NO_COLOR", "", 1);  // empty: not set, per no-color.org
  CHECK(terminal_style_for(tty) == TerminalStyle::ansi_colors);
  ::setenv("NO_COLOR", "1", 1);
  CHECK(terminal_style_for(tty) == TerminalStyle::plain);
  ::unsetenv("NO_COLOR");
  ::setenv("TERM", "dumb", 1);
  CHECK(terminal_style_for(tty) == TerminalStyle::plain);
  for (int fd : {pipe_fds[0], pipe_fds[1], tty, master}) ::close(fd);
}

TEST_CASE("the SVG has one path whose squares are exactly the dark modules") {
  const QrCode code = QrCode::encode(ticket);
  const std::string svg = render_svg(code);
  const int side = code.size() + 2 * quiet;
  CHECK(svg.find("viewBox=\"0 0 " + std::to_string(side) + " " + std::to_string(side) + "\"") !=
        std::string::npos);
  const std::size_t path_at = svg.find("<path");
  REQUIRE(path_at != std::string::npos);
  CHECK(svg.find("<path", path_at + 1) == std::string::npos);
  std::vector<std::vector<bool>> grid(static_cast<std::size_t>(side),
                                      std::vector<bool>(static_cast<std::size_t>(side)));
  const std::regex run("M(\\d+) (\\d+)h(\\d+)v1h-(\\d+)z");
  const std::string d = svg.substr(svg.find(" d=\"", path_at) + 4);
  for (std::sregex_iterator it(d.begin(), d.end(), run), end; it != end; ++it) {
    const int x = std::stoi((*it)[1]), y = std::stoi((*it)[2]), n = std::stoi((*it)[3]);
    CHECK(n == std::stoi((*it)[4]));
    for (int i = 0; i < n; ++i) {
      auto&& cell = grid[static_cast<std::size_t>(y)][static_cast<std::size_t>(x + i)];
      CHECK_FALSE(cell);  // no module drawn twice
      cell = true;
    }
  }
  for (int y = 0; y < side; ++y) {
    for (int x = 0; x < side; ++x) {
      CHECK(grid[static_cast<std::size_t>(y)][static_cast<std::size_t>(x)] ==
            code.dark(x - quiet, y - quiet));
    }
  }
}

TEST_CASE("the PNG is well formed and its pixels are the modules, scaled") {
  const QrCode code = QrCode::encode(ticket);
  const int scale = 3;
  const std::vector<std::uint8_t> png = render_png(code, scale);
  const std::vector<std::uint8_t> signature{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  REQUIRE(std::equal(signature.begin(), signature.end(), png.begin()));

  // Walk the chunks, checking each CRC; keep IHDR and IDAT.
  std::vector<std::uint8_t> ihdr, idat;
  std::vector<std::string> types;
  for (std::size_t at = 8; at < png.size();) {
    const std::uint32_t length = be32(png, at);
    const std::string type(png.begin() + static_cast<long>(at) + 4,
                           png.begin() + static_cast<long>(at) + 8);
    types.push_back(type);
    CHECK(be32(png, at + 8 + length) == slow_crc32(&png[at + 4], length + 4));
    std::vector<std::uint8_t> data(png.begin() + static_cast<long>(at) + 8,
                                   png.begin() + static_cast<long>(at + 8 + length));
    if (type == "IHDR") ihdr = data;
    if (type == "IDAT") idat = data;
    at += 12 + length;
  }
  CHECK(types == std::vector<std::string>{"IHDR", "IDAT", "IEND"});
  CHECK(slow_crc32(reinterpret_cast<const std::uint8_t*>("IEND"), 4) == 0xae426082u);
  const int side = (code.size() + 2 * quiet) * scale;
  REQUIRE(ihdr.size() == 13);
  CHECK(be32(ihdr, 0) == static_cast<std::uint32_t>(side));
  CHECK(be32(ihdr, 4) == static_cast<std::uint32_t>(side));
  CHECK(std::vector<std::uint8_t>(ihdr.begin() + 8, ihdr.end()) ==
        std::vector<std::uint8_t>{1, 0, 0, 0, 0});

  // Undo zlib: header, stored blocks (LEN, ~LEN), Adler-32 of the raw scanlines.
  REQUIRE(((idat[0] << 8) | idat[1]) % 31 == 0);
  std::vector<std::uint8_t> raw;
  std::size_t at = 2;
  for (bool last = false; !last;) {
    last = (idat[at] & 1) != 0;
    CHECK((idat[at] & 6) == 0);  // BTYPE 00: stored
    const auto len = static_cast<unsigned>(idat[at + 1] | idat[at + 2] << 8);
    const auto nlen = static_cast<unsigned>(idat[at + 3] | idat[at + 4] << 8);
    CHECK(len == (~nlen & 0xffffu));
    raw.insert(raw.end(), idat.begin() + static_cast<long>(at) + 5,
               idat.begin() + static_cast<long>(at + 5 + len));
    at += 5 + len;
  }
  std::uint32_t a = 1, b = 0;
  for (const auto byte : raw) {
    a = (a + byte) % 65521;
    b = (b + a) % 65521;
  }
  CHECK(be32(idat, at) == (b << 16 | a));
  CHECK(at + 4 == idat.size());

  const std::size_t row_bytes = static_cast<std::size_t>((side + 7) / 8);
  REQUIRE(raw.size() == static_cast<std::size_t>(side) * (row_bytes + 1));
  for (int py = 0; py < side; ++py) {
    const std::size_t row = static_cast<std::size_t>(py) * (row_bytes + 1);
    CHECK(raw[row] == 0);  // filter None
    for (int px = 0; px < side; ++px) {
      const bool white = (raw[row + 1 + static_cast<std::size_t>(px / 8)] >> (7 - px % 8) & 1) != 0;
      CHECK(white == !code.dark(px / scale - quiet, py / scale - quiet));
    }
  }
}

TEST_CASE("a large PNG spans several stored deflate blocks") {
  const QrCode code = QrCode::encode(std::string(2000, 'x'));
  const auto png = render_png(code, 8);
  CHECK(png.size() > 3 * 65535);  // more than 65535 bytes of scanlines: several blocks
  CHECK_THROWS_AS(render_png(code, 0), std::invalid_argument);
  CHECK_THROWS_AS(render_png(code, 65), std::invalid_argument);
  CHECK_NOTHROW(render_png(code, 64));
}
