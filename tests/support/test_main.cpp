// One doctest main for every unit-test binary: libsodium is initialised first,
// as every binary of the project does before touching a key.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "common/keys.hpp"

int main(int argc, char** argv) {
  strelay::init_crypto();
  doctest::Context context(argc, argv);
  return context.run();
}
