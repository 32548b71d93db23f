#!/usr/bin/env bash
# libstrelay under threads: tests/capi_stress_test.c against a real relay on 127.0.0.1 (the
# program's comment says what it does). Needs only strelay and the program, so the TSan stage
# can build and run it (its relay identity is written here, not by stmgr).
# STRELAY_CAPI_ROUNDS: rounds per client thread (default 12).
set -uo pipefail
tests_dir=$(cd "${STRELAY_TESTS_DIR:-$(dirname "$0")}" && pwd)
source "$tests_dir/lib/checks.sh"

seed=$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
(umask 077 && printf '{\n  "privateKey": "%s"\n}' "$seed" >relay.ident)
"$strelay" --idfile relay.ident --laddr 127.0.0.1:0 --handshake-rate 1000 \
  --handshake-burst 1000 --connect-rate 100000 --connect-burst 10000 >/dev/null 2>relay.log &
relay_pid[relay]=$!
wait_for relay.log "listening on 127.0.0.1:" 20 || fail "relay did not start"
port=$(grep -o 'listening on 127.0.0.1:[0-9]*' relay.log | head -n 1 | sed 's/.*://')
key=$(grep -o 'public key [A-Za-z0-9_-]*' relay.log | head -n 1 | sed 's/public key //')
printf '{\n  "publicKey": "%s",\n  "address": "127.0.0.1:%s"\n}' "$key" "$port" >relay.relay

timeout 300 "$bin_dir/capi_stress_test" relay.relay >stress.out 2>stress.err
rc=$?
cat stress.out
check "capi_stress_test exits 0 (got $rc)" test "$rc" -eq 0
check "the relay is still up" kill -0 "${relay_pid[relay]}"
echo "capi_stress_test: $passed checks passed"
