#!/usr/bin/env bash
# libstrelay from C (tests/capi_test.c, compiled as C99 with -Wall -Werror against strelay.h):
# its selftest (errors, bad input, closed handles), then the end-to-end scenarios of
# tests/lib/capi_scenarios.sh against stcat through real relays: both roles, byte-exact,
# failover listening and connecting; then the accept filter (a refused friend: stcat exits 3)
# and the embedding example (examples/embed) against stcat. Runs under ASan too (the program and the library are
# both instrumented). Needs STRELAY_BIN_DIR (CTest sets it); CAPI_TEST_KIB sizes the data.
set -uo pipefail
tests_dir=$(cd "${STRELAY_TESTS_DIR:-$(dirname "$0")}" && pwd)
source "$tests_dir/lib/checks.sh"
source "$tests_dir/lib/capi_scenarios.sh"

peer=("$bin_dir/capi_test")
"${peer[@]}" selftest >selftest.out 2>selftest.err || { cat selftest.err >&2; fail "selftest"; }
check "selftest" grep -q "selftest ok" selftest.out
capi_scenarios
# Events and statistics of scenario 1 (the C program prints them).
check "s1: in a callback, a blocking call is refused and a non-blocking one works" grep -q \
  "capi: in a callback: blocking accept STRELAY_WRONG_THREAD, public key STRELAY_OK" s1.lib.err
check "s1: a PEER_RTT event" grep -Eq "capi: peer rtt [0-9]+ us" s1.lib.err
check "s1: PEER_GONE after the clean end" grep -q "capi: peer gone: STRELAY_OK" s1.lib.err
check "s1: the stream's stats count the bytes both ways and know the rtt" grep -q \
  "capi: stats: sent $(stat -c %s s1.lib_send) received $(stat -c %s s1.stcat_send) rtt_known 1" s1.lib.err

# ---- the accept filter: a friend's stream it refuses never reaches accept; the peer is told
start_relay r1 "$p1"  # scenario 3 killed it; the tickets stay valid on the same port
timeout 60 "$bin_dir/capi_test" refuse lib.ident "$stcat_key" r1.relay >refuse.out 2>refuse.err &
refuse_pid=$!
background+=("$refuse_pid")
wait_for refuse.err "relay up 127.0.0.1:$p1" 15 || fail "refuse: the library is not listening"
timeout 60 "$stcat" connect "${fast[@]}" --idfile stcat.ident --to lib.friend \
  </dev/null >refuse.stcat_recv 2>refuse.stcat.err
check "refuse: stcat exits 3, refused (got $?)" test "$?" -eq 3
wait "$refuse_pid"
check "refuse: the filter said no once, and accept got nothing (exit $?)" grep -qx "refused 1" refuse.out

# ---- the embedding example (examples/embed/embed.c): its key, then a hello to stcat and back
head -c 32 /dev/urandom >embed.seed
embed_key=$("$bin_dir/strelay-embed" embed.seed) || fail "strelay-embed: no key"
check "the example prints a key" test "${#embed_key}" -eq 43
check "the same seed, the same key" test "$("$bin_dir/strelay-embed" embed.seed)" = "$embed_key"
timeout 60 "$stcat" listen -v "${fast[@]}" --idfile stcat.ident --relay r1.relay \
  --allow "$embed_key" <<<"hi embedded" >embed.stcat_recv 2>embed.stcat.err &
stcat_pid=$!
background+=("$stcat_pid")
wait_for embed.stcat.err "listening on relay 127.0.0.1:$p1" 15 || fail "embed: stcat is not listening"
timeout 60 "$bin_dir/strelay-embed" embed.seed r1.relay stcat.friend >embed.out 2>embed.err
check "strelay-embed exits 0 (got $?)" test "$?" -eq 0
check "strelay-embed printed stcat's answer" grep -qx "hi embedded" embed.out
wait "$stcat_pid"
check "stcat got the hello" grep -qx "hello from $embed_key" embed.stcat_recv
echo "capi_test: $passed checks passed"
