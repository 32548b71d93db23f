# The demos' shared set-up, sourced by demo-local.sh and demo-failover.sh (not run alone).
# The caller sets $demo (its name, for messages) and $here (its folder) first.

# Finds stmgr, strelay and stcat: $STRELAY_BIN_DIR, else build/bin in this repository, else
# PATH; sets $stmgr, $strelay and $stcat, or exits 2 naming the one that is missing.
find_programs() {
  local bin=${STRELAY_BIN_DIR:-} program path
  if [[ -z $bin && -x $here/../build/bin/strelay ]]; then bin=$here/../build/bin; fi
  for program in stmgr strelay stcat; do
    if [[ -n $bin ]]; then path=$bin/$program; else path=$(command -v "$program" || true); fi
    if [[ ! -x $path ]]; then
      echo "$demo: $program not found (build first, or set STRELAY_BIN_DIR)" >&2
      exit 2
    fi
    printf -v "$program" '%s' "$path"
  done
}

say() { printf '\n== %s\n' "$*"; }

# wait_for FILE PATTERN SECONDS [COUNT]: waits until FILE has at least COUNT (default 1) lines
# matching PATTERN; on time-out shows the file and returns 1.
wait_for() {
  local want=${4:-1} i
  for ((i = 0; i < $3 * 10; i++)); do
    if (($(grep -c -- "$2" "$1" 2>/dev/null || true) >= want)); then return 0; fi
    sleep 0.1
  done
  echo "$demo: timed out waiting for '$2' in $1:" >&2
  cat "$1" >&2 || true
  return 1
}
