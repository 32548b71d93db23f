#!/usr/bin/env bash
# Process-level test of strelay's messages to an operator (issue 20, items 7, 9, 10, 15):
#   - every usage error (flag or config file) is one line on stderr and exits 2;
#   - an unknown flag is named (with a suggestion), before a missing required one;
#   - a config file's mistakes are FILE:LINE: with the option meant, and raw bytes escaped;
#   - Go-style durations are accepted; --allow takes a .friend file; other kinds are named;
#   - a SIGHUP that changes an option a reload cannot apply logs reload_needs_restart.
set -uo pipefail
bin=$(cd "${STRELAY_BIN_DIR:?set by CTest}" && pwd)
strelay=$bin/strelay
stmgr=$bin/stmgr
source "${STRELAY_TESTS_DIR:?set by CTest}/lib/common.sh" # fail, wait_for
work=$(mktemp -d /tmp/strelay-cli.XXXXXX)
relay_pid=
cleanup() {
  [[ -n $relay_pid ]] && kill "$relay_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work" || exit 1
"$stmgr" gen-ident -o relay.ident >/dev/null || fail "gen-ident"
"$stmgr" gen-ident -o alice.ident >/dev/null || fail "gen-ident"
"$stmgr" relay-ticket -i relay.ident -a 127.0.0.1:4567 -o relay.relay || fail "relay-ticket"
"$stmgr" friend-ticket -i alice.ident -r relay.relay -o alice.friend || fail "friend-ticket"
passed=0

# usage_error MESSAGE ARGS...: strelay ARGS exits 2 and prints exactly "strelay: MESSAGE".
usage_error() {
  local message=$1
  shift
  timeout 10 "$strelay" "$@" >out 2>err
  local rc=$?
  [[ $rc -eq 2 ]] || fail "strelay $*: exit $rc, expected 2 ($(cat err))"
  [[ $(cat err) == "strelay: $message" ]] || fail "strelay $*: said '$(cat err)', expected 'strelay: $message'"
  [[ ! -s out ]] || fail "strelay $*: printed on stdout"
  passed=$((passed + 1))
}

# ---- flags
usage_error "unknown option '--listen' (did you mean '--laddr'?) (see strelay --help)" --listen X
usage_error "unknown option '--metrics_addr' (did you mean '--metrics-addr'?) (see strelay --help)" \
  --idfile relay.ident --laddr 127.0.0.1:0 --metrics_addr 127.0.0.1:0
usage_error "--laddr is required (see strelay --help)" --idfile relay.ident
usage_error "--handshake-timeout: \"10x\" is not a duration: give seconds (30, 0.5) or 10m, 1h30m, 500ms (see strelay --help)" \
  --idfile relay.ident --laddr 127.0.0.1:0 --handshake-timeout 10x
usage_error "--keepalive-interval: must be shorter than --dead-peer-timeout (60 s >= 40 s) (see strelay --help)" \
  --idfile relay.ident --laddr 127.0.0.1:0 --keepalive-interval 1m --dead-peer-timeout 40s
usage_error "--metrics-addr: address \"http://127.0.0.1:9090\": give IP:port without the scheme \"http://\", e.g. 0.0.0.0:4567 (see strelay --help)" \
  --idfile relay.ident --laddr 127.0.0.1:0 --metrics-addr http://127.0.0.1:9090
"$strelay" --version >out 2>err || fail "--version exits 0"

# ---- the config file
conf() { printf 'idfile = "relay.ident"\n%b' "$1" >s.conf; }
conf 'listen = "0.0.0.0:22067"\n'
usage_error "s.conf:2: unknown option 'listen' (did you mean 'laddr'?)" --config s.conf
conf 'laddr = "127.0.0.1:0"\nmetrics_addr = "127.0.0.1:0"\n'
usage_error "s.conf:3: unknown option 'metrics_addr' (did you mean 'metrics-addr'?)" --config s.conf
conf 'laddr = [::1]:27597\n'
usage_error "s.conf:2: quote the address: laddr = \"[::1]:27597\"" --config s.conf
conf 'laddr = "127.0.0.1:1"\nladdr = "127.0.0.1:2"\n'
usage_error "s.conf:3: 'laddr' is set twice (first on line 2); give several values as a list: laddr = [\"a\", \"b\"]" --config s.conf
conf 'laddr = "127.0.0.1:0"\nhandshake-timeout = "soon"\n'
usage_error "s.conf:3: --handshake-timeout: \"soon\" is not a duration: give seconds (30, 0.5) or 10m, 1h30m, 500ms" --config s.conf
# Random bytes: escaped, never sent raw to the terminal.
head -c 64 /dev/urandom >bytes.conf
printf '\x1b]0;pwned\x07 = 1\n' >>bytes.conf
timeout 10 "$strelay" --config bytes.conf >out 2>err
rc=$?
[[ $rc -eq 2 ]] || fail "a binary config file: exit $rc, expected 2"
[[ $(wc -l <err) -eq 1 ]] && grep -q '^strelay: bytes.conf:[0-9]*: ' err || fail "a binary config file: $(cat -v err)"
LC_ALL=C grep -q '[^ -~]' err && fail "raw bytes on stderr: $(cat -v err)"
passed=$((passed + 1))

# ---- start, --allow with a .friend file, durations, SIGHUP that needs a restart
printf 'idfile = "relay.ident"\nladdr = "127.0.0.1:0"\nallow = "alice.friend"\nhalf-tunnel-ttl = "1m"\n' >run.conf
"$strelay" --config run.conf --drain-timeout 500ms 2>relay.log &
relay_pid=$!
wait_for relay.log "listening on" 10
passed=$((passed + 1))
printf 'idfile = "relay.ident"\nladdr = "127.0.0.1:1"\nallow = "alice.friend"\n' >run.conf
kill -HUP "$relay_pid"
wait_for relay.log "event=reload_needs_restart" 10
grep -q "options=laddr" <<<"$(grep "event=reload_needs_restart" relay.log)" ||
  fail "reload_needs_restart does not name laddr: $(grep reload_needs_restart relay.log)"
grep -q "event=reloaded" relay.log || fail "no reloaded line"
passed=$((passed + 1))
kill -TERM "$relay_pid"
wait "$relay_pid" || fail "strelay did not exit 0 on SIGTERM"
relay_pid=

# ---- --allow with the wrong kind of file: named, exit 1 (a file, not the command line)
for case in "alice.ident|alice.ident: is an identity file, not a friend ticket or an allowlist" \
  "relay.relay|relay.relay: is a relay ticket, not a friend ticket or an allowlist"; do
  timeout 10 "$strelay" --idfile relay.ident --laddr 127.0.0.1:0 --allow "${case%%|*}" >out 2>err
  rc=$?
  [[ $rc -eq 1 && $(cat err) == "strelay: ${case#*|}" ]] || fail "--allow ${case%%|*}: exit $rc, '$(cat err)'"
  passed=$((passed + 1))
done
timeout 10 "$strelay" --idfile relay.relay --laddr 127.0.0.1:0 >out 2>err
[[ $(cat err) == "strelay: relay.relay: is a relay ticket, not an identity file" ]] ||
  fail "--idfile relay.relay: '$(cat err)'"
passed=$((passed + 1))
timeout 10 "$strelay" --idfile "$(printf 'x\033[2Jy')" --laddr 127.0.0.1:0 >out 2>err
[[ $(cat err) == 'strelay: x\x1b[2Jy: No such file or directory' ]] || fail "a path with control bytes: '$(cat -v err)'"
passed=$((passed + 1))
echo "strelay_cli_test: $passed passed, 0 failed"
