// Tests for strelay/allowlist: the --allow file format, strict errors, and loading.
#include "common/allowlist.hpp"

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "support/temp_dir.hpp"

using namespace strelay;

namespace {

const std::string alice =
    "A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg";  // seed 0..31 (Offset's vectors)

PublicKey key_of(const std::string& text) {
  std::string error;
  const auto list = try_parse_allowlist(text, "k", error);
  REQUIRE(list.has_value());
  REQUIRE(list->size() == 1);
  return list->entries().begin()->first;
}

std::string parse_error(const std::string& text) {
  std::string error;
  CHECK_FALSE(try_parse_allowlist(text, "allow.txt", error).has_value());
  CHECK(error.find('\n') == std::string::npos);
  return error;
}

using TempDir = strelay::testing::TempDir;

}  // namespace

TEST_CASE("a good file with comments, blank lines, labels and CRLF endings loads every key") {
  const std::string bob = Identity::generate().public_key().to_base64url();
  const std::string carol = Identity::generate().public_key().to_base64url();
  const std::string text =
      "\xEF\xBB\xBF# members of the family relay\n"
      "\n" +
      alice + "  alice-phone\r\n" + "\t" + bob + "\t# bob, no label\n" +
      "   # an indented comment\n" + carol + " carol's laptop (2024)";  // no final newline
  std::string error;
  std::vector<std::string> warnings;
  const auto list = try_parse_allowlist(text, "allow.txt", error, &warnings);
  INFO(error);
  REQUIRE(list.has_value());
  CHECK(warnings.empty());
  CHECK(list->size() == 3);
  CHECK(list->contains(key_of(alice)));
  CHECK(list->contains(key_of(bob)));
  CHECK(list->label(key_of(alice)) == "alice-phone");
  CHECK(list->label(key_of(bob)).empty());
  CHECK(list->label(key_of(carol)) == "carol's laptop (2024)");
  CHECK_FALSE(list->contains(Identity::generate().public_key()));
  CHECK(list->keys().size() == 3);
}

TEST_CASE("an empty file, or one with only comments, lets nobody in") {
  std::string error;
  for (const std::string text : {"", "\n\n", "# nobody yet\n  # still nobody\n"}) {
    const auto list = try_parse_allowlist(text, "allow.txt", error);
    REQUIRE(list.has_value());
    CHECK(list->empty());
    CHECK_FALSE(list->contains(key_of(alice)));
  }
}

TEST_CASE("each kind of bad line is refused with file:line and the problem") {
  const std::string good = alice + "\n";
  SUBCASE("a character outside base64url") {
    CHECK(parse_error(good + "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg\n")
              .rfind("allow.txt:2: the key is not base64url", 0) == 0);
  }
  SUBCASE("padding") {
    CHECK(parse_error(alice + "=\n").rfind("allow.txt:1: the key is not base64url", 0) == 0);
  }
  SUBCASE("the wrong length") {
    CHECK(parse_error("# c\n" + alice.substr(0, 42) + "\n").rfind("allow.txt:2:", 0) == 0);
    CHECK(parse_error(alice + "AAAA\n").find("the key is 47 characters (35 bytes), expected 43") !=
          std::string::npos);
  }
  SUBCASE("not a valid Ed25519 key (all zero, small order)") {
    CHECK(parse_error(std::string(43, 'A') + "\n").find("not a valid Ed25519 public key") !=
          std::string::npos);
  }
  SUBCASE("a control character in the label") {
    CHECK(parse_error(alice + " bad\x1blabel\n").find("control character") != std::string::npos);
  }
  SUBCASE("something that is not a key at all") {
    CHECK(parse_error("alice-phone " + alice + "\n").rfind("allow.txt:1:", 0) == 0);
  }
  SUBCASE("several bad lines: the first is named and the rest counted") {
    const auto error = parse_error("bad1\n" + good + "bad2\nbad3\n");
    CHECK(error.rfind("allow.txt:1:", 0) == 0);
    CHECK(error.find("(and 2 more bad lines)") != std::string::npos);
  }
}

TEST_CASE("a line at the length limit is read and one byte more is refused") {
  const std::string at_max =
      alice + " " + std::string(max_allowlist_line_bytes - alice.size() - 1, 'x');
  REQUIRE(at_max.size() == max_allowlist_line_bytes);
  std::string error;
  CHECK(try_parse_allowlist(at_max + "\r\n", "allow.txt", error).has_value());
  CHECK(parse_error(at_max + "x\n").find("longer than 1024 bytes") != std::string::npos);
}

TEST_CASE("a key listed twice is kept once with a warning, and the first label wins") {
  std::string error;
  std::vector<std::string> warnings;
  const auto list = try_parse_allowlist(alice + " first\n# x\n" + alice + " second\n", "allow.txt",
                                        error, &warnings);
  REQUIRE(list.has_value());
  CHECK(list->size() == 1);
  CHECK(list->label(key_of(alice)) == "first");
  REQUIRE(warnings.size() == 1);
  CHECK(warnings[0] == "allow.txt:3: the key A6EHv_PO is already on line 1; this line is ignored");
}

TEST_CASE("files are loaded with their path in every error") {
  TempDir dir;
  SUBCASE("a good file") {
    const auto path = dir.write("allow.txt", alice + " alice\n");
    const auto list = load_allowlist(path);
    CHECK(list.contains(key_of(alice)));
  }
  SUBCASE("a bad line names the path and line") {
    const auto path = dir.write("allow.txt", "# ok\nnot-a-key\n");
    std::string error;
    CHECK_FALSE(try_load_allowlist(path, error).has_value());
    CHECK(error.rfind(path + ":2: ", 0) == 0);
    const std::string prefix = path + ":2: ";
    CHECK_THROWS_WITH_AS(load_allowlist(path), doctest::Contains(prefix.c_str()),
                         std::runtime_error);
  }
  SUBCASE("a friend ticket (.friend) allows its node; other JSON files are named by kind") {
    const std::string relay =
        "{\"publicKey\": \"" + alice + "\", \"address\": \"relay.example.org:4567\"}";
    const auto friend_path = dir.write(
        "alice.friend", "{\"publicKey\": \"" + alice + "\", \"relays\": [" + relay + "]}");
    const auto list = load_allowlist(friend_path);
    CHECK(list.size() == 1);
    CHECK(list.contains(key_of(alice)));
    std::string error;
    const auto relay_path = dir.write("relay.relay", relay);
    CHECK_FALSE(try_load_allowlist(relay_path, error).has_value());
    CHECK(error == relay_path + ": is a relay ticket, not a friend ticket or an allowlist");
    const auto ident_path = dir.write("alice.ident", "{\"privateKey\": \"" + alice + "\"}");
    CHECK_FALSE(try_load_allowlist(ident_path, error).has_value());
    CHECK(error == ident_path + ": is an identity file, not a friend ticket or an allowlist");
    const auto broken = dir.write("broken.friend", "{\"publicKey\": \"" + alice + "\"}");
    CHECK_FALSE(try_load_allowlist(broken, error).has_value());
    CHECK(error == broken + ": missing field \"relays\"");
  }
  SUBCASE("a missing file") {
    std::string error;
    CHECK_FALSE(try_load_allowlist((dir.path / "none.txt").string(), error).has_value());
    CHECK(error.find("none.txt: cannot open the allowlist") != std::string::npos);
  }
  SUBCASE("a directory") {
    std::string error;
    CHECK_FALSE(try_load_allowlist(dir.path.string(), error).has_value());
    CHECK(error.find("not a regular file") != std::string::npos);
  }
  SUBCASE("the size limit: at the maximum it is read, one byte more is refused unread") {
    const std::string comment_line = "#" + std::string(1022, 'c') + "\n";  // 1024 bytes
    std::string text;
    text.reserve(max_allowlist_file_bytes);
    while (text.size() + comment_line.size() <= max_allowlist_file_bytes) text += comment_line;
    text += std::string(max_allowlist_file_bytes - text.size(), '\n');
    REQUIRE(text.size() == max_allowlist_file_bytes);
    const auto path = dir.write("big.txt", text);
    std::string error;
    CHECK(try_load_allowlist(path, error).has_value());
    std::ofstream(path, std::ios::app) << "\n";
    CHECK_FALSE(try_load_allowlist(path, error).has_value());
    CHECK(error.find("larger than") != std::string::npos);
  }
}
