#!/usr/bin/env bash
# What an operator sees from strelay (issue 20, item 11), through the real binary:
#   - the ticket's QR code has ANSI colours only on a terminal: written to a file, or with
#     NO_COLOR=1 on a terminal, it is plain blocks with no escape codes;
#   - with --log-format json every stderr line is one JSON object, the start-up facts and the
#     reason it cannot start included.
# The terminal is a real pseudo-terminal (python3's pty module).
set -euo pipefail
bin=${STRELAY_BIN_DIR:?set by CTest}
work=$(mktemp -d /tmp/strelay-output.XXXXXX)
relay_pid=
cleanup() {
  [[ -n $relay_pid ]] && kill "$relay_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
source "${STRELAY_TESTS_DIR:?set by CTest}/lib/common.sh"  # fail, wait_for
"$bin/stmgr" gen-ident --output "$work/relay.ident" >/dev/null
relay=("$bin/strelay" --idfile "$work/relay.ident" --laddr 127.0.0.1:0
  --public-address relay.example.org:4567)
esc=$'\x1b'

stop_relay() {
  kill -TERM "$relay_pid"
  wait "$relay_pid" || fail "strelay did not exit 0 after SIGTERM"
  relay_pid=
}

# ---- 1. stdout to a file: the QR code is plain blocks
"${relay[@]}" >"$work/out" 2>"$work/err" &
relay_pid=$!
wait_for "$work/out" '█' 10
stop_relay
grep -q "$esc" "$work/out" && fail "the QR code written to a file has escape codes"
echo "ok: the QR code written to a file has no escape codes"

# ---- 2. on a terminal: colours, unless NO_COLOR is set
on_terminal() {  # NO_COLOR value ("" for unset): what strelay wrote to a terminal, in $work/tty.out
  env -u NO_COLOR ${1:+NO_COLOR=$1} TERM=xterm python3 "$STRELAY_TESTS_DIR/lib/on_terminal.py" \
    "$work/tty.out" 15 --until "$(printf '\xe2\x96\x88')" -- "${relay[@]}" ||
    fail "strelay on a terminal: $(head -c 300 "$work/tty.out")"
}
on_terminal ""
grep -q "${esc}\\[30;107m" "$work/tty.out" || fail "no ANSI colours on a terminal: $(head -c 300 "$work/tty.out")"
grep -q '█' "$work/tty.out" || fail "no QR code on the terminal"
echo "ok: on a terminal the QR code has ANSI colours"
on_terminal 1
grep -q '█' "$work/tty.out" || fail "no QR code on the terminal with NO_COLOR=1"
grep -q "${esc}\\[" "$work/tty.out" && fail "NO_COLOR=1 on a terminal still got escape codes"
echo "ok: NO_COLOR=1 on a terminal gives plain blocks"

# ---- 3. --log-format json: every stderr line is JSON, the start-up line too
"${relay[@]}" --metrics-addr 127.0.0.1:0 --log-format json >"$work/out" 2>"$work/err" &
relay_pid=$!
wait_for "$work/err" '"event":"listening"' 10
stop_relay
python3 - "$work/err" "$("$bin/stmgr" pubkey --idfile "$work/relay.ident")" <<'EOF' || fail "stderr is not all JSON: $(cat "$work/err")"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) >= 2, lines  # the start-up line and the drain's lines
records = [json.loads(line) for line in lines]  # raises on a plain-text line
first = records[0]
assert first["event"] == "listening", first
assert first["public_key"] == sys.argv[2], first
assert first["listen"].startswith("127.0.0.1:"), first
assert first["metrics"].startswith("http://127.0.0.1:"), first
assert json.loads(first["ticket"])["address"] == "relay.example.org:4567", first
EOF
echo "ok: with --log-format json every stderr line is JSON, the start-up line first"

# ---- 4. --log-format json: the reason strelay cannot start is JSON too
"$bin/strelay" --idfile "$work/missing.ident" --laddr 127.0.0.1:0 --log-format json \
  >/dev/null 2>"$work/err" && fail "strelay started without its identity file"
python3 - "$work/err" <<'EOF' || fail "the start-up error is not JSON: $(cat "$work/err")"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 1, lines
record = json.loads(lines[0])
assert record["event"] == "cannot_start" and record["level"] == "error", record
assert "missing.ident" in record["error"], record
EOF
echo "ok: with --log-format json the reason strelay cannot start is a JSON line"
