// Shared by the pairing table's tests (tests/relay_state_test.cpp, the table of sequences and
// the named cases; tests/relay_state_model_test.cpp, the randomized reference model):
// deterministic identities A, B, C, ..., readable renderings of actions, and builders of the
// actions a step is expected to produce.
#pragma once

#include <chrono>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include "strelay/relay_state.hpp"

namespace strelay::test::pairing {

using namespace std::chrono_literals;
using R = RefuseReason;

inline const TimePoint t0 = TimePoint{} + 1000h;
inline const HashKey fixed_key{7, 7, 7};

// Deterministic identities A, B, C, D, ... (seed bytes all equal to the index + 1).
const std::vector<PublicKey>& keys();
const PublicKey& key(char name);
PublicKey random_key(std::mt19937_64& rng);

// "A", "B", ... for the keys above, "?" for any other.
std::string name(const PublicKey& k);
std::string describe(const RelayMessage& m);
std::string describe(const Action& a);
std::string describe(const Actions& actions);

// The actions a step is expected to produce.
Actions none();
Actions listen_ok(ConnId c);
Actions incoming(ConnId listener, char from);
Actions refused(ConnId c, RefuseReason r);
Actions closed(ConnId c, CloseReason r);
Actions paired(ConnId connector, ConnId acceptor, char from, char listener);
Allowlist allow_only(std::initializer_list<PublicKey> members);
Actions operator+(Actions a, const Actions& b);

}  // namespace strelay::test::pairing
