#!/usr/bin/env bash
# The two-relay failover demo: Bob is reachable through two strelay relays; when one stops,
# Alice reaches him through the other, and when it comes back, Bob is on it again.
#
#   examples/demo-failover.sh [--keep]
#
#   1. relays R1 and R2 start on 127.0.0.1; Bob's friend ticket names both, and Bob listens on
#      both (stcat listen --keep-listening --relay r1 --relay r2);
#   2. Alice connects: through R1 (a connect tries the friend's relays in order);
#   3. R1 stops (SIGTERM: it drains, Bob is told Close{shutdown});
#   4. Alice connects again: R1 is refused at once, she goes through R2;
#   5. R1 starts again with the same identity and port; Bob is back on it within his backoff
#      cap (2 s here; 30 s by default); R2 stops;
#   6. Alice connects again: through R1.
# Exit status 0 when all three conversations went through the expected relay. Each step has
# a time limit, so the demo ends; the temporary directory is removed unless --keep is given.
# Programs: $STRELAY_BIN_DIR, else build/bin in this repository, else PATH.
set -euo pipefail

keep=0
while (($#)); do
  case $1 in
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "demo-failover: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

here=$(cd "$(dirname "$0")" && pwd)
demo=demo-failover
# shellcheck source=demo-lib.sh
source "$here/demo-lib.sh"
find_programs

work=$(mktemp -d "${TMPDIR:-/tmp}/strelay-failover.XXXXXX")
declare -A relay_pid=()
bob_pid=
cleanup() {
  for pid in "${relay_pid[@]}" $bob_pid; do kill "$pid" 2>/dev/null || true; done
  for pid in "${relay_pid[@]}" $bob_pid; do wait "$pid" 2>/dev/null || true; done
  if ((keep)); then echo "demo-failover: files kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
cd "$work"
fail() { echo "demo-failover: FAILED: $*" >&2; exit 1; }


# start_relay NAME PORT: PORT 0 picks a free port; sets $port to the bound one.
start_relay() {
  local before
  before=$(grep -c "listening on" "$1/log" 2>/dev/null || true)
  "$strelay" --idfile "$1/relay.ident" --laddr "127.0.0.1:$2" >/dev/null 2>>"$1/log" &
  relay_pid[$1]=$!
  wait_for "$1/log" "listening on" 10 $((before + 1))
  port=$(grep "listening on" "$1/log" | tail -1 | sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p')
  echo "$1: $(grep "listening on" "$1/log" | tail -1)"
}

stop_relay() {
  kill -TERM "${relay_pid[$1]}"
  wait "${relay_pid[$1]}" || true
  unset "relay_pid[$1]"
  echo "$1 stopped"
}

# talk N: Alice sends one line; prints the relay that carried it; fails if Bob's answer is missing.
talk() {
  echo "hello bob, conversation $1" |
    timeout 30 "$stcat" connect --idfile alice/alice.ident --to bob/bob.friend -v 2>"alice/log.$1" >"alice/reply.$1" ||
    fail "conversation $1: stcat exited with $? ($(tr '\n' ' ' <"alice/log.$1"))"
  grep -q "BOB SAYS: HELLO BOB, CONVERSATION $1" "alice/reply.$1" || fail "conversation $1: no answer"
  sed -n 's/^stcat: connected to .* via \(.*\)$/\1/p' "alice/log.$1" | head -1
}

say "1. two relays, identities and tickets"
mkdir r1 r2 alice bob
for who in r1/relay alice/alice bob/bob r2/relay; do "$stmgr" gen-ident --output "$who.ident" >/dev/null; done
start_relay r1 0
port1=$port
start_relay r2 0
port2=$port
"$stmgr" relay-ticket --address "127.0.0.1:$port1" --idfile r1/relay.ident --output r1/relay.relay
"$stmgr" relay-ticket --address "127.0.0.1:$port2" --idfile r2/relay.ident --output r2/relay.relay
"$stmgr" friend-ticket --idfile bob/bob.ident --relay r1/relay.relay --relay r2/relay.relay --output bob/bob.friend
"$stmgr" friend-ticket --idfile alice/alice.ident --relay r1/relay.relay --output alice/alice.friend
echo "R1 on 127.0.0.1:$port1, R2 on 127.0.0.1:$port2; Bob's friend ticket names both"

say "Bob listens on both relays"
"$stcat" listen --idfile bob/bob.ident --relay r1/relay.relay --relay r2/relay.relay --allow alice/alice.friend \
  --keep-listening --backoff-initial 0.2 --backoff-cap 2 -v \
  --exec 'sed -u "s/.*/bob says: &/; y/abcdefghijklmnopqrstuvwxyz/ABCDEFGHIJKLMNOPQRSTUVWXYZ/"' 2>bob/log &
bob_pid=$!
wait_for bob/log "listening on relay" 10 2
cat bob/log

say "2. Alice connects"
via=$(talk 1)
echo "conversation 1 went through $via"
[[ $via == "127.0.0.1:$port1" ]] || fail "conversation 1 went through $via, not R1"

say "3. R1 stops"
stop_relay r1

say "4. Alice connects again"
via=$(talk 2)
echo "conversation 2 went through $via"
[[ $via == "127.0.0.1:$port2" ]] || fail "conversation 2 went through $via, not R2"

say "5. R1 comes back on the same port; R2 stops"
up_before=$(grep -c "listening on relay 127.0.0.1:$port1" bob/log || true)
start_relay r1 "$port1"
wait_for bob/log "listening on relay 127.0.0.1:$port1" 15 $((up_before + 1))
echo "Bob is listening on R1 again"
stop_relay r2

say "6. Alice connects a third time"
via=$(talk 3)
echo "conversation 3 went through $via"
[[ $via == "127.0.0.1:$port1" ]] || fail "conversation 3 went through $via, not R1"

echo
echo "demo-failover: OK, Bob stayed reachable while either relay was down"
