#!/usr/bin/env bash
# What `cmake --install` puts where, and whether the operator's documents match the binaries:
#   - into a temporary prefix: the three programs, their man pages (rendered by man), the
#     systemd unit with its paths rewritten for the prefix, the example config, the docs; the C
#     library with its header and strelay.pc, and the embedding example built with them;
#   - `systemd-analyze verify` passes on the installed unit (man pages found in the prefix);
#   - every strelay flag is in examples/strelay.conf, in docs/operations.md and in strelay.1;
#   - every metric family a running relay exports, every /status section, and every log event
#     in strelay's sources is in docs/operations.md;
#   - examples/strelay.conf as shipped, and with every commented option switched on, is
#     accepted by strelay (the documented defaults parse).
# The full Debian package (build, apt install, remove) is scripts/test-package.
set -euo pipefail
bin=${STRELAY_BIN_DIR:?set by CTest}
build=$(cd "$bin/.." && pwd)
src=$(cd "${STRELAY_TESTS_DIR:?set by CTest}/.." && pwd)
work=$(mktemp -d /tmp/strelay-packaging.XXXXXX)
relay_pid=
cleanup() {
  [[ -n $relay_pid ]] && kill "$relay_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
source "${STRELAY_TESTS_DIR:?set by CTest}/lib/common.sh"  # fail, wait_for

# ---- cmake --install into a prefix
prefix=$work/prefix
# The man pages are part of the default build (target man); the test does not build anything.
cmake --install "$build" --prefix "$prefix" >"$work/install.log" || fail "cmake --install failed: $(tail -5 "$work/install.log")"
for f in bin/strelay bin/stmgr bin/stcat share/man/man1/strelay.1.gz share/man/man1/stmgr.1.gz share/man/man1/stcat.1.gz \
  lib/systemd/system/strelay.service lib/systemd/system/strelay.socket etc/strelay/strelay.conf share/doc/strelay/operations.md \
  share/doc/strelay/README.md share/doc/strelay/examples/demo-local.sh share/doc/strelay/examples/demo-failover.sh \
  share/doc/strelay/examples/demo-lib.sh share/doc/strelay/LICENSE share/doc/strelay/copyright; do
  [[ -e $prefix/$f ]] || fail "cmake --install did not install $f"
done
[[ -x $prefix/bin/strelay && -x $prefix/share/doc/strelay/examples/demo-local.sh ]] || fail "programs not executable"
"$prefix/bin/strelay" --version | grep -q "^strelay [0-9]" || fail "installed strelay --version"
echo "ok: cmake --install put programs, man pages, unit, config and docs in $prefix"

# ---- the C library: header, library, strelay.pc naming this prefix, and a C program built
# with them (the example of the -dev package)
for f in lib/libstrelay.so.0 lib/libstrelay.so include/strelay.h lib/pkgconfig/strelay.pc \
  share/doc/libstrelay-dev/examples/embed.c share/doc/libstrelay0/copyright; do
  [[ -e $prefix/$f ]] || fail "cmake --install did not install $f"
done
grep -qx "prefix=$prefix" "$prefix/lib/pkgconfig/strelay.pc" || fail "strelay.pc does not name the prefix"
pc_flags=$(PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --cflags --libs strelay) || fail "pkg-config strelay"
if nm -D "$prefix/lib/libstrelay.so.0" | grep -E ' U __(asan|tsan|ubsan)_' >/dev/null; then
  # A sanitizer build's library needs its runtime in the program (tests/capi_test.sh runs one).
  echo "ok: the C library is installed (the example is not built against a sanitizer build's library)"
else
  # shellcheck disable=SC2086  # the flags are words
  cc -std=c99 -Wall -Wextra -Werror -o "$work/strelay-embed" \
    "$prefix/share/doc/libstrelay-dev/examples/embed.c" $pc_flags || fail "the example does not build"
  key=$(LD_LIBRARY_PATH=$prefix/lib "$work/strelay-embed" "$work/embed.seed") || fail "the example does not run"
  [[ ${#key} == 43 ]] || fail "the example printed no key: $key"
  echo "ok: the C library is installed; the example builds with pkg-config ($pc_flags) and runs"
fi

# ---- man pages render and are complete
for program in strelay stmgr stcat; do
  page=$prefix/share/man/man1/$program.1.gz
  gzip -t "$page" || fail "$program.1.gz is not gzip"
  MANWIDTH=100 man -l "$page" >"$work/$program.txt" 2>"$work/man.err" || fail "man cannot render $program.1"
  grep -q "^NAME" "$work/$program.txt" || fail "$program.1 has no NAME section"
  grep -q "SEE ALSO" "$work/$program.txt" || fail "$program.1 has no SEE ALSO section"
done
for sub in gen-ident relay-ticket friend-ticket pubkey show qr; do
  grep -q "stmgr $sub" "$work/stmgr.txt" || fail "stmgr.1 lacks the $sub subcommand"
done
grep -q "EXIT STATUS" "$work/stcat.txt" || fail "stcat.1 lacks the exit codes"
# Written by hand, as Debian's pages read (issue 20.13): a synopsis per form, each example on a
# line of its own, no CLI11 type hints, no command taken for a flag.
for program in strelay stmgr stcat; do
  grep -q "^EXAMPLES" "$work/$program.txt" || fail "$program.1 has no EXAMPLES section"
  grep -Eq ':(UINT|INT|FLOAT|TEXT)\b|in \[[0-9]+ - [0-9]+\]' "$work/$program.txt" &&
    fail "$program.1 shows CLI11's type hints: $(grep -E ':(UINT|INT|TEXT)|in \[' "$work/$program.txt" | head -1)"
  grep -q -- '-h,--help' "$work/$program.txt" && fail "$program.1 has an unspaced -h,--help"
done
grep -Eq '^ +stcat listen --idfile file --relay ticket' "$work/stcat.txt" || fail "stcat.1's synopsis"
grep -Eq '^ +stcat connect --idfile file --to ' "$work/stcat.txt" || fail "stcat.1's synopsis lacks connect"
grep -Eq '^ +stcat listen --idfile bob.ident --relay relay.relay --allow alice.friend$' "$work/stcat.txt" ||
  fail "stcat.1's example is not on a line of its own"
grep -Eq '^ +stcat connect --idfile alice.ident --to bob.friend' "$work/stcat.txt" || fail "stcat.1's second example"
grep -Eq '^       stcat listen *$' "$work/stcat.txt" && fail "stcat.1 splits 'stcat listen' from its flags"
grep -Eq '^ +strelay --idfile file --laddr address' "$work/strelay.txt" || fail "strelay.1's synopsis"
grep -Eq '^ +stmgr gen-ident --output relay/relay.ident$' "$work/strelay.txt" || fail "strelay.1's examples"
for sub in gen-ident relay-ticket friend-ticket pubkey show qr; do
  grep -Eq "^ +stmgr $sub " "$work/stmgr.txt" || fail "stmgr.1's synopsis lacks $sub"
done
grep -q "SIGHUP" "$work/strelay.txt" || fail "strelay.1 lacks the signals"
echo "ok: man pages render, with subcommands, signals and exit codes"

# ---- the unit
unit=$prefix/lib/systemd/system/strelay.service
grep -q "^ExecStart=$prefix/bin/strelay --config $prefix/etc/strelay/strelay.conf$" "$unit" ||
  fail "the installed unit's ExecStart does not point into the prefix: $(grep ExecStart= "$unit")"
for directive in Type=notify User=strelay ProtectSystem=strict NoNewPrivileges=true PrivateTmp=true \
  LimitNOFILE= StateDirectory=strelay; do
  grep -q "^$directive" "$unit" || fail "the unit lacks $directive"
done
MANPATH=$prefix/share/man: systemd-analyze verify "$unit" >"$work/verify.log" 2>&1 ||
  fail "systemd-analyze verify failed: $(cat "$work/verify.log")"
socket_unit=$prefix/lib/systemd/system/strelay.socket
grep -q "^ListenStream=" "$socket_unit" || fail "strelay.socket has no ListenStream="
MANPATH=$prefix/share/man: systemd-analyze verify "$socket_unit" "$unit" >"$work/verify.log" 2>&1 ||
  fail "systemd-analyze verify failed on strelay.socket: $(cat "$work/verify.log")"
echo "ok: systemd-analyze verify passes on the installed units (service and socket)"

# ---- every flag documented
flags=$("$bin/strelay" --help | grep -Eo -- '^ +--[a-z][a-z0-9-]*' | sed 's/^ *--//' | sort -u)
[[ $(wc -l <<<"$flags") -ge 20 ]] || fail "could not read the flags from strelay --help"
for flag in $flags; do
  case $flag in help | version | config) continue ;; esac
  grep -Eq "^#? ?$flag = " "$src/examples/strelay.conf" || fail "examples/strelay.conf does not document $flag"
  grep -q -- "--$flag" "$src/docs/operations.md" || fail "docs/operations.md does not mention --$flag"
  grep -q -- "--$flag" "$work/strelay.txt" || fail "strelay.1 does not mention --$flag"
done
echo "ok: all $(wc -l <<<"$flags") strelay flags are in the example config, operations.md and the man page"

# ---- the example config is accepted, as shipped and with every option on
"$bin/stmgr" gen-ident --output "$work/relay.ident" >/dev/null
try_config() {  # config-file label
  # Emptied here, not by the background job's redirection: otherwise the wait below can still
  # read the previous run's "listening on" before the new relay truncates the file.
  : >"$work/config.out"
  : >"$work/config.log"
  "$bin/strelay" --config "$1" --idfile "$work/relay.ident" --laddr 127.0.0.1:0 --metrics-addr 127.0.0.1:0 \
    >"$work/config.out" 2>"$work/config.log" &
  relay_pid=$!
  for ((i = 0; i < 200; i++)); do
    grep -q "listening on" "$work/config.log" 2>/dev/null && break
    alive=$(kill -0 "$relay_pid" 2>/dev/null && echo yes || true)
    [[ -n $alive ]] || fail "strelay refused $2: $(cat "$work/config.log")"
    sleep 0.1
  done
  grep -q "listening on" "$work/config.log" ||
    fail "strelay did not start with $2: $(cat "$work/config.log"; ps -o pid,stat,wchan:30,etime,cmd -p "$relay_pid")"
}
try_config "$src/examples/strelay.conf" "examples/strelay.conf"
url=$(sed -n 's/.* metrics \(http:[^ ]*\).*/\1/p' "$work/config.log")
python3 - "$url" >"$work/metrics.txt" <<'EOF'
import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1] + "metrics", timeout=5).read().decode())
EOF
python3 - "$url" >"$work/status-keys.txt" <<'EOF'
import json, sys, urllib.request
s = json.load(urllib.request.urlopen(sys.argv[1] + "status", timeout=5))
for k, v in s.items():
    print(k)
    if isinstance(v, dict) and k in ("gauges", "counters"):
        for name in v: print(name)
EOF
kill -TERM "$relay_pid"
wait "$relay_pid" || fail "strelay with the example config did not exit 0 on SIGTERM"
relay_pid=
for family in $(sed -n 's/^# TYPE \([a-z_]*\) .*/\1/p' "$work/metrics.txt"); do
  grep -q "$family" "$src/docs/operations.md" || fail "docs/operations.md does not explain the metric $family"
done
for key in $(cat "$work/status-keys.txt"); do
  grep -q "$key" "$src/docs/operations.md" || fail "docs/operations.md does not explain /status's $key"
done
echo "ok: every metric family and /status field is in docs/operations.md"

# Every log event strelay can write (read from its sources) has a row in the log table.
events=$(grep -ohE '\.(info|warn|error|debug)\("[a-z_]+"' "$src"/strelay/*.cpp | sed -E 's/.*\("([a-z_]+)"/\1/' | sort -u)
[[ $(wc -l <<<"$events") -ge 10 ]] || fail "could not read the log events from strelay/*.cpp"
for event in $events log_suppressed; do
  grep -q "\`$event\`" "$src/docs/operations.md" || fail "docs/operations.md does not list the log event $event"
done
echo "ok: all $(wc -l <<<"$events") log events are in docs/operations.md"

# Every "# name = value" line switched on (the ones that need a file or directory, or a fixed
# port of their own, are left as they are).
sed -E 's/^# ([a-z0-9-]+ = .*)$/\1/' "$src/examples/strelay.conf" |
  grep -Ev '^(allow|public-address|web-root|websocket-laddr) = ' \
  >"$work/all-on.conf"
[[ $(grep -Ec '^[a-z0-9-]+ = ' "$work/all-on.conf") -ge 20 ]] || fail "expected 20 options switched on"
try_config "$work/all-on.conf" "the example config with every option on"
kill -TERM "$relay_pid"
wait "$relay_pid" || fail "strelay did not exit 0 on SIGTERM"
relay_pid=
echo "ok: the example config is accepted as shipped and with every option on"
