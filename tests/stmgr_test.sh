#!/usr/bin/env bash
# Process-level test of the built stmgr: every command, file modes under umask 000, refused
# overwrites, permission rules, corrupt files, and a QR code decoded back by zbarimg.
# Needs STRELAY_BIN_DIR (CTest sets it); STRELAY_TESTS_DIR for the vectors.
set -uo pipefail

bin_dir=${STRELAY_BIN_DIR:?STRELAY_BIN_DIR must name the directory of the built binaries}
stmgr=$(cd "$bin_dir" && pwd)/stmgr
tests_dir=$(cd "${STRELAY_TESTS_DIR:-$(dirname "$0")}" && pwd)
vectors=$tests_dir/vectors/offset-files.json
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1

passed=0
# assert DESCRIPTION COMMAND...: runs a test command; on failure says what failed and exits 1.
assert() {
  local what=$1
  shift
  if "$@"; then
    passed=$((passed + 1))
  else
    echo "FAILED: $what" >&2
    echo "  command: $*" >&2
    [[ -s out ]] && sed 's/^/  stdout: /' out >&2
    [[ -s err ]] && sed 's/^/  stderr: /' err >&2
    exit 1
  fi
}

# run ARGS...: runs stmgr, keeping stdout in ./out, stderr in ./err and the exit code in $rc.
run() {
  "$stmgr" "$@" >out 2>err
  rc=$?
}

succeeds() { [[ $rc -eq 0 && ! -s err ]]; }
# fails_with PATTERN: a non-zero exit and exactly one line "stmgr: ...PATTERN..." on stderr.
fails_with() {
  [[ $rc -ne 0 && $(wc -l <err) -eq 1 ]] && head -c 7 err | grep -q '^stmgr: ' &&
    grep -qF -- "$1" err
}
mode_of() { stat -c %a "$1"; }
# vector JSONPATH: prints a string from the vectors file (no trailing newline).
vector() { python3 -c "import json,sys; v=json.load(open(sys.argv[1])); print(eval('v'+sys.argv[2]), end='')" "$vectors" "$1"; }

# ---------------------------------------------------------------- help and version
run --version
assert "--version prints the version" grep -qE '^stmgr [0-9]+\.[0-9]+\.[0-9]+$' out
run --help
assert "--help exits 0 with the workflow" grep -q 'stmgr gen-ident --output' out
for cmd in gen-ident relay-ticket friend-ticket pubkey show qr; do
  run "$cmd" --help
  assert "$cmd --help exits 0 with an example" grep -q '^Example' out
done
run
assert "no command is a usage error" fails_with "A subcommand is required"
assert "usage errors exit 2" test "$rc" -eq 2
run gen-ident
assert "a missing required flag is one line" fails_with "--output is required"
run gen-ident -o x --bogus
assert "an unknown flag is refused" fails_with "--bogus"
assert "no file was written on a usage error" test ! -e x
run gen-ident --out x
assert "an unknown flag is named before the missing one, with the flag meant" fails_with "stmgr: unknown option '--out' (did you mean '--output'?) (see stmgr --help)"
assert "an unknown flag exits 2" test "$rc" -eq 2
run relay-ticket --adress a.org:1 -i x -o y
assert "a misspelt flag gets a suggestion" fails_with "unknown option '--adress' (did you mean '--address'?)"

# ---------------------------------------------------------------- gen-ident and pubkey
(umask 000 && "$stmgr" gen-ident --output new/deeper/relay.ident >out 2>err)
rc=$?
assert "gen-ident succeeds under umask 000" succeeds
assert "Mode 0600 even under umask 000: the identity is 0600" test "$(mode_of new/deeper/relay.ident)" = 600
assert "a created directory is 0700" test "$(mode_of new)" = 700
assert "a created nested directory is 0700" test "$(mode_of new/deeper)" = 700
assert "gen-ident prints a 43-character base64url key" grep -qE '^[A-Za-z0-9_-]{43}$' out
key=$(cat out)
run pubkey -i new/deeper/relay.ident
assert "pubkey prints the key gen-ident printed" test "$(cat out)" = "$key"
assert "the identity file never holds the public key alone" grep -q '"privateKey"' new/deeper/relay.ident

cp new/deeper/relay.ident before.ident
run gen-ident -o new/deeper/relay.ident
assert "No clobbering without --force: gen-ident refuses to overwrite" fails_with "already exists"
assert "No clobbering without --force: the old file stays byte-identical" cmp -s before.ident new/deeper/relay.ident
assert "a refused overwrite leaves no temporary file" test "$(ls -A new/deeper | wc -l)" -eq 1
run gen-ident -o new/deeper/relay.ident --force
assert "gen-ident --force replaces" succeeds
assert "the replaced identity is a new one" test "$(cat out)" != "$key"
assert "the replaced identity is still 0600" test "$(mode_of new/deeper/relay.ident)" = 600
run pubkey --idfile new/deeper/relay.ident
assert "pubkey follows the replacement" test "$(cat out)" != "$key"

# ---------------------------------------------------------------- relay-ticket
"$stmgr" gen-ident -o relay.ident >key.txt 2>err
key=$(cat key.txt)
(umask 000 && "$stmgr" relay-ticket -i relay.ident -a 127.0.0.1:4567 -o relay.relay >out 2>err)
rc=$?
assert "relay-ticket succeeds" succeeds
assert "a ticket is 0644 whatever the umask" test "$(mode_of relay.relay)" = 644
printf '{\n  "publicKey": "%s",\n  "address": "127.0.0.1:4567"\n}' "$key" >expected.relay
assert "the ticket is Offset's exact layout, with its identity's key" cmp -s expected.relay relay.relay

vector "['identities'][0]['identity_file']" >vector.ident
chmod 600 vector.ident
vector "['identities'][0]['relay_ticket_for_address_127.0.0.1:4567']" >vector.expected
run relay-ticket --idfile vector.ident --address 127.0.0.1:4567 --output vector.relay
assert "a ticket from the vector identity is the vector ticket, byte for byte" cmp -s vector.expected vector.relay
run pubkey -i vector.ident
assert "pubkey of the vector identity is the vector key" \
  test "$(cat out)" = "$(vector "['identities'][0]['public_key']")"

cp relay.relay before.relay
run relay-ticket -i vector.ident -a 127.0.0.1:4567 -o relay.relay
assert "relay-ticket refuses to overwrite" fails_with "already exists"
assert "the refused ticket is byte-identical" cmp -s before.relay relay.relay
run relay-ticket -i vector.ident -a 127.0.0.1:4567 -o relay.relay --force
assert "relay-ticket --force replaces" cmp -s vector.expected relay.relay
run relay-ticket -i relay.ident -a 127.0.0.1:4567 -o relay.relay --force
run relay-ticket -i relay.ident -a '[::1]:4567' -o v6.relay
assert "an IPv6 address is accepted" grep -qF '"address": "[::1]:4567"' v6.relay
run relay-ticket -i relay.ident -a relay.example.org:65535 -o name.relay
assert "a DNS name and port 65535 are accepted" succeeds

cp relay.ident keep.ident
run relay-ticket -i relay.ident -a 127.0.0.1:4567 -o relay.ident --force
assert "a ticket is never written over its own identity" fails_with "is also an input file"
assert "the identity survived" cmp -s keep.ident relay.ident

label=$(printf 'a%.0s' $(seq 1 62))
max_name="$label.$label.$label.$label:4567"   # 256 bytes, the most an address may have
run relay-ticket -i relay.ident -a "$max_name" -o max.relay
assert "an address of exactly 256 bytes is accepted" test "$rc" -eq 0 -a "${#max_name}" -eq 256
run show max.relay
assert "a 256-byte address loads back" grep -qxF "address: $max_name" out
long=$(printf 'a%.0s' $(seq 1 247)).org:4567   # 256 bytes too, but a 247-byte DNS label
for bad in "127.0.0.1:65536|port 65536 is out of range 1..65535" \
  "127.0.0.1:0|port 0 is out of range 1..65535" \
  "127.0.0.1:80abc|port \"80abc\" is not a decimal number" \
  "127.0.0.1:+80|is not a decimal number" \
  "relay.example.org|missing :port" \
  "::1:4567|must be written in brackets" \
  "$long|label of 247 bytes" \
  "$(printf 'a%.0s' $(seq 1 252)).org:4567|address is 261 bytes, longer than the 256 allowed" \
  "0.0.0.0:4567|listen-on-all address" \
  "https://relay.example.org:4567|give host:port without the scheme \"https://\", e.g. relay.example.org:4567"; do
  run relay-ticket -i relay.ident -a "${bad%%|*}" -o bad.relay
  assert "Out-of-range numbers on the command line are refused, never wrapped: address ${bad:0:40}" fails_with "${bad#*|}"
  assert "a bad --address is a usage error (exit 2): ${bad:0:40}" test "$rc" -eq 2
  assert "no ticket is written for ${bad:0:40}" test ! -e bad.relay
done

# ---------------------------------------------------------------- friend-ticket
"$stmgr" gen-ident -o node.ident >/dev/null
run friend-ticket -i node.ident --relay relay.relay --relay name.relay -o node.friend
assert "friend-ticket succeeds" succeeds
assert "a friend ticket is 0644" test "$(mode_of node.friend)" = 644
run show node.friend
assert "show names a friend ticket" grep -qx 'kind: friend ticket' out
assert "show lists the first relay" grep -qx "relay 1: 127.0.0.1:4567 $key" out
assert "show lists the second relay" grep -q '^relay 2: relay.example.org:65535 ' out
run friend-ticket -i node.ident -o x.friend
assert "friend-ticket needs a --relay" fails_with "--relay is required"
run friend-ticket -i node.ident --relay relay.relay --relay relay.relay -o x.friend
assert "a relay given twice is refused" fails_with "names a relay already given"
run friend-ticket -i node.ident --relay node.ident -o x.friend
assert "an identity is not a relay ticket" fails_with "node.ident: is an identity file, not a relay ticket"
run friend-ticket -i node.ident --relay missing.relay -o x.friend
assert "a missing relay ticket is named" fails_with "missing.relay: No such file or directory"
assert "no friend ticket is written on failure" test ! -e x.friend

# ---------------------------------------------------------------- show
run show relay.ident
assert "show names an identity" grep -qx 'kind: identity' out
assert "show prints an identity's public key" grep -qx "public key: $key" out
seed=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['privateKey'])" relay.ident)
assert "show never prints the private key" bash -c "! grep -qF -- '$seed' out err"
run show relay.relay
assert "show names a relay ticket" grep -qx 'kind: relay ticket' out
assert "show prints the ticket's address" grep -qx 'address: 127.0.0.1:4567' out

printf 'publicKey=abc' >corrupt.relay
printf '{\n  "publicKey": "%s",\n  "address": "127.0.0.1:4567"\n' "$key" >truncated.relay
printf '{"publicKey": "%s", "address": "a.org:1", "extra": 1}' "$key" >extra.relay
printf '' >empty.relay
vector "['invalid_tickets'][2]['ticket_file']" >short-key.relay
vector "['invalid_tickets'][5]['ticket_file']" >small-order.relay
vector "['invalid_identities'][0]['identity_file']" >old.ident
chmod 600 old.ident
mkdir adir
for bad in "corrupt.relay|not valid JSON (syntax error at line 1, column 1)" \
  "truncated.relay|not valid JSON" \
  "extra.relay|unknown field \"extra\"" \
  "empty.relay|is empty" \
  "short-key.relay|\"publicKey\" is 42 characters (31 bytes), expected 43 (a base64url Ed25519 public key)" \
  "small-order.relay|small-order point" \
  "old.ident|old Offset <= 0.1.10 identity format" \
  "adir|is not a regular file" \
  "missing.relay|No such file or directory"; do
  run show "${bad%%|*}"
  assert "Corrupt key files and tickets each get one precise error: show refuses ${bad%%|*} in one line" fails_with "${bad#*|}"
  assert "show names the file ${bad%%|*}" grep -qF "${bad%%|*}" err
  assert "show prints nothing on stdout for ${bad%%|*}" test ! -s out
done

# ---------------------------------------------------------------- the wrong kind of file
# Every reader names the kind it was given, and never suggests chmod for a ticket.
for case in "relay-ticket -a a.org:1 -o w.relay -i relay.relay|relay.relay: is a relay ticket, not an identity file" \
  "relay-ticket -a a.org:1 -o w.relay -i node.friend|node.friend: is a friend ticket, not an identity file" \
  "pubkey -i relay.relay|relay.relay: is a relay ticket, not an identity file" \
  "friend-ticket -i node.ident -o w.friend -r node.friend|node.friend: is a friend ticket, not a relay ticket"; do
  read -ra words <<<"${case%%|*}"
  run "${words[@]}"
  assert "${case%%|*}: the kind is named" fails_with "${case#*|}"
  assert "${case%%|*}: no chmod advice" bash -c "! grep -q chmod err"
done

run show "$(printf 'no\033]0;title\007such')"
assert "a path with control bytes is escaped in the message" fails_with 'no\x1b]0;title\x07such: No such file or directory'
# ---------------------------------------------------------------- -o - and --force
run relay-ticket -i relay.ident -a 127.0.0.1:4567 -o -
assert "relay-ticket -o - writes the ticket to stdout" cmp -s out relay.relay
assert "relay-ticket -o - writes no file named -" test ! -e -
# /dev/stdout is -o -. (Never with --force here: a regression must not replace the real link.)
run relay-ticket -i relay.ident -a 127.0.0.1:4567 -o /dev/stdout
assert "relay-ticket -o /dev/stdout writes to stdout" cmp -s out relay.relay
run gen-ident -o /dev/stdout
assert "gen-ident -o /dev/stdout is refused like -o -" fails_with "never written to standard output"
run friend-ticket -i node.ident -r relay.relay -o -
assert "friend-ticket -o - writes the ticket to stdout" grep -q '"relays"' out
run gen-ident -o -
assert "gen-ident -o - is refused: an identity never goes to stdout" fails_with "--output: an identity holds a private key and is never written to standard output; give a file name"
assert "gen-ident -o - is a usage error (exit 2)" test "$rc" -eq 2
assert "gen-ident -o - prints no key" test ! -s out
printf 'precious' >victim
ln -s victim out-link.ident
mkfifo pipe.ident
for target in "out-link.ident|is a symbolic link" "pipe.ident|is a FIFO" "adir|is a directory"; do
  for force in "" --force; do
    run gen-ident -o "${target%%|*}" $force
    assert "gen-ident $force refuses ${target%%|*}" fails_with "${target%%|*}: ${target#*|}; only a regular file is ever replaced"
    assert "no --force hint where --force would not work (${target%%|*})" bash -c "! grep -q -- '--force replaces' err"
  done
done
assert "the symlink is still a symlink" test -L out-link.ident
assert "the FIFO is still a FIFO" test -p pipe.ident
assert "the symlink's target is untouched" test "$(cat victim)" = precious
run relay-ticket -i relay.ident -a 127.0.0.1:4567 -o out-link.ident --force
assert "relay-ticket --force refuses a symlink too" fails_with "out-link.ident: is a symbolic link; only a regular file is ever replaced"

# ---------------------------------------------------------------- secret-file permissions
cp relay.ident perm.ident
chmod 640 perm.ident
run pubkey -i perm.ident
assert "A key file readable by group or world is refused (ssh-style): group-readable" \
  fails_with "perm.ident: permissions 0640 are too open; a private key file must not be accessible by others (chmod 600 perm.ident)"
chmod 604 perm.ident
run pubkey -i perm.ident
assert "A key file readable by group or world is refused (ssh-style): world-readable" fails_with "permissions 0604 are too open"
run show perm.ident
assert "show refuses a world-readable key too" fails_with "permissions 0604 are too open"
run relay-ticket -i perm.ident -a 127.0.0.1:1 -o perm.relay
assert "relay-ticket refuses a world-readable key" fails_with "permissions 0604 are too open"
chmod 600 perm.ident
ln -s perm.ident link.ident
run pubkey -i link.ident
assert "A symlinked key file is refused" fails_with "link.ident: is a symbolic link"
if [[ $(id -u) -eq 0 ]]; then
  cp relay.ident other.ident
  chown 65534 other.ident
  run pubkey -i other.ident
  # The packaged service's identity belongs to its user; root uses it as it is (issue 20.5).
  assert "root reads a private (0600) key file of another user" succeeds
  chmod 644 other.ident
  run pubkey -i other.ident
  assert "root is refused another user's key file that others may read" fails_with "permissions 0644 are too open"
  chmod 755 "$tmp"
  setpriv --reuid=65533 --regid=65533 --clear-groups "$stmgr" pubkey -i other.ident >out 2>err
  rc=$?
  chmod 700 "$tmp"
  assert "A key file owned by another user is refused" fails_with "owned by uid 65534, not by the current user (uid 65533)"
fi

# ---------------------------------------------------------------- a kill during a key write
# strace's fault injection kills stmgr (SIGKILL) at the Nth call of each system call a key write
# makes (open, chmod, write, fsync, rename), for every N until the write completes: each time
# the key file is the old one, byte for byte, or a whole new one that loads; never torn.
if strace -f -o /dev/null true 2>/dev/null; then
  "$stmgr" gen-ident -o kill.ident >/dev/null 2>&1
  cp kill.ident kill-old.ident
  kills=0
  for call in openat fchmod write fsync rename; do
    for n in $(seq 1 60); do
      cp -p kill-old.ident kill.ident
      # (in a subshell, so the shell's "Killed" notice goes to /dev/null too)
      (strace -f -o /dev/null -e trace="$call" -e inject="$call":signal=KILL:when="$n" \
        "$stmgr" gen-ident --force -o kill.ident >out 2>err; exit $?) 2>/dev/null
      rc=$?
      [[ $rc -eq 0 ]] && break  # fewer than n such calls: the write completed
      kills=$((kills + 1))
      if ! cmp -s kill-old.ident kill.ident; then
        "$stmgr" pubkey -i kill.ident >/dev/null 2>&1
        assert "A kill at any step of a key write leaves the old key or the new key ($call #$n)" test $? -eq 0
      fi
    done
  done
  assert "A kill at any step of a key write: stmgr was killed at some step" test "$kills" -gt 3
  echo "stmgr_test: killed a key write at $kills steps; the key was never torn"
else
  echo "stmgr_test: SKIPPED the kill-during-write case: strace cannot trace here (ptrace refused)"
fi

# ---------------------------------------------------------------- qr
run qr relay.relay --png relay.png --svg relay.svg
assert "qr succeeds" succeeds
assert "qr draws the code in the terminal" grep -q '█' out
assert "qr without a terminal uses no escape codes" bash -c "! grep -q $'\x1b' out"
assert "qr writes an SVG" grep -q '<path fill="#000000"' relay.svg
cp relay.relay expected.qr && printf '\n' >>expected.qr   # zbarimg ends each symbol with \n
zbarimg --raw -q relay.png >decoded.qr 2>/dev/null
assert "zbarimg decodes the PNG to exactly the ticket text" cmp -s expected.qr decoded.qr
run qr relay.relay --colors always
assert "qr --colors always uses ANSI colours" grep -q $'\x1b\\[30;107m' out
run qr relay.relay --colors sometimes
assert "qr refuses an unknown colour mode" fails_with "--colors"

printf '{"address":"127.0.0.1:4567","publicKey":"%s"}\n' "$key" >compact.relay
run qr compact.relay --png compact.png
zbarimg --raw -q compact.png >decoded.qr 2>/dev/null
assert "a hand-edited ticket is encoded in the canonical layout" cmp -s expected.qr decoded.qr

run qr node.friend --png node.png
cp node.friend expected.qr && printf '\n' >>expected.qr
zbarimg --raw -q node.png >decoded.qr 2>/dev/null
assert "a friend ticket's QR code decodes to the friend ticket" cmp -s expected.qr decoded.qr

relay_flags=()
for i in $(seq 1 17); do
  "$stmgr" relay-ticket -i relay.ident -a "r$i.$label.$label.example:4567" -o "big$i.relay"
  relay_flags+=(--relay "big$i.relay")
done
run friend-ticket -i node.ident "${relay_flags[@]}" -o big.friend
assert "a friend ticket of 17 relays is refused" fails_with "17 relays given; a friend ticket names 1 to 16"
run friend-ticket -i node.ident "${relay_flags[@]:0:32}" -o big.friend
assert "a friend ticket of 16 relays is written" succeeds
run qr big.friend --png big.png
assert "a ticket too long for a QR code is refused, naming the file" \
  fails_with "big.friend: the text is"
assert "no image is written for it" test ! -e big.png

cp relay.png before.png
run qr name.relay --png relay.png
assert "qr refuses to overwrite an image" fails_with "already exists"
assert "the refused image is byte-identical" cmp -s before.png relay.png
run qr name.relay --png relay.png --force
assert "qr --force replaces an image" bash -c "! cmp -s before.png relay.png"

run qr relay.ident --png secret.png
assert "qr refuses an identity file" fails_with "is an identity file; it holds a private key"
assert "no image of an identity is written" test ! -e secret.png
assert "qr of an identity prints nothing" test ! -s out
run qr relay.relay --png relay.relay --force
assert "qr never writes an image over its ticket" fails_with "is also an input file"
assert "the ticket survived" cmp -s "$tmp/relay.relay" relay.relay
run qr corrupt.relay
assert "qr refuses a corrupt ticket" fails_with "corrupt.relay: not valid JSON"

echo "stmgr_test: $passed passed, 0 failed"
