#!/usr/bin/env bash
# Plain background use, as in Offset's guide (`strelay ... &`):
#   - the start-up line goes to stderr; stdout carries only the ticket and its QR code (with
#     --public-address), so `strelay ... > ticket.txt &` works;
#   - started with nohup from an interactive shell on a terminal, strelay survives the terminal
#     closing (the hangup reaches it as SIGHUP, which strelay takes as "reload", never as "exit")
#     and keeps serving;
#   - started with setsid, detached from any terminal, it serves, reloads on SIGHUP and drains
#     on SIGTERM.
# The terminal is a real pseudo-terminal (python3's pty module) running bash -i.
set -euo pipefail
bin=${STRELAY_BIN_DIR:?set by CTest}
work=$(mktemp -d /tmp/strelay-background.XXXXXX)
relay_pid=
cleanup() {
  [[ -n $relay_pid ]] && kill "$relay_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
source "${STRELAY_TESTS_DIR:?set by CTest}/lib/common.sh"  # fail, wait_for
healthz() {  # url -> 0 when /healthz answers ok
  python3 - "$1" <<'EOF'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "healthz", timeout=5) as r:
    sys.exit(0 if r.read() == b"ok\n" else 1)
EOF
}
alive() { kill -0 "$1" 2>/dev/null; }
"$bin/stmgr" gen-ident --output "$work/relay.ident" >/dev/null

# ---- 1. stderr has the start-up line, stdout the ticket only
"$bin/strelay" --idfile "$work/relay.ident" --laddr 127.0.0.1:0 --public-address relay.example.org:4567 \
  >"$work/out" 2>"$work/err" &
relay_pid=$!
wait_for "$work/err" "listening on" 10
wait_for "$work/out" '"address"' 10
grep -q "listening on" "$work/out" && fail "the start-up line went to stdout"
head -1 "$work/err" | grep -q "^strelay .* listening on 127.0.0.1:[0-9]* public key " ||
  fail "the first stderr line is not the start-up line: $(head -1 "$work/err")"
grep -q '"address": *"relay.example.org:4567"' "$work/out" || fail "stdout lacks the ticket"
kill -TERM "$relay_pid"
wait "$relay_pid" || fail "strelay did not exit 0 after SIGTERM"
relay_pid=
echo "ok: start-up line on stderr, ticket on stdout"

# ---- 2. nohup from a terminal that then closes
mkdir "$work/tty"
python3 - "$bin/strelay" "$work/relay.ident" "$work/tty" <<'EOF'
import os, pty, select, sys, time
strelay, ident, cwd = sys.argv[1:4]
pid, fd = pty.fork()
if pid == 0:
    os.chdir(cwd)
    os.execvp("bash", ["bash", "--norc", "--noprofile", "-i"])
command = (f"nohup {strelay} --idfile {ident} --laddr 127.0.0.1:0 --metrics-addr 127.0.0.1:0 & "
           "echo $! > pid\n")
os.write(fd, command.encode())
deadline = time.monotonic() + 15
log = os.path.join(cwd, "nohup.out")
while time.monotonic() < deadline:
    try:
        # Keep the terminal drained, never blocking: the shell may have nothing more to say.
        if select.select([fd], [], [], 0.1)[0]:
            os.read(fd, 4096)
    except OSError:
        break
    if os.path.exists(log) and b"listening on" in open(log, "rb").read():
        break
    time.sleep(0.1)
else:
    sys.exit("strelay did not start under nohup")
os.close(fd)  # the terminal goes away: the kernel hangs up the session
for _ in range(100):  # the shell exits on the hangup
    done, _ = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    time.sleep(0.1)
else:
    os.kill(pid, 9)
    sys.exit("the shell did not exit when its terminal closed")
EOF
relay_pid=$(cat "$work/tty/pid")
url=$(sed -n 's/.* metrics \(http:[^ ]*\).*/\1/p' "$work/tty/nohup.out")
[[ -n $relay_pid && -n $url ]] || fail "no pid or metrics URL from the nohup run"
sleep 1
alive "$relay_pid" || fail "strelay died when its terminal closed: $(cat "$work/tty/nohup.out")"
healthz "$url" || fail "strelay stopped serving after its terminal closed"
# The shell passed the hangup on to its job: strelay took it as a reload, not as an exit.
wait_for "$work/tty/nohup.out" "event=reloaded" 10
kill -HUP "$relay_pid"
for ((i = 0; i < 100; i++)); do
  (($(grep -c "event=reloaded" "$work/tty/nohup.out") >= 2)) && break
  sleep 0.1
done
(($(grep -c "event=reloaded" "$work/tty/nohup.out") >= 2)) || fail "no reload after an explicit SIGHUP"
alive "$relay_pid" || fail "strelay died on SIGHUP"
healthz "$url" || fail "strelay stopped serving after SIGHUP"
kill -TERM "$relay_pid"
for ((i = 0; i < 100; i++)); do alive "$relay_pid" || break; sleep 0.1; done
alive "$relay_pid" && fail "strelay did not exit after SIGTERM"
relay_pid=
echo "ok: nohup'd strelay survived its terminal closing, reloaded on SIGHUP, serving throughout"

# ---- 3. setsid, no terminal at all
setsid "$bin/strelay" --idfile "$work/relay.ident" --laddr 127.0.0.1:0 --metrics-addr 127.0.0.1:0 \
  </dev/null >"$work/setsid.out" 2>"$work/setsid.log" &
relay_pid=$!
wait_for "$work/setsid.log" "listening on" 10
url=$(sed -n 's/.* metrics \(http:[^ ]*\).*/\1/p' "$work/setsid.log")
for round in 1 2 3; do
  kill -HUP "$relay_pid"
  sleep 0.3
  alive "$relay_pid" || fail "strelay under setsid died on SIGHUP number $round"
done
healthz "$url" || fail "strelay under setsid stopped serving after SIGHUP"
kill -TERM "$relay_pid"
wait "$relay_pid" || fail "strelay under setsid did not exit 0 after SIGTERM"
relay_pid=
echo "ok: setsid'd strelay reloads on SIGHUP and drains on SIGTERM"
