#!/usr/bin/env bash
# The Caddy recipe of docs/operations.md, for real: Debian's Caddy on loopback as a plain
# process (tests/caddy/start.sh: `caddy run`, admin endpoint off, a fresh self-signed
# certificate) terminates TLS and passes every path, wss:// upgrades at /strelay included, to a
# strelay relay; Caddy sets X-Forwarded-For to the client's address itself.
#
#   0. the recipe in docs/operations.md is tests/caddy/Caddyfile.template's lines (without the
#      ones marked "loopback test only"), so the doc shows what this test runs.
#   1. Caddy (127.0.0.1) is a --trusted-proxy: a client from 127.0.0.2 upgrades through Caddy
#      (101), and the relay logs and counts the connection as from 127.0.0.2, over WebSocket.
#   2. the same relay without --trusted-proxy: the forwarded header is refused (403 through
#      Caddy), counted as untrusted_forwarded, and nothing is logged as from 127.0.0.2.
#   3. a plain GET through Caddy reaches the relay's short plain answer.
#   4. a whole node over wss:// through Caddy: a JavaScript node (clients/js, trusting Caddy's
#      certificate as its CA) from 127.0.0.3 and stcat listening over TCP exchange 1 MiB each
#      way intact; the relay logs the WebSocket as from 127.0.0.3. Skipped, saying so, when
#      node or clients/js's npm packages (npm ci in clients/js) are missing, as in the gcc
#      stage of scripts/test; scripts/test-js runs this test again after npm ci with
#      STRELAY_CADDY_JS_REQUIRED=1, when a skip is a failure.
#
# Needs STRELAY_BIN_DIR (CTest sets it), caddy, openssl and curl (scripts/install-deps).
set -uo pipefail
bin_dir=$(cd "${STRELAY_BIN_DIR:?STRELAY_BIN_DIR must name the directory of the built binaries}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
strelay=$bin_dir/strelay
stcat=$bin_dir/stcat
stmgr=$bin_dir/stmgr
command -v caddy >/dev/null || { echo "caddy_test: SKIP: caddy is not installed (scripts/install-deps)"; exit 0; }
for tool in openssl curl python3; do
  command -v "$tool" >/dev/null || { echo "caddy_test: $tool is missing (scripts/install-deps)"; exit 1; }
done

source "$here/lib/proxy.sh"  # tmp, check, start_relay, start_front, the checks of a front

# 0. the doc shows the recipe that runs here
recipe=$(sed -e '/^#/d' -e '/# loopback test only$/d' -e 's|@SITE@|relay.example.org|' \
  -e 's|@RELAY@|127.0.0.1:7000|' "$here/caddy/Caddyfile.template")
doc=$(<"$here/../docs/operations.md")
check "docs/operations.md shows tests/caddy/Caddyfile.template's recipe" test "${doc/"$recipe"/}" != "$doc"

# 4. wss_node: with the trusted relay and its Caddy running.
wss_node() {
  local js=$here/../clients/js
  if ! command -v node >/dev/null || [[ ! -d $js/node_modules/ws ]]; then
    # scripts/test-js runs this test again after npm ci, with the JavaScript node required.
    if [[ ${STRELAY_CADDY_JS_REQUIRED:-0} == 1 ]]; then
      echo "FAIL: the JavaScript node over wss:// needs node and clients/js's packages"
      exit 1
    fi
    echo "skip: a JavaScript node over wss:// needs node and clients/js's packages (npm ci in clients/js)"
    return
  fi
  (
    cd "$tmp" || exit 1
    for name in alice bob; do "$stmgr" gen-ident --output "$name.ident" >/dev/null; done
    "$stmgr" relay-ticket --address "127.0.0.1:$relay_port" --idfile relay.ident --output relay.ticket
    head -c $((1 << 20)) /dev/urandom >up.bin
    head -c $((1 << 20)) /dev/urandom >down.bin
    timeout 60 "$stcat" listen -v --idfile bob.ident --relay relay.ticket \
      --allow "$("$stmgr" pubkey --idfile alice.ident)" <down.bin >bob.out 2>bob.err &
    listener=$!
    for _ in $(seq 1 100); do
      grep -q "listening on relay" bob.err 2>/dev/null && break
      sleep 0.1
    done
    cert=$(sed -n 's/.*cert=\([^ ]*\).*/\1/p' caddy.out)
    timeout 60 node "$here/caddy/wss_node.mjs" alice.ident relay.ticket \
      "$("$stmgr" pubkey --idfile bob.ident)" "wss://localhost:$https_port/strelay" "$cert" 127.0.0.3 \
      up.bin alice.out >alice.err 2>&1
    echo "node exit $?" >>alice.err
    for _ in $(seq 1 100); do kill -0 "$listener" 2>/dev/null || break; sleep 0.1; done
    kill "$listener" 2>/dev/null
  )
  check "the JS node over wss:// through Caddy ends cleanly ($(head -1 "$tmp/alice.err"))" \
    grep -q "node exit 0" "$tmp/alice.err"
  check "1 MiB from the JS node arrives intact at stcat" \
    test "$(sha256sum <"$tmp/up.bin")" == "$(sha256sum <"$tmp/bob.out")"
  check "1 MiB from stcat arrives intact at the JS node" \
    test "$(sha256sum <"$tmp/down.bin")" == "$(sha256sum <"$tmp/alice.out")"
  check "the relay logs the JS node's WebSocket as from 127.0.0.3" \
    grep -q "carrier=websocket source=127.0.0.3 via_proxy=true" "$tmp/trusted.log"
}

# 1. trusted
start_relay trusted --trusted-proxy 127.0.0.1
start_front caddy "$relay_port"
trusted_front_checks Caddy
wss_node
kill "$front_pid" "$relay_pid" 2>/dev/null
wait "$front_pid" "$relay_pid" 2>/dev/null

# 2. not trusted
start_relay untrusted
start_front caddy "$relay_port"
untrusted_front_checks Caddy

finish caddy_test
