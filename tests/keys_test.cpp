// Tests for common/keys (disable_core_dumps included) and common/base64url.
#include "common/keys.hpp"

#include <doctest/doctest.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <optional>
#include <vector>

#include "common/base64url.hpp"

using namespace strelay;

TEST_CASE("an identity from the all-0..31 seed has the public key Offset's vectors give") {
  std::array<std::uint8_t, key_bytes> seed{};
  for (std::size_t i = 0; i < seed.size(); ++i) seed[i] = static_cast<std::uint8_t>(i);
  const auto id = Identity::from_seed(seed);
  CHECK(id.public_key().to_base64url() == "A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg");
  CHECK(id.public_key().fingerprint() == "A6EHv_PO");
}

TEST_CASE("a signature verifies under its key and fails for any other message or key") {
  const auto a = Identity::generate();
  const auto b = Identity::generate();
  const std::vector<std::uint8_t> msg{1, 2, 3};
  const auto sig = a.sign(msg);
  CHECK(a.public_key().verify(msg, sig));
  CHECK_FALSE(b.public_key().verify(msg, sig));
  const std::vector<std::uint8_t> other{1, 2, 4};
  CHECK_FALSE(a.public_key().verify(other, sig));
}

TEST_CASE("small-order and all-zero Ed25519 keys are not identities") {
  std::array<std::uint8_t, key_bytes> zero{};
  CHECK_FALSE(PublicKey::from_bytes(zero).has_value());
  std::array<std::uint8_t, key_bytes> one{};  // the identity point, order 1
  one[0] = 1;
  CHECK_FALSE(PublicKey::from_bytes(one).has_value());
  const std::vector<std::uint8_t> short_key(31, 9);
  CHECK_FALSE(PublicKey::from_bytes(short_key).has_value());
}

TEST_CASE("the table of keys found valid changes how fast a key is accepted, never whether") {
  const std::array<std::uint8_t, key_bytes> zero{};  // the value of an empty slot
  std::array<std::uint8_t, key_bytes> one{};         // the identity point, order 1
  one[0] = 1;
  // A valid key in the slot of each invalid one (found by trying fresh identities): a table
  // that matched on the slot alone, or took an empty slot for the all-zero key, would pass them.
  for (const auto& invalid : {zero, one}) {
    CAPTURE(detail::valid_key_slot(invalid));
    std::optional<Identity> neighbour;
    for (int tries = 0; tries < 20 * static_cast<int>(detail::valid_key_slots) && !neighbour;
         ++tries) {
      auto id = Identity::generate();
      if (detail::valid_key_slot(id.public_key().bytes()) == detail::valid_key_slot(invalid)) {
        neighbour = std::move(id);
      }
    }
    REQUIRE(neighbour.has_value());
    CHECK(neighbour->public_key().is_valid_point());  // now in the table
    CHECK(neighbour->public_key().is_valid_point());  // and found there
    CHECK_FALSE(PublicKey(invalid).is_valid_point());
    CHECK_FALSE(PublicKey::from_bytes(invalid).has_value());
    CHECK(PublicKey::from_bytes(neighbour->public_key().bytes()).has_value());
  }
  // A valid key stays valid after an invalid key in its slot was refused.
  const auto a = Identity::generate();
  const std::vector<std::uint8_t> msg{7};
  CHECK(a.public_key().verify(msg, a.sign(msg)));
  CHECK(a.public_key().verify(msg, a.sign(msg)));
}

TEST_CASE("base64url round-trips and names what is wrong") {
  std::vector<std::uint8_t> out;
  std::string error;
  const std::vector<std::uint8_t> bytes{0xfb, 0xff, 0x00};
  CHECK(to_base64url(bytes) == "-_8A");
  REQUIRE(try_from_base64url("-_8A", out, error));
  CHECK(out == bytes);
  SUBCASE("standard alphabet") {
    CHECK_FALSE(try_from_base64url("+/8A", out, error));
    CHECK(error.find("'+'") != std::string::npos);
  }
  SUBCASE("padding") {
    CHECK_FALSE(try_from_base64url("AA==", out, error));
    CHECK(error.find("padding") != std::string::npos);
  }
  SUBCASE("impossible length") {
    CHECK_FALSE(try_from_base64url("AAAAA", out, error));
    CHECK(error.find("length") != std::string::npos);
  }
  SUBCASE("non-zero trailing bits") {
    CHECK_FALSE(try_from_base64url("AB", out, error));
    CHECK(error.find("trailing") != std::string::npos);
  }
}

TEST_CASE("disable_core_dumps: RLIMIT_CORE 0/0 and not dumpable, in a child process") {
  // In a child, so the test binary itself stays debuggable. Each bit of the exit status is one
  // check that failed; the state before the call is checked too, so the test cannot pass
  // because the process already was that way.
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    int failed = 0;
    const rlimit some{1 << 20, RLIM_INFINITY};
    if (::setrlimit(RLIMIT_CORE, &some) != 0 || ::prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0 ||
        ::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 1) {
      failed |= 1;  // the positive control: it was dumpable, with a core limit
    }
    disable_core_dumps();
    rlimit now{};
    if (::getrlimit(RLIMIT_CORE, &now) != 0 || now.rlim_cur != 0 || now.rlim_max != 0) failed |= 2;
    if (::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0) failed |= 4;
    ::_exit(failed);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  CHECK_MESSAGE(WEXITSTATUS(status) == 0,
                "failed checks (1 control, 2 RLIMIT_CORE, 4 dumpable): " << WEXITSTATUS(status));
}
