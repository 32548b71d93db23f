#!/usr/bin/env bash
# libstrelay from C (tests/capi_test.c, compiled as C99 with -Wall -Werror against strelay.h):
# its selftest (errors, bad input, closed handles), then the end-to-end scenarios of
# tests/lib/capi_scenarios.sh against stcat through real relays: both roles, byte-exact,
# failover listening and connecting. Runs under ASan too (the program and the library are
# both instrumented). Needs STRELAY_BIN_DIR (CTest sets it); CAPI_TEST_KIB sizes the data.
set -uo pipefail
tests_dir=$(cd "${STRELAY_TESTS_DIR:-$(dirname "$0")}" && pwd)
source "$tests_dir/lib/checks.sh"
source "$tests_dir/lib/capi_scenarios.sh"

peer=("$bin_dir/capi_test")
"${peer[@]}" selftest >selftest.out 2>selftest.err || { cat selftest.err >&2; fail "selftest"; }
check "selftest" grep -q "selftest ok" selftest.out
capi_scenarios
echo "capi_test: $passed checks passed"
