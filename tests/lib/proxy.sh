# Shared by the reverse-proxy recipe tests (nginx_test.sh, caddy_test.sh, haproxy_test.sh),
# which source it after setting strelay (the binary) and here (their own directory).
#
# On sourcing: a fresh $tmp (removed on exit, with every process in $pids terminated), a
# failure counter for check(), and $tmp/relay.ident.

tmp=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
failures=0

check() {  # check "what" command...: one line, ok or FAIL; failures are counted
  local what=$1
  shift
  if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; failures=$((failures + 1)); fi
}

finish() {  # finish NAME: the verdict line and the exit status
  if ((failures)); then
    echo "$1: $failures failed"
    exit 1
  fi
  echo "$1: all passed"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

python3 -c "
import os, base64, json
print(json.dumps({'privateKey': base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip('=')}))" \
  >"$tmp/relay.ident"
chmod 600 "$tmp/relay.ident"

# start_relay NAME FLAGS...: a relay on 127.0.0.1 logging to $tmp/NAME.log; sets relay_pid,
# relay_port and metrics_port.
start_relay() {
  local name=$1
  shift
  timeout 120 "$strelay" --idfile "$tmp/relay.ident" --laddr 127.0.0.1:0 --metrics-addr 127.0.0.1:0 "$@" \
    2>"$tmp/$name.log" &
  pids+=($!)
  relay_pid=$!
  for _ in $(seq 1 100); do
    grep -q "listening on" "$tmp/$name.log" 2>/dev/null && break
    sleep 0.1
  done
  relay_port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/$name.log" | head -1)
  metrics_port=$(sed -n 's|.*metrics http://127\.0\.0\.1:\([0-9]*\)/.*|\1|p' "$tmp/$name.log" | head -1)
  [[ -n $relay_port && -n $metrics_port ]] || { echo "FAIL: strelay did not start"; cat "$tmp/$name.log"; exit 1; }
}

# start_front NAME RELAY_PORT: the TLS front NAME (tests/NAME/start.sh) for that relay, its
# output in $tmp/NAME.out; sets front_pid and https_port (15 s at most).
start_front() {
  "$here/$1/start.sh" "$2" >"$tmp/$1.out" 2>&1 &
  pids+=($!)
  front_pid=$!
  for _ in $(seq 1 150); do
    grep -q https_port "$tmp/$1.out" && break
    sleep 0.1
  done
  https_port=$(sed -n 's/.*https_port=\([0-9]*\).*/\1/p' "$tmp/$1.out")
  [[ -n $https_port ]] || { echo "FAIL: $1 did not start"; cat "$tmp/$1.out"; exit 1; }
}

# upgrade: a WebSocket upgrade through the front at https_port from 127.0.0.2, over HTTP/1.1 (as
# the ws package and most browsers make it); prints the status line.
upgrade() {
  curl -sk --http1.1 --interface 127.0.0.2 --max-time 3 -i -o - \
    -H "Connection: Upgrade" -H "Upgrade: websocket" -H "Sec-WebSocket-Version: 13" \
    -H "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==" "https://localhost:$https_port/strelay" 2>/dev/null |
    head -1 | tr -d '\r'
}

counter() {  # counter 'name{label="x"}': the relay's metric at metrics_port
  curl -s "http://127.0.0.1:$metrics_port/metrics" | grep -F "strelay_$1 " | awk '{print $2}'
}

# What every HTTP front's recipe promises, through the front at https_port, for a relay started
# as "trusted" (--trusted-proxy 127.0.0.1) or as "untrusted" (no --trusted-proxy).
trusted_front_checks() {  # trusted_front_checks FRONT
  local status plain
  status=$(upgrade)
  check "upgrade through a trusted $1 answers 101 ($status)" test "$status" = "HTTP/1.1 101 Switching Protocols"
  sleep 0.3
  check "the relay logs the forwarded client 127.0.0.2" \
    grep -q "carrier=websocket source=127.0.0.2 via_proxy=true" "$tmp/trusted.log"
  check "the relay counts a WebSocket session" test "$(counter 'carrier_sessions_total{carrier="websocket"}')" = 1
  plain=$(curl -sk --max-time 3 "https://localhost:$https_port/")
  check "a plain GET through $1 gets the relay's answer" grep -q "strelay relay" <<<"$plain"
}
untrusted_front_checks() {  # untrusted_front_checks FRONT
  local status
  status=$(upgrade)
  check "upgrade through an untrusted $1 is refused ($status)" test "$status" = "HTTP/1.1 403 Forbidden"
  check "the refusal is counted" test "$(counter 'carrier_refusals_total{reason="untrusted_forwarded"}')" = 1
  check "nothing is logged as from the forwarded address" bash -c "! grep -q 'source=127.0.0.2' '$tmp/untrusted.log'"
  check "no WebSocket session was made" test "$(counter 'carrier_sessions_total{carrier="websocket"}')" = 0
}
