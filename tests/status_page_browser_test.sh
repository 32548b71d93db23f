#!/usr/bin/env bash
# The status page at / in a real browser: Debian's chromium, headless, loads it from a running
# strelay on 127.0.0.1 and the test reads the rendered DOM (--dump-dom):
#   - with JavaScript: the relay's public key, ticket and QR code (inline SVG); the live
#     counters after a node has started listening (listeners 1, connections 1); the badge that
#     the script sets to "live" once it has fetched /status and /samples (so the CSP let the
#     inline script run and the page refreshes itself); the chart's polylines drawn;
#   - without JavaScript: the same key, QR code and counters in the HTML as served, and a meta
#     refresh;
#   - no external asset: every src/href in the page is a local path.
# It takes a screenshot, kept as a test artifact: <build>/test-artifacts/status-page.png
# (the path is printed). Every chromium run has a virtual-time budget and a hard timeout.
set -euo pipefail
bin=${STRELAY_BIN_DIR:?set by CTest}
artifacts=$bin/../test-artifacts
mkdir -p "$artifacts"
chromium=$(command -v chromium || command -v chromium-browser || true)
if [[ -z $chromium ]]; then
  echo "chromium is not installed (scripts/install-deps installs it)" >&2
  exit 1
fi

work=$(mktemp -d /tmp/strelay-browser.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
source "${STRELAY_TESTS_DIR:?set by CTest}/lib/common.sh"  # fail, wait_for

browse() {  # output-flag url [extra chromium flags...]: runs chromium, bounded
  timeout 90 "$chromium" --headless --no-sandbox --disable-gpu --no-first-run --disable-extensions \
    --disable-dev-shm-usage --user-data-dir="$work/profile" --virtual-time-budget=6000 \
    "${@:3}" "$1" "$2" 2>>"$work/chromium.log"
}

"$bin/stmgr" gen-ident --output "$work/relay.ident" >/dev/null
"$bin/stmgr" gen-ident --output "$work/bob.ident" >/dev/null
"$bin/strelay" --idfile "$work/relay.ident" --laddr 127.0.0.1:0 --metrics-addr 127.0.0.1:0 \
  --public-address relay.example.org:4567 >"$work/relay.out" 2>"$work/relay.log" &
pids+=($!)
wait_for "$work/relay.log" "listening on" 10
key=$("$bin/stmgr" pubkey --idfile "$work/relay.ident" 2>/dev/null || true)
[[ -n $key ]] || key=$(sed -n 's/.* public key \([A-Za-z0-9_-]*\).*/\1/p' "$work/relay.log")
port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/relay.log")
url=$(sed -n 's/.* metrics \(http:[^ ]*\).*/\1/p' "$work/relay.log")
[[ ${#key} == 43 && -n $port && -n $url ]] || fail "start-up line lacks key, port or metrics URL"
echo "relay $key on port $port, status page $url"

# A node listening on the relay: the listeners counter goes to 1. Without its standby
# connection (docs/protocol.md 4.4), which would make the connections 2 a moment later.
"$bin/stmgr" relay-ticket --address "127.0.0.1:$port" --idfile "$work/relay.ident" --output "$work/relay.relay" >/dev/null
"$bin/stcat" listen --no-standby --idfile "$work/bob.ident" --relay "$work/relay.relay" \
  --allow "$("$bin/stmgr" pubkey --idfile "$work/bob.ident")" -v </dev/null >/dev/null 2>"$work/bob.log" &
pids+=($!)
wait_for "$work/bob.log" "listening on relay" 10

# ---- with JavaScript
browse --dump-dom "$url" >"$work/dom.html" || fail "chromium failed: $(tail -3 "$work/chromium.log")"
dom=$work/dom.html
[[ -s $dom ]] || fail "chromium dumped an empty DOM: $(tail -3 "$work/chromium.log")"
has() { grep -q -- "$1" "$dom" || fail "the rendered page lacks $2"; }
has "$key" "the relay's public key"
has "relay.example.org:4567" "the ticket's address"
has '<div class="qr"><svg' "the QR code as inline SVG"
has 'data-k="gauges.listeners" data-f="n">1<' "listeners = 1"
has 'data-k="gauges.connections" data-f="n">1<' "connections = 1"
has 'data-k="gauges.tunnels" data-f="n">0<' "tunnels = 0"
has 'id="state">live<' "the live badge (the script fetched /status and /samples)"
has 'Limit hits' "the limit hits table"
grep -Eq '<polyline id="l2" class="l2" points="[0-9]' "$dom" || fail "the connections chart has no points"
# Self-contained: no http(s) URL in any src or href, no external stylesheet or script.
# (The foreign references are collected whole: `... | grep -q .` under pipefail could miss one
# when grep quit before the writer had finished, SIGPIPE.)
foreign=$(grep -Eo '(src|href)="[^"]*"' "$dom" | grep -Ev '(src|href)="(/[^/][^"]*|#[^"]*)"' || true)
if [[ -n $foreign ]]; then
  fail "the page refers to something not on this relay: $(sort -u <<<"$foreign" | tr '\n' ' ')"
fi
echo "ok: with JavaScript the page shows the key, the ticket, the QR code and live counters"

# ---- without JavaScript: a browser shows the HTML as served, so the served page must hold the
# same facts (headless chromium's --dump-dom and --screenshot need scripts themselves, so the
# test reads the HTML as served).
python3 - "$url" >"$work/served.html" <<'EOF2'
import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())
EOF2
dom=$work/served.html
has "$key" "the public key (no JavaScript)"
has 'data-k="gauges.listeners" data-f="n">1<' "listeners = 1 (no JavaScript)"
has '<div class="qr"><svg' "the QR code (no JavaScript)"
has 'id="state">running<' "the server-rendered badge (no JavaScript)"
has '<noscript><meta http-equiv="refresh"' "a meta refresh for browsers without JavaScript"
echo "ok: without JavaScript the served page shows the same key, QR code and counters"

# ---- the screenshot, kept
shot=$artifacts/status-page.png
rm -f "$shot"
browse --screenshot="$shot" "$url" --window-size=1280,2000 --hide-scrollbars || fail "chromium screenshot failed"
[[ -s $shot ]] || fail "no screenshot written"
[[ $(head -c 8 "$shot" | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]] || fail "the screenshot is not a PNG"
echo "ok: screenshot $(stat -c %s "$shot") bytes: $shot"
