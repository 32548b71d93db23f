# shellcheck shell=bash
# Shared by the stcat-driven process tests (stcat_test.sh, operations_test.sh, standby_test.sh,
# early_e2e_test.sh, ...), which source it after setting tests_dir. It makes a scratch
# directory and cds into it; at exit it ends the pids in `background` (SIGTERM: stcat runs
# under `timeout`, which passes it on) and in `relay_pid` (SIGKILL), and removes the directory.
# It sets $bin_dir (from STRELAY_BIN_DIR, which CTest sets) and $stcat, $strelay and $stmgr.
#   check DESCRIPTION COMMAND...     counts a passed check in $passed, or fails
#   fail MESSAGE                     says so, shows the tail of every *.err and *.log, exits 1
#   wait_for FILE PATTERN SECONDS [COUNT]   until FILE has COUNT (default 1) matching lines
#   count FILE PATTERN               matching lines (0 when the file does not exist yet)
#   now_ms                           the wall clock in milliseconds
#   await_exit PID SECONDS           waits for a background PID (SIGTERM at the deadline);
#                                    its exit status in $rc
#   alice_bob_and_relay RELAY_FLAGS...   identities alice, bob and relay, the relay started on
#       127.0.0.1 with the flags (its log relay.log, its port in $port), its ticket r.relay and
#       both friend tickets (needs $stmgr and $strelay)
#   start_relay NAME [PORT]          strelay on 127.0.0.1 (NAME.ident, NAME.log, NAME.relay; its
#       pid in relay_pid[NAME], its port in relay_port[NAME]); tests may define their own

bin_dir=$(cd "${STRELAY_BIN_DIR:?STRELAY_BIN_DIR must name the directory of the built binaries}" && pwd)
stcat=$bin_dir/stcat
strelay=$bin_dir/strelay
stmgr=$bin_dir/stmgr

tmp=$(mktemp -d)
declare -A relay_pid relay_port
background=()
cleanup() {
  for pid in "${background[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${relay_pid[@]}"; do kill -KILL "$pid" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
cd "$tmp" || exit 1

passed=0
fail() {
  echo "FAILED: $*" >&2
  for f in *.err *.log; do
    [[ -s $f ]] && { echo "--- $f" >&2; tail -n 15 "$f" >&2; }
  done
  exit 1
}
check() {
  local what=$1
  shift
  if "$@"; then passed=$((passed + 1)); else fail "$what"; fi
}
now_ms() { date +%s%3N; }
await_exit() {  # PID SECONDS: waits for a background PID, SIGTERM at the deadline; status in $rc
  local deadline=$(($(now_ms) + $2 * 1000))
  while kill -0 "$1" 2>/dev/null && (($(now_ms) < deadline)); do sleep 0.02; done
  kill -TERM "$1" 2>/dev/null
  wait "$1"
  rc=$?
}
wait_for() {
  local deadline=$(($(now_ms) + $3 * 1000)) want=${4:-1}
  until (($(count "$1" "$2") >= want)); do
    (($(now_ms) > deadline)) && return 1
    sleep 0.02
  done
}
count() {
  local n
  n=$(grep -c -- "$2" "$1" 2>/dev/null)
  echo "${n:-0}"
}
alice_bob_and_relay() {
  local node
  for node in alice bob relay; do
    "$stmgr" gen-ident --output "$node.ident" >/dev/null || fail "gen-ident $node"
  done
  "$strelay" --idfile relay.ident --laddr 127.0.0.1:0 "$@" >/dev/null 2>relay.log &
  relay_pid[relay]=$!
  wait_for relay.log "listening on 127.0.0.1:" 10 || fail "relay did not start"
  port=$(grep -o 'listening on 127.0.0.1:[0-9]*' relay.log | head -n 1 | sed 's/.*://')
  "$stmgr" relay-ticket --address "127.0.0.1:$port" --idfile relay.ident --output r.relay ||
    fail "relay-ticket"
  for node in alice bob; do
    "$stmgr" friend-ticket --idfile "$node.ident" --relay r.relay --output "$node.friend" ||
      fail "friend-ticket $node"
  done
}
# start_relay NAME [PORT]: strelay with NAME.ident (made once), its log in NAME.log, its ticket
# in NAME.relay (made once, so a restart on the same port keeps the ticket valid).
start_relay() {
  local name=$1 port=${2:-0}
  [[ -f $name.ident ]] || "$stmgr" gen-ident --output "$name.ident" >/dev/null || fail "gen-ident"
  # Every node here dials from 127.0.0.1: lift the per-source handshake rate (20/s, burst 5).
  "$strelay" --idfile "$name.ident" --laddr "127.0.0.1:$port" --log-level debug \
    --handshake-rate 1000 --handshake-burst 1000 >/dev/null 2>"$name.log" &
  relay_pid[$name]=$!
  wait_for "$name.log" "listening on 127.0.0.1:" 10 || fail "relay $name did not start"
  relay_port[$name]=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$name.log" | head -n 1 | sed 's/.*://')
  [[ -f $name.relay ]] || "$stmgr" relay-ticket --address "127.0.0.1:${relay_port[$name]}" \
    --idfile "$name.ident" --output "$name.relay" || fail "relay-ticket"
}
