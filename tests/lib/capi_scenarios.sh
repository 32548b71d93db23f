# shellcheck shell=bash
# The end-to-end scenarios of libstrelay against stcat, shared by capi_test.sh (the C program
# tests/capi_test.c) and capi_python_test.sh (tests/capi_test.py through ctypes). The caller
# sources checks.sh, sets `peer` to the command that takes the library node's arguments
# (listen IDFILE KEY SEND RECV RELAY... | connect IDFILE FRIEND SEND RECV [RELAY...]) and
# calls capi_scenarios. Every stream is checked byte-exact both ways (SHA-256 of files of
# $CAPI_TEST_KIB KiB of random bytes):
#
#   1. the library listens, stcat connects
#   2. stcat listens, the library connects (with stcat's friend ticket)
#   3. failover, listening: the library listens on two relays, the first is killed, stcat
#      connects with the library's two-relay friend ticket and gets through the second
#   4. failover, connecting: (the first relay still dead) the library connects with stcat's
#      two-relay friend ticket: the first relay fails, the second carries the stream

fast=(--backoff-initial 0.2 --backoff-cap 2 --connect-timeout 2)
same() { cmp -s "$1" "$2"; }

# lib_listen NAME RELAY...: the library node listens in the background for stcat's key.
lib_listen() {
  local name=$1
  shift
  timeout 180 "${peer[@]}" listen lib.ident "$stcat_key" "$name.lib_send" "$name.lib_recv" "$@" \
    2>"$name.lib.err" &
  lib_pid=$!
  background+=("$lib_pid")
}
# finish_lib: waits (60 s at most) for the background library node; its exit code in $rc.
finish_lib() { await_exit "$lib_pid" 60; }
make_data() {  # NAME: NAME.lib_send and NAME.stcat_send, different random bytes
  head -c "$((kib * 1024))" /dev/urandom >"$1.lib_send"
  head -c "$((kib * 1024 + 17))" /dev/urandom >"$1.stcat_send"
}
check_bytes() {  # NAME: both directions byte-exact
  check "$1: stcat received the library's bytes" same "$1.lib_send" "$1.stcat_recv"
  check "$1: the library received stcat's bytes" same "$1.stcat_send" "$1.lib_recv"
}

capi_scenarios() {
  kib=${CAPI_TEST_KIB:-2048}
  "$stmgr" gen-ident --output lib.ident >/dev/null || fail "gen-ident lib"
  "$stmgr" gen-ident --output stcat.ident >/dev/null || fail "gen-ident stcat"
  stcat_key=$("$stmgr" pubkey --idfile stcat.ident)
  lib_key=$("$stmgr" pubkey --idfile lib.ident)
  start_relay r1
  start_relay r2
  p1=${relay_port[r1]}
  p2=${relay_port[r2]}
  for node in lib stcat; do
    "$stmgr" friend-ticket --idfile "$node.ident" --relay r1.relay --output "$node.friend" ||
      fail "friend-ticket"
    "$stmgr" friend-ticket --idfile "$node.ident" --relay r1.relay --relay r2.relay \
      --output "$node-12.friend" || fail "friend-ticket"
  done

  # ---- 1. the library listens, stcat connects
  make_data s1
  lib_listen s1 r1.relay
  wait_for s1.lib.err "relay up 127.0.0.1:$p1" 15 || fail "s1: the library is not listening on r1"
  timeout 120 "$stcat" connect "${fast[@]}" --idfile stcat.ident --to lib.friend \
    <s1.stcat_send >s1.stcat_recv 2>s1.stcat.err
  check "s1: stcat connect exits 0 (got $?)" test "$?" -eq 0
  finish_lib
  check "s1: the library node exits 0 (got $rc)" test "$rc" -eq 0
  check_bytes s1
  check "s1: the library saw a clean end" grep -q "done: STRELAY_OK" s1.lib.err

  # ---- 2. stcat listens, the library connects
  make_data s2
  timeout 120 "$stcat" listen -v "${fast[@]}" --idfile stcat.ident --relay r1.relay \
    --allow "$lib_key" <s2.stcat_send >s2.stcat_recv 2>s2.stcat.err &
  stcat_pid=$!
  background+=("$stcat_pid")
  wait_for s2.stcat.err "listening on relay 127.0.0.1:$p1" 15 || fail "s2: stcat is not listening"
  timeout 120 "${peer[@]}" connect lib.ident stcat.friend s2.lib_send s2.lib_recv 2>s2.lib.err
  check "s2: the library node exits 0 (got $?)" test "$?" -eq 0
  wait "$stcat_pid"
  check "s2: stcat listen exits 0 (got $?)" test "$?" -eq 0
  check_bytes s2

  # ---- 3. failover, listening
  make_data s3
  lib_listen s3 r1.relay r2.relay
  wait_for s3.lib.err "relay up 127.0.0.1:$p1" 15 || fail "s3: the library is not on r1"
  wait_for s3.lib.err "relay up 127.0.0.1:$p2" 15 || fail "s3: the library is not on r2"
  kill -KILL "${relay_pid[r1]}"
  wait "${relay_pid[r1]}" 2>/dev/null
  timeout 120 "$stcat" connect -v "${fast[@]}" --idfile stcat.ident --to lib-12.friend \
    <s3.stcat_send >s3.stcat_recv 2>s3.stcat.err
  check "s3: stcat connect exits 0 with the first relay dead (got $?)" test "$?" -eq 0
  check "s3: it went through the second relay" grep -q "via 127.0.0.1:$p2" s3.stcat.err
  finish_lib
  check "s3: the library node exits 0 (got $rc)" test "$rc" -eq 0
  check_bytes s3

  # ---- 4. failover, connecting
  make_data s4
  timeout 120 "$stcat" listen -v "${fast[@]}" --idfile stcat.ident --relay r1.relay \
    --relay r2.relay --allow "$lib_key" <s4.stcat_send >s4.stcat_recv 2>s4.stcat.err &
  stcat_pid=$!
  background+=("$stcat_pid")
  wait_for s4.stcat.err "listening on relay 127.0.0.1:$p2" 15 || fail "s4: stcat is not on r2"
  timeout 120 "${peer[@]}" connect lib.ident stcat-12.friend s4.lib_send s4.lib_recv 2>s4.lib.err
  check "s4: the library connects with the first relay dead (got $?)" test "$?" -eq 0
  check "s4: the first relay failed" grep -q "connect via 127.0.0.1:$p1 failed: STRELAY_UNREACHABLE" s4.lib.err
  check "s4: the second relay carried it" grep -q "connected via 127.0.0.1:$p2" s4.lib.err
  wait "$stcat_pid"
  check "s4: stcat listen exits 0 (got $?)" test "$?" -eq 0
  check_bytes s4
}
