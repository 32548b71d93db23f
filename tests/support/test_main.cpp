// One doctest main for every unit-test binary: libsodium is initialised first,
// as every binary of the project does before touching a key.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <csignal>

#include "common/keys.hpp"

int main(int argc, char** argv) {
  strelay::init_crypto();
  std::signal(SIGPIPE, SIG_IGN);  // as strelay does: in-process relays splice into sockets
  doctest::Context context(argc, argv);
  return context.run();
}
