// Tests for common/topic: the topic ids of tests/vectors/strelay-topics.json (computed outside
// libsodium, with Python's BLAKE2b), and the names refused.
#include "common/topic.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

using namespace strelay;

namespace {

std::vector<std::uint8_t> from_hex(const std::string& hex) {
  std::vector<std::uint8_t> out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<std::uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

nlohmann::json vectors() {
  std::ifstream in(std::filesystem::path(STRELAY_TESTS_DIR) / "vectors" / "strelay-topics.json");
  REQUIRE(in);
  return nlohmann::json::parse(in);
}

PublicKey relay_key(const std::string& hex) {
  const auto bytes = from_hex(hex);
  REQUIRE(bytes.size() == key_bytes);
  std::array<std::uint8_t, key_bytes> raw{};
  std::copy(bytes.begin(), bytes.end(), raw.begin());
  return PublicKey(raw);
}

}  // namespace

TEST_CASE("the frozen topic ids: each name on each relay") {
  const auto v = vectors();
  CHECK(from_hex(v.at("context_hex").get<std::string>()) ==
        std::vector<std::uint8_t>(topic_context.begin(), topic_context.end()));
  CHECK(v.at("max_name_bytes").get<std::size_t>() == max_topic_name_bytes);
  std::size_t checked = 0;
  for (const auto& entry : v.at("vectors")) {
    const auto name = from_hex(entry.at("name_hex").get<std::string>());
    CHECK(std::string(name.begin(), name.end()) == entry.at("name").get<std::string>());
    const auto id =
        topic_id(relay_key(entry.at("relay_public_key").get<std::string>()),
                 std::string_view(reinterpret_cast<const char*>(name.data()), name.size()));
    CHECK(std::vector<std::uint8_t>(id.begin(), id.end()) ==
          from_hex(entry.at("topic_id").get<std::string>()));
    ++checked;
  }
  CHECK(checked >= 10);
}

TEST_CASE("the same name is another id on another relay; names of 0 or 257 bytes are refused") {
  const auto v = vectors();
  const auto a = relay_key(v.at("vectors").at(0).at("relay_public_key").get<std::string>());
  const auto b = relay_key(v.at("vectors").back().at("relay_public_key").get<std::string>());
  REQUIRE(a != b);
  CHECK(topic_id(a, "project-x") != topic_id(b, "project-x"));
  CHECK(topic_id(a, "project-x") != topic_id(a, "project-y"));
  for (const auto& [why, hex] : v.at("refused_names_hex").items()) {
    const auto name = from_hex(hex.get<std::string>());
    CHECK_THROWS_AS(
        topic_id(a, std::string_view(reinterpret_cast<const char*>(name.data()), name.size())),
        std::invalid_argument);
  }
  CHECK_NOTHROW(topic_id(a, std::string(max_topic_name_bytes, 'x')));
}
