#!/usr/bin/env bash
# Process-level tests of what relay operators expect (issue 20, items 1, 3 and 4): real stmgr,
# strelay and stcat processes on 127.0.0.1.
#
#   1. not a relay: a ticket pointing at an HTTP or an SSH server makes `stcat connect` say so
#      and exit 4 (unreachable), not 6 (tampering); `stcat listen` tries such an address, and a
#      relay that refuses its key (not_allowed), once, then waits long, instead of every backoff
#   2. drain: SIGTERM with a transfer in flight; listeners hear "relay shutting down" at once,
#      new connections are refused, the transfer completes intact, and strelay exits 0 after it
#   3. drain deadline: a tunnel that does not end is cut at --drain-timeout; a second SIGTERM
#      cuts the drain at once
#   4. socket activation: strelay serves on the socket a fake systemd passes (LISTEN_FDS), and
#      a connection made while it restarts waits in the socket's queue and is served by the
#      next process; a passed descriptor that is not a listening socket is a one-line error
#   5. admission hook: a hook server started here admits bob and alice, refuses carol; answers
#      are cached; a dead hook refuses (fail-closed, Refused{overloaded}) or admits (fail-open);
#      a slow hook times out; every decision is counted in /metrics
#
# Needs STRELAY_BIN_DIR (CTest sets it). Every process runs under `timeout` or is killed at exit.
set -uo pipefail

tests_dir=$(cd "${STRELAY_TESTS_DIR:-$(dirname "$0")}" && pwd)
fast=(--backoff-initial 0.2 --backoff-cap 1 --connect-timeout 5)

source "$tests_dir/lib/checks.sh"  # scratch directory, cleanup, check, fail, wait_for, count

wait_file() {  # FILE SECONDS: until FILE exists
  local deadline=$(($(now_ms) + $2 * 1000))
  until [[ -s $1 ]]; do
    (($(now_ms) > deadline)) && return 1
    sleep 0.05
  done
}
# start_relay NAME ARGS...: strelay on 127.0.0.1:0 with NAME.ident, its log in NAME.log, its
# ticket in NAME.relay, its metrics URL in metrics_url[NAME].
declare -A metrics_url
start_relay() {
  local name=$1
  shift
  [[ -f $name.ident ]] || "$stmgr" gen-ident --output "$name.ident" >/dev/null || fail "gen-ident"
  "$strelay" --idfile "$name.ident" --laddr 127.0.0.1:0 --metrics-addr 127.0.0.1:0 \
    --log-level debug --handshake-rate 1000 --handshake-burst 1000 "$@" >/dev/null 2>"$name.log" &
  relay_pid[$name]=$!
  wait_for "$name.log" "listening on 127.0.0.1:" 10 || fail "relay $name did not start"
  relay_port[$name]=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$name.log" | head -n 1 | sed 's/.*://')
  metrics_url[$name]=$(sed -n 's/.* metrics \(http:[^ ]*\).*/\1/p' "$name.log" | head -n 1)
  "$stmgr" relay-ticket --address "127.0.0.1:${relay_port[$name]}" --idfile "$name.ident" \
    --output "$name.relay" || fail "relay-ticket"
}
# metric NAME SERIES: the value of one /metrics line (0 when absent).
metric() {
  local v
  v=$(python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1] + "metrics", timeout=5).read().decode())' \
    "${metrics_url[$1]}" | grep -F "strelay_$2 " | awk '{print $2}')
  echo "${v:-0}"
}
# exit_within PID SECONDS: waits for PID to end; its exit code in $rc (999: still running).
exit_within() {
  local deadline=$(($(now_ms) + $2 * 1000))
  while kill -0 "$1" 2>/dev/null && (($(now_ms) < deadline)); do sleep 0.05; done
  if kill -0 "$1" 2>/dev/null; then
    rc=999
    return
  fi
  wait "$1"
  rc=$?
}
listen() {  # NAME ARGS...: stcat listen -v in the background
  local name=$1
  shift
  timeout 120 "$stcat" listen -v "${fast[@]}" "$@" <&0 >"$name.out" 2>"$name.err" &
  listener_pid=$!
  background+=("$listener_pid")
}
connect() {  # NAME ARGS...: stcat connect -v; exit code in $rc
  local name=$1
  shift
  timeout 60 "$stcat" connect -v "${fast[@]}" "$@" >"$name.out" 2>"$name.err"
  rc=$?
}

for node in alice bob carol dave; do
  "$stmgr" gen-ident --output "$node.ident" >/dev/null || fail "gen-ident $node"
done
alice_key=$("$stmgr" pubkey --idfile alice.ident)
bob_key=$("$stmgr" pubkey --idfile bob.ident)
carol_key=$("$stmgr" pubkey --idfile carol.ident)
dave_key=$("$stmgr" pubkey --idfile dave.ident)

# ---------------------------------------------------------------- 1. not a relay
# Each fake answers as its protocol does: HTTP after the client's first bytes, SSH at once.
# Every accepted connection is one line in NAME.conns.
fake_server() {  # NAME KIND
  python3 - "$1" "$2" <<'EOF' &
import socket, sys, threading
name, kind = sys.argv[1], sys.argv[2]
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(16)
open(name + ".port", "w").write(str(s.getsockname()[1]))
def serve(c):
    with c:
        if kind == "ssh":
            c.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
        c.recv(4096)
        if kind == "http":
            c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
while True:
    c, _ = s.accept()
    open(name + ".conns", "a").write("connection\n")
    threading.Thread(target=serve, args=(c,), daemon=True).start()
EOF
  background+=($!)
  wait_file "$1.port" 10 || fail "fake $2 server did not start"
  "$stmgr" gen-ident --output "$1.ident" >/dev/null
  "$stmgr" relay-ticket --address "127.0.0.1:$(cat "$1.port")" --idfile "$1.ident" \
    --output "$1.relay" || fail "relay-ticket"
}
fake_server web http
fake_server shell ssh
for kind in web:HTTP shell:SSH; do
  name=${kind%%:*} label=${kind##*:}
  connect "not_relay_$name" --idfile alice.ident --relay "$name.relay" --to "$bob_key"
  check "not a relay ($label): stcat connect exits 4, unreachable (got $rc)" test "$rc" -eq 4
  check "not a relay ($label): the message names the address and what answered" \
    grep -q "not a strelay relay at 127.0.0.1:$(cat "$name.port") (it answered like $label)" \
    "not_relay_$name.err"
  check "not a relay ($label): nothing says tampering or integrity" \
    bash -c "! grep -qiE 'tamper|integrity' not_relay_$name.err"
done

# A listener tries each permanent refusal once, then waits (10 min), however short its backoff.
web_before=$(count web.conns connection)
timeout 60 "$stcat" listen "${fast[@]}" --idfile bob.ident --relay web.relay --allow "$alice_key" </dev/null \
  >/dev/null 2>listen_web.err &
web_listener=$!
background+=("$web_listener")
echo "$alice_key" >closed.allow
start_relay closed --allow closed.allow
listen listen_closed --idfile bob.ident --relay closed.relay --allow "$alice_key" </dev/null
closed_listener=$listener_pid
sleep 4  # 20 backoffs of 0.2 s
web_tries=$(($(count web.conns connection) - web_before))
check "not a relay: the listener tried the HTTP server once in 4 s (got $web_tries)" \
  test "$web_tries" -eq 1
check "not a relay: its warning names the address and the long wait" \
  grep -q "warning: not a strelay relay at 127.0.0.1:$(cat web.port) (it answered like HTTP); retrying in 600 s" listen_web.err
check "not allowed: the listener asked once in 4 s (got $(metric closed 'handshakes_total{outcome="ok"}'))" \
  test "$(metric closed 'handshakes_total{outcome="ok"}')" -eq 1
check "not allowed: the listener says why" grep -q "not allowed" listen_closed.err
kill "$web_listener" "$closed_listener" 2>/dev/null
kill -TERM "${relay_pid[closed]}"
exit_within "${relay_pid[closed]}" 10
check "not allowed: that relay drains and exits 0 (got $rc)" test "$rc" -eq 0

# ---------------------------------------------------------------- 2. drain with a transfer
start_relay r1
"$stmgr" friend-ticket --idfile bob.ident --relay r1.relay --output bob.friend || fail "friend-ticket"
# alice's upload: 2 MiB, 3 s of silence, 2 MiB more, so SIGTERM lands mid-transfer.
head -c 2M /dev/urandom >part1.bin
head -c 2M /dev/urandom >part2.bin
cat part1.bin part2.bin >whole.bin
listen receiver --idfile bob.ident --relay r1.relay --allow "$alice_key" </dev/null
receiver_pid=$listener_pid
listen idle --idfile carol.ident --relay r1.relay --allow "$alice_key" </dev/null
idle_pid=$listener_pid
wait_for receiver.err "listening on relay" 10 || fail "drain: receiver not up"
wait_for idle.err "listening on relay" 10 || fail "drain: idle listener not up"
{ cat part1.bin; sleep 3; cat part2.bin; } |
  timeout 60 "$stcat" connect -v "${fast[@]}" --idfile alice.ident --to bob.friend >/dev/null \
    2>sender.err &
sender_pid=$!
background+=("$sender_pid")
wait_for sender.err "connected to" 10 || fail "drain: the sender did not connect"
sleep 0.5
kill -TERM "${relay_pid[r1]}"
signalled=$(now_ms)
check "drain: the idle listener hears 'relay shutting down' at once" \
  wait_for idle.err "relay shutting down" 3
port1=${relay_port[r1]}
sleep 0.3
check "drain: a new connection is refused while draining" \
  bash -c "! timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/$port1' 2>/dev/null"
check "drain: strelay is still running while the transfer goes on" kill -0 "${relay_pid[r1]}"
exit_within "$sender_pid" 30
check "drain: the sender exits 0 (got $rc)" test "$rc" -eq 0
exit_within "$receiver_pid" 30
check "drain: the receiver exits 0 (got $rc)" test "$rc" -eq 0
check "drain: all 4 MiB arrived intact" test "$(sha256sum <whole.bin)" == "$(sha256sum <receiver.out)"
exit_within "${relay_pid[r1]}" 10
took=$(($(now_ms) - signalled))
check "drain: strelay exits 0 once the tunnel ended (got $rc)" test "$rc" -eq 0
check "drain: well before the 30 s drain deadline ($took ms)" test "$took" -lt 20000
check "drain: the log says it drained with nothing cut" grep -q "drained.*tunnels_cut=0" r1.log
echo "operations_test: drained $took ms after SIGTERM, transfer complete"
kill "$idle_pid" 2>/dev/null

# ---------------------------------------------------------------- 3. drain deadline, second signal
# hold: a tunnel whose sender never ends (stdin is a fifo held open).
hold_tunnel() {  # RELAY NAME
  "$stmgr" friend-ticket --idfile bob.ident --relay "$1.relay" --output "$1.bob.friend" || fail "friend-ticket"
  listen "$2_listener" --idfile bob.ident --relay "$1.relay" --allow "$alice_key" </dev/null
  hold_listener=$listener_pid
  wait_for "$2_listener.err" "listening on relay" 10 || fail "$2: listener not up"
  mkfifo "$2.fifo"
  sleep 60 >"$2.fifo" &
  background+=($!)
  timeout 60 "$stcat" connect -v "${fast[@]}" --idfile alice.ident --to "$1.bob.friend" \
    <"$2.fifo" >/dev/null 2>"$2_sender.err" &
  hold_sender=$!
  background+=("$hold_sender")
  wait_for "$2_sender.err" "connected to" 10 || fail "$2: the sender did not connect"
}
start_relay r2 --drain-timeout 1.5
hold_tunnel r2 deadline
kill -TERM "${relay_pid[r2]}"
signalled=$(now_ms)
exit_within "${relay_pid[r2]}" 10
took=$(($(now_ms) - signalled))
check "drain deadline: strelay exits 0 (got $rc)" test "$rc" -eq 0
check "drain deadline: after --drain-timeout 1.5 s, not before ($took ms)" \
  test "$took" -ge 1400 -a "$took" -lt 6000
check "drain deadline: the log counts the tunnel cut" grep -q "drained.*tunnels_cut=1" r2.log
exit_within "$hold_listener" 10
check "drain deadline: the receiving end exits 7, connection lost (got $rc)" test "$rc" -eq 7
check "drain deadline: the sending end sees the abort" wait_for deadline_sender.err "aborted" 5
kill "$hold_sender" 2>/dev/null  # it waits on its silent stdin (a fifo) before exiting

start_relay r3
hold_tunnel r3 second
kill -TERM "${relay_pid[r3]}"
sleep 1
check "second SIGTERM: the first one leaves the tunnel running" kill -0 "${relay_pid[r3]}"
kill -TERM "${relay_pid[r3]}"
signalled=$(now_ms)
exit_within "${relay_pid[r3]}" 10
took=$(($(now_ms) - signalled))
check "second SIGTERM: strelay exits 0 (got $rc)" test "$rc" -eq 0
check "second SIGTERM: at once, not at the 30 s deadline ($took ms)" test "$took" -lt 5000
check "second SIGTERM: logged" grep -q "drain_cut" r3.log

# ---------------------------------------------------------------- 4. socket activation
"$stmgr" gen-ident --output act.ident >/dev/null
# --laddr 127.0.0.1:1 is never bound: the passed socket replaces it.
python3 "$tests_dir/lib/fake_systemd.py" act.port "$strelay" --idfile act.ident \
  --laddr 127.0.0.1:1 --log-level debug --handshake-rate 1000 --handshake-burst 1000 \
  >systemd.out 2>act.log &
systemd_pid=$!
background+=("$systemd_pid")
wait_file act.port 10 || fail "fake systemd did not start"
act_port=$(cat act.port)
wait_for act.log "listening on 127.0.0.1:$act_port " 10 || fail "activation: strelay not serving"
check "activation: strelay logs the socket it was given" grep -q "socket_activated" act.log
"$stmgr" relay-ticket --address "127.0.0.1:$act_port" --idfile act.ident --output act.relay ||
  fail "relay-ticket"
"$stmgr" friend-ticket --idfile bob.ident --relay act.relay --output act.bob.friend || fail "friend-ticket"
listen act_listener --idfile bob.ident --relay act.relay --allow "$alice_key" --keep-listening </dev/null
act_listener_pid=$listener_pid
wait_for act_listener.err "listening on relay" 10 || fail "activation: listener not up"
connect act1 --idfile alice.ident --to act.bob.friend <<<"through the passed socket"
check "activation: a connect through the passed socket (got $rc)" test "$rc" -eq 0
check "activation: the bytes arrived" wait_for act_listener.out "through the passed socket" 5
# Restart: while no strelay runs (1 s), a connect waits in the socket's queue. dave is nobody's
# friend and not listening: the next strelay answers "not found" (3), where a refused
# connection would have been "unreachable" (4).
kill -USR1 "$systemd_pid"
wait_for systemd.out "exit 0" 10 || fail "activation: the old strelay did not exit 0"
connect act2 --idfile alice.ident --relay act.relay --to "$dave_key"
check "activation: a connect during the restart is served by the next strelay (3, got $rc)" \
  test "$rc" -eq 3
check "activation: it was not refused" grep -q "not listening" act2.err
wait_for systemd.out "restarted" 10 || fail "activation: no restart"
wait_for act_listener.err "listening on relay" 10 2 || fail "activation: listener not back"
connect act3 --idfile alice.ident --to act.bob.friend <<<"after the restart"
check "activation: a connect after the restart (got $rc)" test "$rc" -eq 0
kill "$act_listener_pid" 2>/dev/null
kill -TERM "$systemd_pid"
exit_within "$systemd_pid" 10
# A descriptor that is not a listening TCP socket is a one-line error at start.
timeout 10 sh -c 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$@" 3</dev/null' sh "$strelay" \
  --idfile act.ident --laddr 127.0.0.1:0 >/dev/null 2>act_bad.err
rc=$?
check "activation: a passed file that is not a socket stops strelay (exit 1, got $rc)" test "$rc" -eq 1
check "activation: the error names the descriptor" \
  grep -q "socket activation: descriptor 3 .* is not a listening TCP socket" act_bad.err

# ---------------------------------------------------------------- 5. admission hook
printf '%s\n%s\n%s\n' "$bob_key" "$alice_key" "$dave_key" >hook.allow
python3 "$tests_dir/lib/admission_hook.py" hook.port hook.allow hook.requests hook.delay &
hook_pid=$!
background+=("$hook_pid")
wait_file hook.port 10 || fail "the hook server did not start"
hook_url=http://127.0.0.1:$(cat hook.port)/admit
start_relay h1 --admission-url "$hook_url" --admission-timeout 1 --admission-cache 60
"$stmgr" friend-ticket --idfile bob.ident --relay h1.relay --output h1.bob.friend || fail "friend-ticket"
listen hook_listener --idfile bob.ident --relay h1.relay --allow "$alice_key" --allow "$dave_key" \
  --allow "$carol_key" --keep-listening </dev/null
hook_listener_pid=$listener_pid
wait_for hook_listener.err "listening on relay" 10 || fail "hook: the admitted listener is not up"
check "hook: the listener was asked about" grep -q "\"action\": \"listen\", \"key\": \"$bob_key\", \"source\": \"127.0.0.1\"" hook.requests
connect hook1 --idfile alice.ident --to h1.bob.friend <<<"admitted by the hook"
check "hook: an admitted connect goes through (got $rc)" test "$rc" -eq 0
connect hook2 --idfile alice.ident --to h1.bob.friend <<<"admitted from the cache"
check "hook: a second connect goes through (got $rc)" test "$rc" -eq 0
check "hook: both arrived" wait_for hook_listener.out "admitted from the cache" 5
check "hook: the answer was cached (one request for alice, got $(count hook.requests "$alice_key"))" \
  test "$(count hook.requests "$alice_key")" -eq 1
connect hook3 --idfile carol.ident --to h1.bob.friend <<<"refused"
check "hook: a refused key exits 3 (got $rc)" test "$rc" -eq 3
check "hook: it is told not allowed" grep -q "not allowed" hook3.err
check "hook: counted allowed/denied/cached" test \
  "$(metric h1 'admission_hook_total{outcome="allowed"}')/$(metric h1 'admission_hook_total{outcome="denied"}')/$(metric h1 'admission_hook_total{outcome="cached_allowed"}')" == 2/1/1
# A slow hook: past --admission-timeout (1 s) it is a failure, refused (fail-closed).
echo 3 >hook.delay
started=$(now_ms)
connect hook4 --idfile dave.ident --to h1.bob.friend <<<"too slow"
took=$(($(now_ms) - started))
check "hook slow: refused, exit 3 (got $rc)" test "$rc" -eq 3
check "hook slow: the relay is overloaded, says the node" grep -q "overloaded" hook4.err
check "hook slow: answered at the timeout, not the hook's 3 s ($took ms)" test "$took" -lt 2900
rm -f hook.delay
# A dead hook: fail-closed refuses dave (allowed, but never asked successfully, so not cached).
kill "$hook_pid"
wait "$hook_pid" 2>/dev/null
connect hook5 --idfile dave.ident --to h1.bob.friend <<<"hook down"
check "hook down, fail-closed: refused, exit 3 (got $rc)" test "$rc" -eq 3
check "hook down, fail-closed: overloaded" grep -q "overloaded" hook5.err
check "hook down, fail-closed: counted (got $(metric h1 'admission_hook_total{outcome="failed_closed"}'))" \
  test "$(metric h1 'admission_hook_total{outcome="failed_closed"}')" -eq 2
connect hook6 --idfile alice.ident --to h1.bob.friend <<<"cached while the hook is down"
check "hook down: a cached answer still admits (got $rc)" test "$rc" -eq 0
# fail-open: the same dead hook admits.
start_relay h2 --admission-url "$hook_url" --admission-fail open
"$stmgr" friend-ticket --idfile bob.ident --relay h2.relay --output h2.bob.friend || fail "friend-ticket"
listen open_listener --idfile bob.ident --relay h2.relay --allow "$carol_key" </dev/null
wait_for open_listener.err "listening on relay" 10 || fail "hook down, fail-open: listener refused"
connect hook7 --idfile carol.ident --to h2.bob.friend <<<"fail open"
check "hook down, fail-open: carol is admitted (got $rc)" test "$rc" -eq 0
check "hook down, fail-open: counted (got $(metric h2 'admission_hook_total{outcome="failed_open"}'))" \
  test "$(metric h2 'admission_hook_total{outcome="failed_open"}')" -eq 2
kill "$hook_listener_pid" 2>/dev/null

echo "operations_test: all $passed checks passed"
