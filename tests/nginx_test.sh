#!/usr/bin/env bash
# The nginx recipe of docs/operations.md, for real: Debian's nginx on loopback with a
# self-signed certificate (tests/nginx/start.sh) terminates TLS and passes wss:// upgrades at
# /strelay to a strelay relay, with the client's address in X-Forwarded-For.
#
#   1. nginx (127.0.0.1) is a --trusted-proxy: a client from 127.0.0.2 upgrades through nginx
#      (101), and the relay logs and counts the connection as from 127.0.0.2, over WebSocket.
#   2. the same relay without --trusted-proxy: the forwarded header is refused (403 through
#      nginx), counted as untrusted_forwarded, and nothing is logged as from 127.0.0.2.
#   3. a plain GET through nginx reaches the relay's short plain answer.
# A whole node over wss:// through this nginx: clients/js/test/live_nginx.test.js; over plain
# ws:// the C++ node of tests/websocket_test.cpp.
#
# Needs STRELAY_BIN_DIR (CTest sets it), nginx, openssl and curl (scripts/install-deps).
set -uo pipefail
bin_dir=$(cd "${STRELAY_BIN_DIR:?STRELAY_BIN_DIR must name the directory of the built binaries}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
strelay=$bin_dir/strelay
for tool in nginx openssl curl python3; do
  command -v "$tool" >/dev/null || [[ -x /usr/sbin/$tool ]] || { echo "nginx_test: $tool is missing (scripts/install-deps)"; exit 1; }
done

source "$here/lib/proxy.sh"  # tmp, check, start_relay, start_front, the checks of a front

# 1. trusted
start_relay trusted --trusted-proxy 127.0.0.1
start_front nginx "$relay_port"
trusted_front_checks nginx
kill "$front_pid" "$relay_pid" 2>/dev/null
wait "$front_pid" "$relay_pid" 2>/dev/null

# 2. not trusted
start_relay untrusted
start_front nginx "$relay_port"
untrusted_front_checks nginx

finish nginx_test
