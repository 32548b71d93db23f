// The C++ decoder of control messages (common/messages.cpp), for test/messages_cpp.test.js:
// reads one message per line (hex) on stdin and prints, per line, the union member's index
// ("ok N") or "refused". Built by the test against the caller's build of libstrelay_common.
#include <sodium.h>

#include <iostream>
#include <string>
#include <vector>

#include "common/messages.hpp"

int main(int argc, char** argv) {
  if (sodium_init() < 0) return 1;
  const bool relay = argc > 1 && std::string(argv[1]) == "relay";
  std::string line;
  while (std::getline(std::cin, line)) {
    std::vector<std::uint8_t> bytes;
    for (std::size_t i = 0; i + 1 < line.size(); i += 2) {
      bytes.push_back(static_cast<std::uint8_t>(std::stoi(line.substr(i, 2), nullptr, 16)));
    }
    if (relay) {
      const auto r = strelay::try_decode_relay_message(bytes);
      std::cout << (r ? "ok " + std::to_string(r->index()) : std::string("refused")) << "\n";
    } else {
      const auto r = strelay::try_decode_node_message(bytes);
      std::cout << (r ? "ok " + std::to_string(r->index()) : std::string("refused")) << "\n";
    }
  }
}
