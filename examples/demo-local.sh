#!/usr/bin/env bash
# The local three-process demo: one strelay relay and two stcat nodes on 127.0.0.1.
#
#   examples/demo-local.sh [--lines N] [--keep]
#
# Bob listens on the relay and answers each line (an upper-casing echo, run with --exec);
# Alice connects to Bob by his friend ticket and sends N lines (default 5), one per second.
# Every byte between them is encrypted end to end; the relay only pairs them and forwards.
# At the end the demo prints what the relay saw (its /status counters) and exits 0 when every
# line came back, non-zero otherwise. Everything lives in a temporary directory, which is
# removed at the end unless --keep is given. Each step has a time limit, so the demo ends.
#
# The programs are taken from $STRELAY_BIN_DIR, else from build/bin next to this script's
# repository, else from PATH.
set -euo pipefail

lines=5
keep=0
while (($#)); do
  case $1 in
    --lines) lines=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "demo-local: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

here=$(cd "$(dirname "$0")" && pwd)
demo=demo-local
# shellcheck source=demo-lib.sh
source "$here/demo-lib.sh"
find_programs

work=$(mktemp -d "${TMPDIR:-/tmp}/strelay-demo.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if ((keep)); then echo "demo-local: files kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
cd "$work"


say "1. identities for the relay, Alice and Bob (stmgr gen-ident)"
mkdir relay alice bob
"$stmgr" gen-ident --output relay/relay.ident
"$stmgr" gen-ident --output alice/alice.ident
"$stmgr" gen-ident --output bob/bob.ident

say "2. the relay (strelay), on a free port of 127.0.0.1, status page on another"
"$strelay" --idfile relay/relay.ident --laddr 127.0.0.1:0 --metrics-addr 127.0.0.1:0 2>relay/log &
pids+=($!)
wait_for relay/log "listening on" 10
head -1 relay/log
port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' relay/log | head -1)
status_url=$(sed -n 's/.* metrics \(http:[^ ]*\).*/\1/p' relay/log | head -1)

say "3. the relay ticket and the friend tickets (stmgr relay-ticket, friend-ticket)"
"$stmgr" relay-ticket --address "127.0.0.1:$port" --idfile relay/relay.ident --output relay/relay.relay
"$stmgr" friend-ticket --idfile alice/alice.ident --relay relay/relay.relay --output alice/alice.friend
"$stmgr" friend-ticket --idfile bob/bob.ident --relay relay/relay.relay --output bob/bob.friend
cat relay/relay.relay

say "4. Bob listens, for Alice only, and answers each line in capitals"
"$stcat" listen --idfile bob/bob.ident --relay relay/relay.relay --allow alice/alice.friend -v \
  --exec 'sed -u "s/.*/bob says: &/; y/abcdefghijklmnopqrstuvwxyz/ABCDEFGHIJKLMNOPQRSTUVWXYZ/"' \
  2>bob/log &
pids+=($!)
wait_for bob/log "listening on relay" 10
cat bob/log

say "5. Alice connects to Bob's friend ticket and sends $lines lines"
for ((n = 1; n <= lines; n++)); do
  echo "alice sends: hello bob, line $n" >&2
  echo "hello bob, line $n"
  sleep 1
done | timeout $((lines + 20)) "$stcat" connect --idfile alice/alice.ident --to bob/bob.friend -v \
  2>alice/log | tee alice/received
status=${PIPESTATUS[1]}
cat alice/log

say "6. what the relay saw ($status_url)"
if command -v curl >/dev/null; then
  curl -s --max-time 5 "${status_url}status" | python3 -c '
import json, sys
s = json.load(sys.stdin)
print("connections now:", s["gauges"]["connections"], " tunnels now:", s["gauges"]["tunnels"])
print("bytes relayed:", sum(s["counters"]["relayed_bytes_total"].values()))
print("connect outcomes:", {k: v for k, v in s["counters"]["connect_outcomes_total"].items() if v})' || true
fi

received=$(grep -c "BOB SAYS: HELLO BOB, LINE" alice/received || true)
echo
if ((status == 0 && received == lines)); then
  echo "demo-local: OK, $received of $lines lines went through the relay and back"
else
  echo "demo-local: FAILED, stcat exit $status, $received of $lines lines came back" >&2
  exit 1
fi
