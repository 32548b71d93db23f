#!/usr/bin/env bash
# Starts Debian's nginx in front of a strelay relay on loopback, with a fresh self-signed
# certificate, for tests (tests/nginx_test.sh, and the JavaScript node's wss:// tests).
#
#   tests/nginx/start.sh RELAY_PORT [HTTPS_PORT] [WS_PATH]
#
# RELAY_PORT: the relay's --laddr port on 127.0.0.1. HTTPS_PORT: nginx's port (default: a free
# one). WS_PATH: the relay's --websocket-path (default /strelay). Once nginx accepts connections
# it prints one line on stdout:
#   nginx https_port=N cert=PATH dir=DIR pid=PID
# and stays in the foreground until it gets SIGTERM or SIGINT; then it stops nginx and removes
# DIR. nginx runs as a child (daemon off), never as a system service. The certificate is for
# CN=localhost with subjectAltName DNS:localhost and IP:127.0.0.1 (clients pass it as their CA,
# or skip verification).
set -euo pipefail
relay_port=${1:?usage: start.sh RELAY_PORT [HTTPS_PORT] [WS_PATH]}
https_port=${2:-}
ws_path=${3:-/strelay}
here=$(cd "$(dirname "$0")" && pwd)
nginx=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $nginx ]] || { echo "start.sh: nginx is not installed (scripts/install-deps)" >&2; exit 2; }
command -v openssl >/dev/null || { echo "start.sh: openssl is not installed (scripts/install-deps)" >&2; exit 2; }

dir=$(mktemp -d /tmp/strelay-nginx.XXXXXX)
chmod 755 "$dir"  # nginx's worker (nobody, when started as root) reads below it
mkdir -p "$dir/tmp"
nginx_pid=
cleanup() {
  [[ -n $nginx_pid ]] && kill "$nginx_pid" 2>/dev/null && wait "$nginx_pid" 2>/dev/null
  rm -rf "$dir"
}
trap 'cleanup; exit 0' TERM INT
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null

if [[ -z $https_port ]]; then
  https_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fi
sed -e "s|@DIR@|$dir|g" -e "s|@HTTPS_PORT@|$https_port|g" -e "s|@RELAY_PORT@|$relay_port|g" \
  -e "s|@WS_PATH@|$ws_path|g" "$here/nginx.conf.template" >"$dir/nginx.conf"

"$nginx" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" &
nginx_pid=$!
for _ in $(seq 1 100); do
  if ! kill -0 "$nginx_pid" 2>/dev/null; then
    echo "start.sh: nginx did not start:" >&2
    cat "$dir/error.log" >&2
    exit 1
  fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$https_port") 2>/dev/null; then break; fi
  sleep 0.1
done
echo "nginx https_port=$https_port cert=$dir/cert.pem dir=$dir pid=$nginx_pid"
wait "$nginx_pid"
