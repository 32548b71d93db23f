#!/usr/bin/env bash
# The listener's standby connection (issue 17.2; docs/protocol.md 4.4, "Standby") through the
# real stmgr, strelay and stcat processes on 127.0.0.1:
#   1. stcat listen keeps a standby: two sessions in a row are accepted on standbys (the relay
#      logs standby_accept for each), and the bytes arrive
#   2. with --no-standby the same session is accepted on a new connection (the fallback)
#   3. a listener replaced by a newer listen of the same key: its standby is closed with it,
#      and the new listener's own standby serves the next session
# The pairing rules at their limits (a second standby replaces the first, a standby without a
# listen is refused, the standby closes with its listen) are tests/relay_state_standby_test.cpp.
#
# Needs STRELAY_BIN_DIR (CTest sets it). Every process runs under `timeout`; every wait has a
# deadline.
set -uo pipefail

tests_dir=$(cd "${STRELAY_TESTS_DIR:-$(dirname "$0")}" && pwd)
fast=(--backoff-initial 0.2 --backoff-cap 2 --connect-timeout 5)

source "$tests_dir/lib/checks.sh"  # scratch directory, cleanup, check, fail, wait_for, count

alice_bob_and_relay --metrics-addr 127.0.0.1:0 --log-level debug --handshake-rate 1000 \
  --handshake-burst 1000
metrics_url=$(sed -n 's/.* metrics \(http:[^ ]*\).*/\1/p' relay.log | head -n 1)
# standbys: the strelay_standbys gauge (parked standby connections).
standbys() {
  curl -s --max-time 5 "${metrics_url%/}/metrics" | sed -n 's/^strelay_standbys \([0-9]*\)$/\1/p'
}
# wait_standbys N: until the gauge reads N (10 s at most).
wait_standbys() {
  local deadline=$(($(now_ms) + 10000))
  until [[ $(standbys) == "$1" ]]; do
    (($(now_ms) > deadline)) && return 1
    sleep 0.05
  done
}

# listen NAME ARGS...: stcat listen -v --keep-listening --exec cat in the background.
listen() {
  local name=$1
  shift
  timeout 120 "$stcat" listen -v "${fast[@]}" --idfile bob.ident --relay r.relay \
    --allow alice.friend --keep-listening --exec cat "$@" </dev/null >"$name.out" 2>"$name.err" &
  listener_pid=$!
  background+=("$listener_pid")
}
# session NAME: alice sends one line through bob's `cat` and must read it back.
session() {
  echo "hello $1" >"$1.in"
  timeout 60 "$stcat" connect "${fast[@]}" --idfile alice.ident --to bob.friend <"$1.in" \
    >"$1.out" 2>"$1.err"
  rc=$?
  check "$1: exit 0 (got $rc)" test "$rc" -eq 0
  check "$1: the line came back" cmp -s "$1.in" "$1.out"
}

# ---------------------------------------------------------------- 1. sessions over standbys
listen l1
wait_for l1.err "listening on relay" 10 || fail "listener 1 not up"
wait_for relay.log "standby_request" 10 || fail "no standby parked"
wait_standbys 1 || fail "the strelay_standbys gauge did not reach 1 (it reads '$(standbys)')"
session s1
wait_for relay.log "standby_accept" 10 || fail "s1 was not accepted on the standby"
# The next standby is opened in the background after the first was used.
wait_for relay.log "standby_request" 10 2 || fail "no second standby"
session s2
wait_for relay.log "standby_accept" 10 2 || fail "s2 was not accepted on the standby"
check "two sessions, two standby accepts" test "$(count relay.log standby_accept)" -eq 2
check "one standby parked again after the sessions" wait_standbys 1

# ---------------------------------------------------------------- 3. listen replaced
# A second listener of bob's key wins (newest listen wins); the first one's standby goes with
# its listen, so the next accept rides on the new listener's standby.
standbys_before=$(count relay.log standby_request)
listener1=$listener_pid
listen l2
wait_for l2.err "listening on relay" 10 || fail "listener 2 not up"
wait_for relay.log "standby_request" 10 $((standbys_before + 1)) || fail "no standby for listener 2"
# Listener 1 reconnects after its replacement and takes the key back in turn; stop it so that
# listener 2 keeps the key.
kill -TERM "$listener1" 2>/dev/null
wait "$listener1" 2>/dev/null
check "a listen was replaced (newest listen wins)" grep -q 'replaced' relay.log
check "one standby for the key after the replacement, not two" wait_standbys 1
sleep 0.5
standbys_before=$(count relay.log standby_request)
wait_for l2.err "listening on relay" 10 2 || true  # it may have been replaced and come back
wait_for relay.log "standby_request" 10 "$standbys_before" || fail "listener 2 holds no standby"
session s3
wait_for relay.log "standby_accept" 10 3 || fail "s3 was not accepted on a standby"
kill -TERM "$listener_pid" 2>/dev/null
wait "$listener_pid" 2>/dev/null
check "the listener gone, its standby is closed with it: the gauge reads 0" wait_standbys 0

# ---------------------------------------------------------------- 2. the fallback
accepts_before=$(count relay.log standby_accept)
requests_before=$(count relay.log standby_request)
listen l3 --no-standby
wait_for l3.err "listening on relay" 10 || fail "listener 3 not up"
session s4
check "--no-standby: no standby was opened" test "$(count relay.log standby_request)" -eq "$requests_before"
check "--no-standby: accepted on a new connection" test "$(count relay.log standby_accept)" -eq "$accepts_before"
check "--no-standby: no standby parked" test "$(standbys)" = 0

echo "standby_test: $passed checks passed"
