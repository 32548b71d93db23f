#!/usr/bin/env bash
# stcat -v's progress report (issue 20, item 12), through real strelay and stcat processes:
#   1. stderr to a file: a line per 5 s in which bytes moved, and none while the session is
#      idle (no identical "0 B/s" lines);
#   2. stderr on a terminal (a real pseudo-terminal, stdout on it too): one line redrawn in
#      place ("\r...\e[K", no newline) that is erased before the summary.
set -euo pipefail
bin=${STRELAY_BIN_DIR:?set by CTest}
work=$(mktemp -d /tmp/strelay-stcat-progress.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
source "${STRELAY_TESTS_DIR:?set by CTest}/lib/common.sh"  # fail, wait_for
cd "$work"
for node in relay alice bob; do "$bin/stmgr" gen-ident --output "$node.ident" >/dev/null; done
"$bin/strelay" --idfile relay.ident --laddr 127.0.0.1:0 --handshake-rate 1000 --handshake-burst 1000 \
  >/dev/null 2>relay.log &
pids+=($!)
wait_for relay.log "listening on 127.0.0.1:" 10
port=$(grep -o 'listening on 127.0.0.1:[0-9]*' relay.log | head -1 | sed 's/.*://')
"$bin/stmgr" relay-ticket --address "127.0.0.1:$port" --idfile relay.ident --output r.relay
"$bin/stmgr" friend-ticket --idfile bob.ident --relay r.relay --output bob.friend
"$bin/stmgr" friend-ticket --idfile alice.ident --relay r.relay --output alice.friend

listen() {  # name: stcat listen -v for alice, stdout name.out, stderr name.err
  timeout 120 "$bin/stcat" listen -v --idfile bob.ident --relay r.relay --allow alice.friend \
    </dev/null >"$1.out" 2>"$1.err" &
  pids+=($!)
  listener=$!
  wait_for "$1.err" "listening on relay" 10
}

# ---- 1. not a terminal: lines while bytes move, silence while idle
listen bob1
# 64 KiB, 12 s of silence (two whole report intervals), 64 KiB more, end.
{ head -c 65536 /dev/urandom; sleep 12; head -c 65536 /dev/urandom; } |
  timeout 120 "$bin/stcat" connect -v --idfile alice.ident --to bob.friend >alice1.out 2>alice1.err ||
  fail "stcat connect failed: $(cat alice1.err)"
wait "$listener" || fail "stcat listen failed: $(cat bob1.err)"
[[ $(stat -c %s bob1.out) == 131072 ]] || fail "the listener got $(stat -c %s bob1.out) bytes, not 131072"
for side in alice1 bob1; do
  grep -q "^stcat: done: sent" "$side.err" || fail "$side: no summary: $(cat "$side.err")"
  progress=$(grep -c "^stcat: sent" "$side.err" || true)
  ((progress >= 1)) || fail "$side: no progress line while bytes moved: $(cat "$side.err")"
  # ~14 s at a line per 5 s: at most 3 lines; one per second would be 14.
  ((progress <= 3)) || fail "$side: $progress progress lines in 14 s: $(cat "$side.err")"
  grep -E "^stcat: sent .*\(0 B/s\), received .*\(0 B/s\)" "$side.err" &&
    fail "$side: a progress line for an idle interval"
  grep -q $'\r\|\x1b' "$side.err" && fail "$side: terminal codes in a file"
done
echo "ok: to a file, -v reports while bytes move ($progress lines on the listener) and is quiet while idle"

# ---- 2. a terminal: one line redrawn in place
listen bob2
# stdin: 3 s of data at about 32 KiB per 0.25 s; stdout and stderr: the terminal.
python3 "$STRELAY_TESTS_DIR/lib/on_terminal.py" alice2.tty 60 -- bash -c \
  "for i in \$(seq 12); do head -c 32768 /dev/urandom; sleep 0.25; done |
   '$bin/stcat' connect -v --idfile alice.ident --to bob.friend >/dev/null" ||
  fail "stcat connect on a terminal failed: $(cat -v alice2.tty | tail -5)"
wait "$listener" || fail "stcat listen failed: $(cat bob2.err)"
python3 - <<'EOF' || fail "no progress line redrawn in place on the terminal: $(cat -v alice2.tty)"
import re
tty = open("alice2.tty", "rb").read().decode()
draws = re.findall(r"\rstcat: sent [^\r\n]*\x1b\[K", tty)
assert len(draws) >= 2, draws              # at least two seconds of it, each drawn over the last
assert "\x1b[K\n" not in tty, tty          # never ended by a newline: the line stays one line
assert re.search(r"\r\x1b\[Kstcat: done: sent", tty), tty  # erased before the summary
EOF
echo "ok: on a terminal, -v redraws one progress line in place and erases it before the summary"
