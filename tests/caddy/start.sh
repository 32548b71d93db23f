#!/usr/bin/env bash
# Starts Debian's Caddy in front of a strelay relay on loopback, with a fresh self-signed
# certificate, for tests (tests/caddy_test.sh). The same interface as tests/nginx/start.sh:
#
#   tests/caddy/start.sh RELAY_PORT [HTTPS_PORT]
#
# Once Caddy accepts connections it prints one line on stdout:
#   caddy https_port=N cert=PATH dir=DIR pid=PID
# and stays in the foreground until SIGTERM or SIGINT; then it stops Caddy and removes DIR.
# Caddy runs as a plain child process (`caddy run`, admin endpoint off, HOME and XDG dirs in
# DIR), never as a system service. The certificate is for CN=localhost, IP:127.0.0.1.
set -euo pipefail
relay_port=${1:?usage: start.sh RELAY_PORT [HTTPS_PORT]}
https_port=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
caddy=$(command -v caddy || echo /usr/bin/caddy)
[[ -x $caddy ]] || { echo "start.sh: caddy is not installed (scripts/install-deps)" >&2; exit 2; }
command -v openssl >/dev/null || { echo "start.sh: openssl is not installed (scripts/install-deps)" >&2; exit 2; }

dir=$(mktemp -d /tmp/strelay-caddy.XXXXXX)
caddy_pid=
cleanup() {
  [[ -n $caddy_pid ]] && kill "$caddy_pid" 2>/dev/null && wait "$caddy_pid" 2>/dev/null
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
sed -e "s|@DIR@|$dir|g" -e "s|@SITE@|localhost:$https_port|g" -e "s|@RELAY@|127.0.0.1:$relay_port|g" \
  "$here/Caddyfile.template" >"$dir/Caddyfile"

HOME=$dir XDG_DATA_HOME=$dir/data XDG_CONFIG_HOME=$dir/config \
  "$caddy" run --config "$dir/Caddyfile" --adapter caddyfile >"$dir/caddy.log" 2>&1 &
caddy_pid=$!
for _ in $(seq 1 100); do
  if ! kill -0 "$caddy_pid" 2>/dev/null; then
    echo "start.sh: caddy did not start:" >&2
    cat "$dir/caddy.log" >&2
    exit 1
  fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$https_port") 2>/dev/null; then break; fi
  sleep 0.1
done
echo "caddy https_port=$https_port cert=$dir/cert.pem dir=$dir pid=$caddy_pid"
wait "$caddy_pid"
