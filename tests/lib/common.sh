# Shared by the process-level tests (tests/*_test.sh), which source it.

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

wait_for() {  # file pattern seconds: until the file holds the pattern, or fail with the file
  for ((i = 0; i < $3 * 10; i++)); do
    grep -q -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  cat "$1" >&2 || true
  fail "timed out waiting for '$2' in $1"
}
