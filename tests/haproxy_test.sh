#!/usr/bin/env bash
# The HAProxy recipe of docs/operations.md, for real: Debian's HAProxy on loopback in TCP mode
# (tests/haproxy/haproxy.cfg.template) in front of strelay's raw TCP port, sending each
# client's address in a PROXY v2 header. A client "on another host" is stcat dialling from
# 127.0.0.77 (socat binds that source address for it; HAProxy itself dials from 127.0.0.1).
#
#   0. the recipe in docs/operations.md is the template's lines, so the doc shows what runs here.
#   1. HAProxy (127.0.0.1) is a --trusted-proxy: stcat connects through it to a listener and
#      1 MiB goes each way intact; the relay logs the connection as from 127.0.0.77, via proxy.
#   2. the same relay without --trusted-proxy: the PROXY header is refused and counted
#      (untrusted_proxy_header), the connection fails, nothing is logged as from 127.0.0.77.
#
# Needs STRELAY_BIN_DIR (CTest sets it), haproxy, socat and curl (scripts/install-deps).
set -uo pipefail
bin_dir=$(cd "${STRELAY_BIN_DIR:?STRELAY_BIN_DIR must name the directory of the built binaries}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
strelay=$bin_dir/strelay
stcat=$bin_dir/stcat
stmgr=$bin_dir/stmgr
haproxy=$(command -v haproxy || echo /usr/sbin/haproxy)
[[ -x $haproxy ]] || { echo "haproxy_test: SKIP: haproxy is not installed (scripts/install-deps)"; exit 0; }
for tool in socat curl python3; do
  command -v "$tool" >/dev/null || { echo "haproxy_test: $tool is missing (scripts/install-deps)"; exit 1; }
done

source "$here/lib/proxy.sh"  # tmp, check, free_port, counter
cd "$tmp" || exit 1
# wait_port PORT: until something accepts on 127.0.0.1:PORT (10 s at most).
wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

for name in alice bob; do "$stmgr" gen-ident --output "$name.ident" >/dev/null; done
bob_key=$("$stmgr" pubkey --idfile bob.ident)

# start_relay_behind_haproxy NAME FLAGS...: start_relay, then NAME.relay (the direct ticket) and
# NAME.via.relay (the ticket through HAProxy, via socat from 127.0.0.77).
start_relay_behind_haproxy() {
  local name=$1
  start_relay "$@"
  "$stmgr" relay-ticket --address "127.0.0.1:$relay_port" --idfile relay.ident --output "$name.relay"
  start_haproxy "$relay_port"
  "$stmgr" relay-ticket --address "127.0.0.1:$client_port" --idfile relay.ident --output "$name.via.relay"
}

# start_haproxy RELAY_PORT: HAProxy from the recipe's template, and socat as the remote
# client's network (127.0.0.1:client_port -> HAProxy, from 127.0.0.77).
start_haproxy() {
  local front_port
  front_port=$(free_port)
  sed -e "s|@LISTEN@|127.0.0.1:$front_port|" -e "s|@RELAY@|127.0.0.1:$1|" \
    "$here/haproxy/haproxy.cfg.template" >haproxy.cfg
  timeout 120 "$haproxy" -db -f haproxy.cfg 2>>haproxy.log &
  pids+=($!)
  haproxy_pid=$!
  wait_port "$front_port" || { echo "FAIL: haproxy did not start"; cat haproxy.log; exit 1; }
  client_port=$(free_port)
  timeout 120 socat "TCP-LISTEN:$client_port,bind=127.0.0.1,reuseaddr,fork" \
    "TCP:127.0.0.1:$front_port,bind=127.0.0.77" 2>>socat.log &
  pids+=($!)
  socat_pid=$!
  wait_port "$client_port" || { echo "FAIL: socat did not start"; exit 1; }
}
stop_all() {
  kill -TERM "$socat_pid" "$haproxy_pid" "$relay_pid" 2>/dev/null
  wait "$socat_pid" "$haproxy_pid" "$relay_pid" 2>/dev/null
}
fast=(--backoff-initial 0.2 --backoff-cap 1 --connect-timeout 3)
# listen RELAY_TICKET: bob listens directly for alice, serving down.bin.
listen() {
  timeout 60 "$stcat" listen -v "${fast[@]}" --idfile bob.ident --relay "$1" \
    --allow "$("$stmgr" pubkey --idfile alice.ident)" <down.bin >bob.out 2>bob.err &
  pids+=($!)
  listener_pid=$!
  for _ in $(seq 1 100); do
    grep -q "listening on relay" bob.err 2>/dev/null && return 0
    sleep 0.1
  done
  echo "FAIL: the listener did not start"; cat bob.err; exit 1
}
# connect RELAY_TICKET: alice connects to bob through that ticket; exit code in $rc.
connect() {
  timeout 60 "$stcat" connect -v "${fast[@]}" --idfile alice.ident --to "$bob_key" --relay "$1" \
    <up.bin >alice.out 2>alice.err
  rc=$?
}

# 0. the doc shows the recipe that runs here
recipe=$(sed -e '/^#/d' -e 's|@LISTEN@|:4567|' -e 's|@RELAY@|127.0.0.1:7000|' \
  "$here/haproxy/haproxy.cfg.template")
doc=$(<"$here/../docs/operations.md")
check "docs/operations.md shows tests/haproxy/haproxy.cfg.template's recipe" test "${doc/"$recipe"/}" != "$doc"

head -c $((1 << 20)) /dev/urandom >up.bin
head -c $((1 << 20)) /dev/urandom >down.bin

# 1. trusted
start_relay_behind_haproxy trusted --trusted-proxy 127.0.0.1
listen trusted.relay
connect trusted.via.relay
check "stcat through a trusted HAProxy exits 0 (got $rc)" test "$rc" -eq 0
for _ in $(seq 1 100); do kill -0 "$listener_pid" 2>/dev/null || break; sleep 0.1; done
check "1 MiB up arrives intact" test "$(sha256sum <up.bin)" == "$(sha256sum <bob.out)"
check "1 MiB down arrives intact" test "$(sha256sum <down.bin)" == "$(sha256sum <alice.out)"
check "the relay logs the client 127.0.0.77, via the proxy" \
  grep -q "carrier=tcp source=127.0.0.77 via_proxy=true" trusted.log
check "no PROXY header was refused" test "$(counter 'carrier_refusals_total{reason="untrusted_proxy_header"}')" = 0
kill -TERM "$listener_pid" 2>/dev/null
stop_all

# 2. not trusted
rm -f bob.err bob.out alice.out
start_relay_behind_haproxy untrusted
listen untrusted.relay
connect untrusted.via.relay
check "stcat through an untrusted HAProxy fails (got $rc)" test "$rc" -ne 0
check "the PROXY header's refusal is counted" \
  test "$(counter 'carrier_refusals_total{reason="untrusted_proxy_header"}')" -ge 1
check "the refusal is logged" grep -q "carrier_refused.*untrusted_proxy_header" untrusted.log
check "nothing is logged as from the client's address" bash -c "! grep -q 'source=127.0.0.77' untrusted.log"
check "the listener got nothing" test ! -s bob.out
stop_all

finish haproxy_test
