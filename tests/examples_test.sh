#!/usr/bin/env bash
# The demo scripts in examples/ run to the end and succeed against the binaries of this build:
#   - demo-local.sh: one relay, two stcat nodes; every line comes back through the relay;
#   - demo-failover.sh: two relays; Alice reaches Bob through R1, through R2 while R1 is down,
#     and through R1 again after it returns.
# Each demo bounds its own steps; `timeout` bounds each run as a whole.
set -euo pipefail
export STRELAY_BIN_DIR=${STRELAY_BIN_DIR:?set by CTest}
examples=$(cd "${STRELAY_TESTS_DIR:?set by CTest}/../examples" && pwd)
log=$(mktemp /tmp/strelay-examples.XXXXXX)
trap 'rm -f "$log"' EXIT
fail() {
  echo "FAIL: $*" >&2
  cat "$log" >&2
  exit 1
}

timeout 60 "$examples/demo-local.sh" --lines 2 >"$log" 2>&1 || fail "demo-local.sh exited with $?"
grep -q "demo-local: OK, 2 of 2 lines" "$log" || fail "demo-local.sh did not report its lines"
grep -q "BOB SAYS: HELLO BOB, LINE 2" "$log" || fail "demo-local.sh did not show Bob's answer"
echo "ok: demo-local.sh"

timeout 120 "$examples/demo-failover.sh" >"$log" 2>&1 || fail "demo-failover.sh exited with $?"
grep -q "conversation 2 went through" "$log" || fail "demo-failover.sh did not fail over"
grep -q "demo-failover: OK" "$log" || fail "demo-failover.sh did not succeed"
echo "ok: demo-failover.sh"
