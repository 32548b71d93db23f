#!/usr/bin/env bash
# libstrelay from Python (tests/capi_test.py: ctypes in Debian's python3): the end-to-end
# scenarios of tests/lib/capi_scenarios.sh against stcat through real relays, both roles,
# byte-exact, failover. An ASan build's library needs the sanitizer's runtime loaded first,
# which python3 is not built with: there the test exits 77, which CTest counts as skipped.
set -uo pipefail
tests_dir=$(cd "${STRELAY_TESTS_DIR:-$(dirname "$0")}" && pwd)
source "$tests_dir/lib/checks.sh"
source "$tests_dir/lib/capi_scenarios.sh"

lib=$bin_dir/../lib/libstrelay.so.0
[[ -f $lib ]] || fail "no $lib"
if nm -D "$lib" | grep -E ' U __(asan|tsan)_' >/dev/null; then  # no -q: nm must not get SIGPIPE
  echo "capi_python_test: skipped: $lib is sanitizer-instrumented; python3 cannot load it"
  exit 77
fi
peer=(python3 "$tests_dir/capi_test.py" "$lib")
capi_scenarios
echo "capi_python_test: $passed checks passed"
