#!/usr/bin/env bash
# Bandwidth limits through the real binaries (issue 20.2, docs/operations.md "Bandwidth limits"):
#
#   1. --tunnel-rate 1Mi: 3 MiB each way through stcat take at least the paced time, arrive
#      intact, and the relay counts waits on the tunnel's limit
#   2. SIGHUP to --global-rate 512Ki (tunnel rate off): the next transfer is paced by the
#      global limit, counted as such, and /status shows the new limits
#   3. SIGHUP to no limits: a transfer causes no wait at all
#   4. bad values are refused with a one-line reason
#
# Only lower bounds on time are asserted (a paced transfer cannot be faster than its limit,
# however loaded the machine); speed is measured by bench/bulk_bench (kind strelay_limited, --limit-rate).
# Needs STRELAY_BIN_DIR (CTest sets it).
set -uo pipefail


tests_dir=$(cd "${STRELAY_TESTS_DIR:-$(dirname "$0")}" && pwd)
# shellcheck source=lib/checks.sh
source "$tests_dir/lib/checks.sh"

# metric NAME LABELS: the value of strelay_NAME{LABELS} from /metrics (0 when absent).
metric() {
  local v
  v=$(curl -sf "http://$http/metrics" | grep -F "strelay_$1{$2}" | awk '{print $2}')
  echo "${v:-0}"
}

# The config file the relay reads at start and at each SIGHUP. $1: the limit lines.
write_config() {
  printf 'idfile = "relay.ident"\nladdr = "127.0.0.1:0"\nmetrics-addr = "127.0.0.1:0"\n%s\n' \
    "$1" >relay.conf
  # Every node here dials from 127.0.0.1: lift the per-source handshake rate.
  printf 'handshake-rate = 1000\nhandshake-burst = 1000\n' >>relay.conf
}

# transfer NAME MIB: MIB MiB each way between alice (connector) and bob (listener); the time in
# ms in $took. Fails unless both ends exit 0 with every byte intact.
transfer() {
  local name=$1 mib=$2
  head -c $((mib << 20)) /dev/urandom >"$name.up"
  head -c $((mib << 20)) /dev/urandom >"$name.down"
  timeout 120 "$stcat" listen -v --idfile bob.ident --relay relay.relay --allow alice.friend \
    <"$name.down" >"$name.got_up" 2>"$name.listener.err" &
  local listener=$!
  background+=("$listener")
  wait_for "$name.listener.err" "listening on relay" 10 || fail "$name: listener not up"
  local started
  started=$(now_ms)
  timeout 120 "$stcat" connect --idfile alice.ident --to bob.friend <"$name.up" \
    >"$name.got_down" 2>"$name.connector.err"
  local rc=$?
  wait "$listener"
  local listener_rc=$?
  took=$(($(now_ms) - started))
  check "$name: connector exits 0 (got $rc)" test "$rc" -eq 0
  check "$name: listener exits 0 (got $listener_rc)" test "$listener_rc" -eq 0
  check "$name: $mib MiB up intact" cmp -s "$name.up" "$name.got_up"
  check "$name: $mib MiB down intact" cmp -s "$name.down" "$name.got_down"
  rm -f "$name".*
}

for node in relay alice bob; do
  "$stmgr" gen-ident --output "$node.ident" >/dev/null || fail "gen-ident $node"
done
write_config 'tunnel-rate = "1Mi"'
"$strelay" --config relay.conf --log-level debug >/dev/null 2>relay.log &
relay=$!
relay_pid[relay]=$relay
wait_for relay.log "listening on 127.0.0.1:" 10 || fail "the relay did not start"
port=$(grep -o 'listening on 127.0.0.1:[0-9]*' relay.log | head -n 1 | sed 's/.*://')
http=$(grep -o 'metrics http://127.0.0.1:[0-9]*' relay.log | head -n 1 | sed 's|.*//||')
"$stmgr" relay-ticket --address "127.0.0.1:$port" --idfile relay.ident --output relay.relay ||
  fail "relay-ticket"
"$stmgr" friend-ticket --idfile bob.ident --relay relay.relay --output bob.friend || fail "ticket"
"$stmgr" friend-ticket --idfile alice.ident --relay relay.relay --output alice.friend ||
  fail "ticket"

# ---------------------------------------------------------------- 1. per-tunnel limit
# 3 MiB at 1 MiB/s per direction, less the 64 KiB burst: at least 2.9 s; 2.5 s asserted.
transfer tunnel 3
echo "strelay_bandwidth_test: 3 MiB each way at --tunnel-rate 1Mi took $took ms"
check "tunnel: 3 MiB at 1 MiB/s took at least 2.5 s (took $took ms)" test "$took" -ge 2500
tunnel_waits=$(metric bandwidth_waits_total 'scope="tunnel"')
check "tunnel: waits on the tunnel limit are counted (got $tunnel_waits)" test "$tunnel_waits" -gt 0
check "tunnel: /status shows the limit" \
  bash -c "curl -sf http://$http/status | grep -q '\"tunnel_rate_bytes_per_second\": *1048576'"

# ---------------------------------------------------------------- 2. reload to a global limit
write_config 'global-rate = "512Ki"'
kill -HUP "$relay"
wait_for relay.log "event=reloaded" 10 || fail "reload: no reloaded line"
check "reload: /status shows the global limit" \
  bash -c "curl -sf http://$http/status | grep -q '\"global_rate_bytes_per_second\": *524288'"
# 1 MiB each way is 2 MiB through one 512 KiB/s bucket, less its 64 KiB burst: at least 3.8 s.
transfer global 1
echo "strelay_bandwidth_test: 1 MiB each way at --global-rate 512Ki took $took ms"
check "global: 2 MiB through 512 KiB/s took at least 3 s (took $took ms)" test "$took" -ge 3000
global_waits=$(metric bandwidth_waits_total 'scope="global"')
check "global: waits on the global limit are counted (got $global_waits)" test "$global_waits" -gt 0
check "global: no new wait on the lifted tunnel limit" \
  test "$(metric bandwidth_waits_total 'scope="tunnel"')" -eq "$tunnel_waits"

# ---------------------------------------------------------------- 3. reload to no limit
write_config ''
kill -HUP "$relay"
for ((i = 0; i < 100; i++)); do
  (($(grep -c "event=reloaded" relay.log) >= 2)) && break
  sleep 0.1
done
check "none: reloaded again" test "$(grep -c "event=reloaded" relay.log)" -ge 2
before=$(($(metric bandwidth_waits_total 'scope="global"') + $(metric bandwidth_waits_total 'scope="tunnel"')))
transfer none 8
after=$(($(metric bandwidth_waits_total 'scope="global"') + $(metric bandwidth_waits_total 'scope="tunnel"')))
echo "strelay_bandwidth_test: 8 MiB each way without a limit took $took ms"
check "none: no wait without limits ($before before, $after after)" test "$after" -eq "$before"

# ---------------------------------------------------------------- 4. bad values
# The bounds, at max and max+1: 16 KiB/s is the least limit, 1 TB/s the most.
for good in 16384 16Ki 1000G 1000000000000; do
  timeout 3 "$strelay" --idfile relay.ident --laddr 127.0.0.1:0 --tunnel-rate "$good" \
    --global-rate "$good" >/dev/null 2>good.err
  check "rate $good is accepted" grep -q "listening on" good.err
done
for bad in 10x 1000 16383 1000000000001 1001G -5 2Ti; do
  "$strelay" --idfile relay.ident --laddr 127.0.0.1:0 --tunnel-rate "$bad" >/dev/null 2>bad.err
  rc=$?
  check "bad value $bad is refused (exit $rc)" test "$rc" -ne 0
  check "bad value $bad: one line naming the flag" \
    bash -c "test \$(wc -l <bad.err) -eq 1 && grep -q -- '--tunnel-rate' bad.err"
done

echo "strelay_bandwidth_test: all $passed checks passed"
