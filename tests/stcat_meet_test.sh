#!/usr/bin/env bash
# stcat meet (issue 18; docs/node-library.md "stcat"): real stmgr, strelay and stcat processes
# on 127.0.0.1.
#
#   1. two processes on one topic meet and exchange 4 MiB each way end to end, byte-exact
#   2. across relays: one meets on r1 and r2, the other on r2 only: they meet on r2
#   3. another topic meets nobody: --wait runs out with exit 9
#   4. --all with three processes lists the other two, each once
#   5. the relays' logs (at debug) never hold the topic's name
#   6. a topic's members at max and max + 1 (--max-members-per-topic 2): the third is refused,
#      says so on stderr, and the refusal is counted (the other topic limits through the
#      binary: strelay_topics_test.cpp and adversarial_topics_test.cpp)
#   and usage errors (exit 2) first.
#
# Needs STRELAY_BIN_DIR (CTest sets it). Every process runs under `timeout`; every wait has a
# deadline.
set -uo pipefail

tests_dir=$(cd "${STRELAY_TESTS_DIR:-$(dirname "$0")}" && pwd)
source "$tests_dir/lib/checks.sh"

fast=(--backoff-initial 0.2 --backoff-cap 2 --connect-timeout 5)
topic="room $(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"

# start_relay NAME FLAGS...: strelay with NAME.ident, its log NAME.log, its ticket NAME.relay.
start_relay() {
  local name=$1
  shift
  "$stmgr" gen-ident --output "$name.ident" >/dev/null || fail "gen-ident"
  "$strelay" --idfile "$name.ident" --laddr 127.0.0.1:0 --log-level debug \
    --handshake-rate 1000 --handshake-burst 1000 --metrics-addr 127.0.0.1:0 "$@" \
    >/dev/null 2>"$name.log" &
  relay_pid[$name]=$!
  wait_for "$name.log" "listening on 127.0.0.1:" 10 || fail "relay $name did not start"
  relay_port[$name]=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$name.log" | head -n 1 | sed 's/.*://')
  "$stmgr" relay-ticket --address "127.0.0.1:${relay_port[$name]}" --idfile "$name.ident" \
    --output "$name.relay" || fail "relay-ticket"
}
# meet NAME ARGS...: stcat meet -v in the background, stdin from NAME.in (stdout NAME.out,
# stderr NAME.err); its pid in meet_pid[NAME].
declare -A meet_pid
meet() {
  local name=$1
  shift
  timeout 120 "$stcat" meet -v "${fast[@]}" --idfile "$name.ident" "$@" <"$name.in" \
    >"$name.out" 2>"$name.err" &
  meet_pid[$name]=$!
  background+=("$!")
}
# finish NAME: waits (60 s at most) for NAME's stcat; its exit code in $rc.
finish() { await_exit "${meet_pid[$1]}" 60; }
status_field() {  # RELAY FIELD: a /status field (gauges or counters.limit_hits_total)
  local url
  url=$(sed -n 's/.* metrics \(http:[^ ]*\).*/\1/p' "$1.log" | head -n 1)
  python3 - "$url" "$2" <<'EOF'
import json, sys, urllib.request
s = json.load(urllib.request.urlopen(sys.argv[1] + "status", timeout=5))
name = sys.argv[2]
print(s["gauges"].get(name, s["counters"]["limit_hits_total"].get(name)))
EOF
}

for node in alice bob carol; do
  "$stmgr" gen-ident --output "$node.ident" >/dev/null || fail "gen-ident $node"
  : >"$node.in"
done
start_relay r1
start_relay r2

# ---------------------------------------------------------------- 0. usage errors
for bad in "" "$(printf 'x%.0s' {1..257})"; do
  timeout 10 "$stcat" meet --idfile alice.ident --relay r1.relay --topic "$bad" </dev/null \
    >/dev/null 2>usage.err
  rc=$?
  check "usage: a topic of ${#bad} bytes exits 2 (got $rc)" test "$rc" -eq 2
  check "usage: it says why" grep -q "1 to 256 bytes" usage.err
done
timeout 10 "$stcat" meet --idfile alice.ident --topic "$topic" </dev/null >/dev/null 2>usage.err
rc=$?
check "usage: meet without --relay exits 2 (got $rc)" test "$rc" -eq 2

# ---------------------------------------------------------------- 1. two meet, bytes both ways
head -c $((4 << 20)) /dev/urandom >alice.in
head -c $((4 << 20)) /dev/urandom >bob.in
meet alice --relay r1.relay --topic "$topic" --wait 30
meet bob --relay r1.relay --topic "$topic" --wait 30
finish alice
alice_rc=$rc
finish bob
check "1: alice exits 0 (got $alice_rc)" test "$alice_rc" -eq 0
check "1: bob exits 0 (got $rc)" test "$rc" -eq 0
check "1: alice got bob's 4 MiB byte-exact" cmp -s bob.in alice.out
check "1: bob got alice's 4 MiB byte-exact" cmp -s alice.in bob.out
check "1: alice says whom she met" grep -q "met $("$stmgr" pubkey --idfile bob.ident)" alice.err

# ---------------------------------------------------------------- 2. across relays
echo "from alice" >alice.in
echo "from bob" >bob.in
meet alice --relay r1.relay --relay r2.relay --topic "$topic" --wait 30
meet bob --relay r2.relay --topic "$topic" --wait 30
finish alice
alice_rc=$rc
finish bob
check "2: both exit 0 (got $alice_rc, $rc)" test "$alice_rc" -eq 0 -a "$rc" -eq 0
check "2: alice got bob's line" test "$(cat alice.out)" = "from bob"
check "2: bob got alice's line" test "$(cat bob.out)" = "from alice"
check "2: they met on r2" grep -q "via 127.0.0.1:${relay_port[r2]}" alice.err

# ---------------------------------------------------------------- 3. nobody on another topic
: >alice.in
meet alice --relay r1.relay --topic "$topic" --wait 1
meet bob --relay r1.relay --topic "another $topic" --wait 1
finish alice
alice_rc=$rc
finish bob
check "3: alone on a topic: --wait runs out with 9 (got $alice_rc, $rc)" \
  test "$alice_rc" -eq 9 -a "$rc" -eq 9
check "3: and says so" grep -q "nobody met" alice.err

# ---------------------------------------------------------------- 4. --all lists the others
for node in alice bob carol; do meet "$node" --relay r1.relay --topic "$topic" --all --wait 4; done
for node in alice bob carol; do
  finish "$node"
  check "4: $node --all exits 0 (got $rc)" test "$rc" -eq 0
  check "4: $node lists two peers" test "$(wc -l <"$node.out")" -eq 2
  for peer in alice bob carol; do
    [[ $peer == "$node" ]] && continue
    check "4: $node lists $peer once" test "$(grep -c "^$("$stmgr" pubkey --idfile "$peer.ident") 127.0.0.1:${relay_port[r1]}$" "$node.out")" -eq 1
  done
done

# ---------------------------------------------------------------- 5. no topic name in the logs
check "5: r1's debug log never holds the topic's name" bash -c "! grep -q 'room' r1.log"
check "5: r2's debug log never holds the topic's name" bash -c "! grep -q 'room' r2.log"
check "5: r1's log does show joins happened (the relay was at debug)" grep -q "listen" r1.log

# ---------------------------------------------------------------- 6. limits at max and max + 1
start_relay r3 --max-members-per-topic 2
for node in alice bob carol; do meet "$node" --relay r3.relay --topic "$topic" --all --wait 3; done
for node in alice bob carol; do finish "$node"; done
refused=$(grep -l "refused the topic: the relay is overloaded" alice.err bob.err carol.err | wc -l)
check "6: two members fit (max), the third is refused and told so (max + 1): $refused refused" \
  test "$refused" -eq 1
check "6: the refusal is counted" test "$(status_field r3 members_per_topic)" -eq 1
echo "stcat_meet_test: $passed checks passed"
