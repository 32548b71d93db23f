// Tests for common/tickets: Offset's real relay tickets, every invalid vector with its precise
// cause, byte-identical writing, friend tickets and their limits, and file-kind detection.
#include "common/tickets.hpp"

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "common/identity_file.hpp"
#include "common/protocol.hpp"

using namespace strelay;
namespace fs = std::filesystem;

namespace {

const nlohmann::json& vectors() {
  static const nlohmann::json v = [] {
    std::ifstream in(fs::path(STRELAY_TESTS_DIR) / "vectors/offset-files.json");
    REQUIRE(in.good());
    return nlohmann::json::parse(in);
  }();
  return v;
}

struct TempDir {
  fs::path path;
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "tickets_test.XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
};

bool contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

std::string relay_refusal(const std::string& text) {
  std::string error;
  CHECK_FALSE(try_parse_relay_ticket(text, "r.relay", error).has_value());
  CHECK(error.rfind("r.relay: ", 0) == 0);
  CHECK(error.find('\n') == std::string::npos);
  return error;
}

std::string friend_refusal(const std::string& text) {
  std::string error;
  CHECK_FALSE(try_parse_friend_ticket(text, "f.friend", error).has_value());
  CHECK(error.rfind("f.friend: ", 0) == 0);
  CHECK(error.find('\n') == std::string::npos);
  return error;
}

const std::string relay0_key = "pgl9Jm109Q5d69EN4WjjVBbRmCLHJfgyR0pSoJflvzE";

RelayTicket relay(const std::string& key, const std::string& address) {
  std::string error;
  const auto pk = try_parse_public_key(key, error);
  REQUIRE(pk);
  return RelayTicket{*pk, parse_address(address)};
}

}  // namespace

TEST_CASE("the three relay tickets the Offset app ships load, and are written back byte for byte") {
  REQUIRE(vectors()["offset_relay_tickets"].size() == 3);
  for (const auto& v : vectors()["offset_relay_tickets"]) {
    CAPTURE(v["what"].get<std::string>());
    const auto text = v["ticket_file"].get<std::string>();
    const RelayTicket ticket = parse_relay_ticket(text, "vector");
    CHECK(ticket.public_key.to_base64url() == v["public_key"].get<std::string>());
    CHECK(ticket.address.to_string() == v["address"].get<std::string>());
    CHECK(format_relay_ticket(ticket) == text);
  }
}

TEST_CASE("a relay ticket written for an identity vector is the vector's ticket, byte for byte") {
  for (const auto& v : vectors()["identities"]) {
    CAPTURE(v["what"].get<std::string>());
    const Identity id = parse_identity_file(v["identity_file"].get<std::string>(), "vector");
    const RelayTicket ticket{id.public_key(), parse_address("127.0.0.1:4567")};
    CHECK(format_relay_ticket(ticket) ==
          v["relay_ticket_for_address_127.0.0.1:4567"].get<std::string>());
  }
}

TEST_CASE("every invalid ticket vector is refused with a cause naming its problem") {
  // The cause each vector must give, keyed by the vector's "what".
  const std::map<std::string, std::string> expected{
      {"standard base64 alphabet instead of base64url",
       "\"publicKey\": character '/' at offset 2 is not in the base64url alphabet"},
      {"base64url with '=' padding",
       "\"publicKey\": padding '=' is not allowed (base64url without padding)"},
      {"key of 31 bytes",
       "\"publicKey\" is 42 characters (31 bytes), expected 43 (a base64url Ed25519 public key)"},
      {"key of 33 bytes (must not be truncated to 32)",
       "\"publicKey\" is 44 characters (33 bytes), expected 43 (a base64url Ed25519 public key)"},
      {"not a valid Ed25519 point (non-canonical encoding)",
       "\"publicKey\" is not a valid Ed25519 public key: a non-canonical encoding"},
      {"small-order Ed25519 point (identity element)",
       "\"publicKey\" is not a valid Ed25519 public key: a small-order point"},
      {"address without port", "address \"relay.example.org\": missing :port (expected host:port)"},
      {"port 65536", "address \"relay.example.org:65536\": port 65536 is out of range 1..65535"},
      {"port 0", "address \"relay.example.org:0\": port 0 is out of range 1..65535"},
      {"address longer than 256 bytes", "address is 269 bytes, longer than the 256 allowed"},
      {"missing publicKey", "missing field \"publicKey\""},
      {"not JSON", "not valid JSON (syntax error at line 1, column 1)"},
  };
  REQUIRE(vectors()["invalid_tickets"].size() == expected.size());
  for (const auto& v : vectors()["invalid_tickets"]) {
    const auto what = v["what"].get<std::string>();
    CAPTURE(what);
    REQUIRE(expected.count(what) == 1);
    const std::string error = relay_refusal(v["ticket_file"].get<std::string>());
    CHECK(error == "r.relay: " + expected.at(what));
  }
}

TEST_CASE("a key outside the prime-order subgroup is told apart from a small-order one") {
  // The Ed25519 base point plus a point of order 2 (y = -1): on the curve, mixed order.
  std::string error;
  const auto base = try_parse_public_key("WGZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY", error);
  REQUIRE(base);
  std::array<std::uint8_t, key_bytes> order2{};
  order2[0] = 0xec;
  for (std::size_t i = 1; i < 31; ++i) order2[i] = 0xff;
  order2[31] = 0x7f;
  std::array<std::uint8_t, key_bytes> mixed{};
  REQUIRE(crypto_core_ed25519_add(mixed.data(), base->bytes().data(), order2.data()) == 0);
  CHECK_FALSE(try_parse_public_key(PublicKey(mixed).to_base64url(), error));
  CHECK(error == "key is not a valid Ed25519 public key: not in the prime-order subgroup");
  CHECK_FALSE(try_parse_public_key(PublicKey(order2).to_base64url(), error));
  CHECK(error == "key is not a valid Ed25519 public key: a small-order point");
}

TEST_CASE("a relay ticket has exactly publicKey and address, both strings") {
  const std::string key = "\"publicKey\": \"" + relay0_key + "\"";
  CHECK(contains(relay_refusal("{" + key + ", \"address\": \"a.org:1\", \"name\": \"x\"}"),
                 "unknown field \"name\" (a relay ticket has exactly \"publicKey\" and "
                 "\"address\")"));
  CHECK(contains(relay_refusal("{" + key + "}"), "missing field \"address\""));
  CHECK(contains(relay_refusal("{" + key + ", \"address\": 4567}"),
                 "\"address\" must be a string, not a number"));
  CHECK(contains(relay_refusal("{\"publicKey\": [], \"address\": \"a:1\"}"),
                 "\"publicKey\" must be a string, not an array"));
  CHECK(contains(relay_refusal("{" + key + ", \"address\": \"a:1\", \"address\": \"b:2\"}"),
                 "duplicate field \"address\""));
  CHECK(contains(relay_refusal("\"a:1\""), "expected a JSON object, found a string"));
  CHECK(contains(relay_refusal("{" + key + ", \"address\": \"[::1]:0\"}"), "port 0"));
}

TEST_CASE("a relay ticket text of 64 KiB parses and one byte more is refused") {
  std::string at_limit = format_relay_ticket(relay(relay0_key, "a.org:1"));
  at_limit += std::string(max_ticket_file_bytes - at_limit.size(), '\n');
  std::string error;
  CHECK(try_parse_relay_ticket(at_limit, "x", error));
  CHECK(contains(relay_refusal(at_limit + " "), "is 65537 bytes, more than the 65536"));
}

TEST_CASE("a friend ticket is written in Offset's layout and parses back equal") {
  const FriendTicket ticket{relay(relay0_key, "a.org:1").public_key,
                            {relay("9F_0d1ZVeyYYS9tpVnkUtjtCePcH-_hRWdbduNL_X04", "a.org:1"),
                             relay("_5BaZ-NnRpyCimUc_erW_Tzv9xyUiz-Y2zWglJmFNxA", "[::1]:2")}};
  const std::string text = format_friend_ticket(ticket);
  CHECK(text ==
        "{\n"
        "  \"publicKey\": \"pgl9Jm109Q5d69EN4WjjVBbRmCLHJfgyR0pSoJflvzE\",\n"
        "  \"relays\": [\n"
        "    {\n"
        "      \"publicKey\": \"9F_0d1ZVeyYYS9tpVnkUtjtCePcH-_hRWdbduNL_X04\",\n"
        "      \"address\": \"a.org:1\"\n"
        "    },\n"
        "    {\n"
        "      \"publicKey\": \"_5BaZ-NnRpyCimUc_erW_Tzv9xyUiz-Y2zWglJmFNxA\",\n"
        "      \"address\": \"[::1]:2\"\n"
        "    }\n"
        "  ]\n"
        "}");
  CHECK(parse_friend_ticket(text, "f") == ticket);
}

TEST_CASE("a friend ticket names 1 to 16 relays, each a valid relay ticket") {
  const auto with_relays = [](std::size_t n) {
    FriendTicket t{relay(relay0_key, "a.org:1").public_key, {}};
    for (std::size_t i = 0; i < n; ++i) t.relays.push_back(relay(relay0_key, "a.org:1"));
    return format_friend_ticket(t);
  };
  std::string error;
  CHECK(try_parse_friend_ticket(with_relays(1), "f", error));
  CHECK(try_parse_friend_ticket(with_relays(max_friend_ticket_relays), "f", error));
  CHECK(contains(friend_refusal(with_relays(max_friend_ticket_relays + 1)),
                 "\"relays\" has 17 relays; a friend ticket names 1 to 16"));
  CHECK(contains(friend_refusal(with_relays(0)), "\"relays\" has 0 relays"));

  const std::string key = "\"publicKey\": \"" + relay0_key + "\"";
  CHECK(contains(friend_refusal("{" + key + ", \"relays\": {}}"), "\"relays\" must be an array"));
  CHECK(contains(friend_refusal("{" + key + ", \"relays\": [\"a.org:1\"]}"),
                 "\"relays\"[0]: must be a relay ticket object"));
  CHECK(contains(
      friend_refusal("{" + key + ", \"relays\": [{" + key + ", \"address\": \"a.org:1\"}, {" + key +
                     ", \"address\": \"a.org:65536\"}]}"),
      "\"relays\"[1]: address \"a.org:65536\": port 65536 is out of range"));
  CHECK(contains(friend_refusal("{" + key + "}"), "missing field \"relays\""));
  CHECK(contains(friend_refusal("{\"publicKey\": \"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\", "
                                "\"relays\": []}"),
                 "small-order point"));
}

TEST_CASE("tickets are written 0644, never clobbered, and load back equal") {
  TempDir tmp;
  const RelayTicket ticket = relay(relay0_key, "relay0.offsetcredit.org:11051");
  const fs::path file = tmp.path / "relay.relay";
  write_relay_ticket(file, ticket, Overwrite::refuse);
  struct stat st {};
  REQUIRE(::stat(file.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0644);
  CHECK(load_relay_ticket(file) == ticket);
  std::ifstream in(file, std::ios::binary);
  CHECK(std::string(std::istreambuf_iterator<char>(in), {}) ==
        vectors()["offset_relay_tickets"][0]["ticket_file"].get<std::string>());
  CHECK_THROWS_AS(write_relay_ticket(file, relay(relay0_key, "b.org:2"), Overwrite::refuse),
                  FileError);
  CHECK(load_relay_ticket(file) == ticket);

  const FriendTicket friend_ticket{ticket.public_key, {ticket}};
  write_friend_ticket(tmp.path / "me.friend", friend_ticket, Overwrite::refuse);
  CHECK(load_friend_ticket(tmp.path / "me.friend") == friend_ticket);
  std::string error;
  CHECK_FALSE(try_load_relay_ticket(tmp.path / "me.friend", error));
  CHECK(error == (tmp.path / "me.friend").string() + ": is a friend ticket, not a relay ticket");
  CHECK_FALSE(try_load_friend_ticket(file, error));
  CHECK(error == file.string() + ": is a relay ticket, not a friend ticket");
  CHECK_FALSE(try_load_friend_ticket(tmp.path / "missing.friend", error));
  CHECK(error == (tmp.path / "missing.friend").string() + ": No such file or directory");
}

TEST_CASE("the kind of a file is told from its fields") {
  std::string error;
  const auto& v = vectors();
  CHECK(try_detect_file_kind(v["identities"][0]["identity_file"].get<std::string>(), "x", error) ==
        FileKind::identity);
  CHECK(try_detect_file_kind(v["offset_relay_tickets"][0]["ticket_file"].get<std::string>(), "x",
                             error) == FileKind::relay_ticket);
  CHECK(try_detect_file_kind("{\"relays\": 1}", "x", error) == FileKind::friend_ticket);
  CHECK(try_detect_file_kind("{\"address\": 1}", "x", error) == FileKind::relay_ticket);
  CHECK_FALSE(try_detect_file_kind("{\"hello\": 1}", "x", error));
  CHECK(error ==
        "x: neither an identity file nor a ticket (no \"privateKey\", \"publicKey\" or "
        "\"relays\" field)");
  CHECK_FALSE(try_detect_file_kind("nope", "x", error));
  CHECK(error == "x: not valid JSON (syntax error at line 1, column 2)");
}

// Inputs the fuzz targets (fuzz/tickets_fuzz.cpp) found; each is also in fuzz/corpus/tickets/.
TEST_CASE(
    "regression inputs (fuzzing): an empty publicKey is refused as 0 characters, without UB") {
  // tickets_fuzz, first run: the empty base64url text passed a null output buffer to
  // libsodium's sodium_base642bin (declared nonnull; UBSan aborted).
  std::string error;
  CHECK_FALSE(try_parse_public_key("", error));
  CHECK(error == "key is 0 characters, expected 43 (a base64url Ed25519 public key)");
  error.clear();
  CHECK_FALSE(
      try_parse_relay_ticket("{\"publicKey\": \"\", \"address\": \"a.org:1\"}", "t.relay", error));
  CHECK(error ==
        "t.relay: \"publicKey\" is 0 characters, expected 43 (a base64url Ed25519 public key)");
  error.clear();
  CHECK_FALSE(try_parse_friend_ticket("{\"publicKey\": \"\", \"relays\": []}", "t.friend", error));
  CHECK(error.find("is 0 characters") != std::string::npos);
}

TEST_CASE("a truncated key (38 to 42 characters) says what length was expected") {
  const std::string key = "qV7tSW_1SOs4jWJgPOTXnPYslk4F9h-DyloziANiGTw";
  std::string error;
  for (std::size_t length = 38; length <= 42; ++length) {
    CHECK_FALSE(try_parse_public_key(key.substr(0, length), error));
    const std::string bytes =
        length % 4 == 1 ? "" : " (" + std::to_string(length * 3 / 4) + " bytes)";
    CHECK(error == "key is " + std::to_string(length) + " characters" + bytes +
                       ", expected 43 (a base64url Ed25519 public key)");
  }
  CHECK(try_parse_public_key(key, error));
}

TEST_CASE("each reader names the kind of a wrong file instead of a missing field") {
  const std::string key = "qV7tSW_1SOs4jWJgPOTXnPYslk4F9h-DyloziANiGTw";
  const std::string relay = "{\"publicKey\": \"" + key + "\", \"address\": \"a.org:1\"}";
  const std::string friend_text = "{\"publicKey\": \"" + key + "\", \"relays\": [" + relay + "]}";
  const std::string identity = "{\"privateKey\": \"" + key + "\"}";
  std::string error;
  CHECK_FALSE(try_parse_relay_ticket(friend_text, "bob.friend", error));
  CHECK(error == "bob.friend: is a friend ticket, not a relay ticket");
  CHECK_FALSE(try_parse_relay_ticket(identity, "alice.ident", error));
  CHECK(error == "alice.ident: is an identity file, not a relay ticket");
  CHECK_FALSE(try_parse_friend_ticket(relay, "relay.relay", error));
  CHECK(error == "relay.relay: is a relay ticket, not a friend ticket");
  CHECK_FALSE(try_parse_friend_ticket(identity, "alice.ident", error));
  CHECK(error == "alice.ident: is an identity file, not a friend ticket");
  // A lone publicKey is either ticket: the kind's own parser explains what is missing.
  CHECK_FALSE(try_parse_friend_ticket("{\"publicKey\": \"" + key + "\"}", "x", error));
  CHECK(error == "x: missing field \"relays\"");
}

TEST_CASE(
    "regression inputs (fuzzing): a number too large for a double is refused with one line, not a "
    "crash") {
  // tickets_fuzz, CI run of 2026-11-23: nlohmann::json throws out_of_range (not parse_error)
  // for "number overflow parsing '126666666e66666666667'"; it escaped the parser.
  std::string error;
  CHECK_FALSE(try_parse_relay_ticket("126666666e66666666667", "t.relay", error));
  CHECK(error == "t.relay: not valid JSON (a number out of range)");
  error.clear();
  CHECK_FALSE(
      try_parse_relay_ticket("{\"publicKey\": 1e999, \"address\": \"a.org:1\"}", "t.relay", error));
  CHECK(error.find("out of range") != std::string::npos);
}
