#!/usr/bin/env bash
# The end-to-end msg1 with Connect (issue 17.2; docs/protocol.md 4.4, "The end-to-end msg1 with
# connect") through the real stmgr, strelay and stcat processes on 127.0.0.1: for each of the
# four combinations of a connector and a listener with and without --no-early-e2e, 64 KiB of
# random bytes go through the listener's `cat` and come back byte for byte, and the nodes' logs
# say the early path was taken exactly when both sides use it (an older peer of either kind
# makes the whole handshake run in the tunnel). The relay's rules for the fields (given only to
# a listener that opted in, paired by msg1, sizes) are tests/relay_state_early_e2e_test.cpp.
#
# Needs STRELAY_BIN_DIR (CTest sets it). Every process runs under `timeout`; every wait has a
# deadline.
set -uo pipefail

tests_dir=$(cd "${STRELAY_TESTS_DIR:-$(dirname "$0")}" && pwd)
fast=(--backoff-initial 0.2 --backoff-cap 2 --connect-timeout 5)

source "$tests_dir/lib/checks.sh"  # scratch directory, cleanup, check, fail, wait_for, count

alice_bob_and_relay --log-level debug --handshake-rate 1000 --handshake-burst 1000
head -c 65536 /dev/urandom >payload.bin

# run NAME CONNECTOR_FLAG LISTENER_FLAG EXPECT_EARLY (true|false)
run() {
  local name=$1 connector_flag=$2 listener_flag=$3 expect=$4
  # shellcheck disable=SC2086 # an empty flag is no argument
  timeout 120 "$stcat" listen -vv "${fast[@]}" --idfile bob.ident --relay r.relay \
    --allow alice.friend --exec cat $listener_flag </dev/null >"$name.l.out" 2>"$name.l.err" &
  local listener=$!
  background+=("$listener")
  wait_for "$name.l.err" "listening on relay" 10 || fail "$name: listener not up"
  # shellcheck disable=SC2086
  timeout 60 "$stcat" connect -vv "${fast[@]}" --idfile alice.ident --to bob.friend \
    $connector_flag <payload.bin >"$name.out" 2>"$name.err"
  local rc=$?
  check "$name: exit 0 (got $rc)" test "$rc" -eq 0
  check "$name: 64 KiB came back byte for byte" cmp -s payload.bin "$name.out"
  wait_for "$name.l.err" "peer_accepted" 10 || fail "$name: the listener logged no accept"
  check "$name: the connector's early_e2e=$expect" grep -q "peer_connected.*early_e2e=$expect" "$name.err"
  check "$name: the listener's early_e2e=$expect" grep -q "peer_accepted.*early_e2e=$expect" "$name.l.err"
  kill -TERM "$listener" 2>/dev/null
  wait "$listener" 2>/dev/null
}

run both "" "" true
run old_connector --no-early-e2e "" false
run old_listener "" --no-early-e2e false
run neither --no-early-e2e --no-early-e2e false

echo "early_e2e_test: $passed checks passed"
