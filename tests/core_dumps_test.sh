#!/usr/bin/env bash
# Process-level test: no strelay program that holds secrets can leave a core dump
# (common/keys.hpp, disable_core_dumps; docs/protocol.md section 6).
#
#   1. strelay and stcat listen (long-running), each as a real process:
#      - /proc/PID/limits shows a core file size of 0, soft and hard;
#      - with its core limit raised again from outside (prlimit, as root can), a SIGQUIT, whose
#        default action is to dump core, leaves no core: the process is not dumpable. A
#        positive control (sleep, under the same treatment) must dump, or this part is skipped
#        with a message (a system that writes no core dumps at all proves nothing).
#   2. stmgr (short-lived: gen-ident holds a seed) under strace: it sets RLIMIT_CORE to 0/0 and
#      PR_SET_DUMPABLE to 0 before it opens any file.
#
# Needs STRELAY_BIN_DIR (CTest sets it), python3 and strace (scripts/install-deps).
set -uo pipefail

bin_dir=$(cd "${STRELAY_BIN_DIR:?STRELAY_BIN_DIR must name the directory of the built binaries}" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1

"$bin_dir/stmgr" gen-ident --output relay.ident >/dev/null || { echo "FAILED: gen-ident" >&2; exit 1; }
"$bin_dir/stmgr" gen-ident --output node.ident >/dev/null || { echo "FAILED: gen-ident" >&2; exit 1; }
node_key=$("$bin_dir/stmgr" pubkey --idfile node.ident)
# A ticket for a port where nothing listens: stcat listen retries it until killed.
"$bin_dir/stmgr" relay-ticket --address 127.0.0.1:9 --idfile relay.ident --output nowhere.relay ||
  { echo "FAILED: relay-ticket" >&2; exit 1; }

# ---------------------------------------------------------------- 1. long-running programs
python3 - "$bin_dir" "$node_key" <<'EOF' || exit 1
import os, resource, signal, subprocess, sys, time

bin_dir, node_key = sys.argv[1], sys.argv[2]
INF = resource.RLIM_INFINITY
failed = []


def start(name, argv):
    os.makedirs(name, exist_ok=True)
    # Started with an unlimited core limit, so that only the program itself can lower it.
    return subprocess.Popen(argv, cwd=name, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=open(f"{name}.err", "wb"),
                            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_CORE, (INF, INF)))


def core_limit(pid):
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max core file size"):
                return line.split()[4:6]  # soft, hard
    return None


def dumps_core(process, name):
    """Raises the core limit from outside, sends SIGQUIT, and tells whether a core was dumped.
    None when the limit cannot be raised: the kernel refuses prlimit on a process of the same
    user only when that process is not dumpable (and we lack CAP_SYS_PTRACE)."""
    try:
        resource.prlimit(process.pid, resource.RLIMIT_CORE, (INF, INF))
    except PermissionError:
        process.kill()
        process.wait()
        return None
    process.send_signal(signal.SIGQUIT)
    _, status = os.waitpid(process.pid, 0)
    process.returncode = 0  # reaped here; keep Popen from waiting again
    files = [f for f in os.listdir(name) if f.startswith("core")]
    return os.WCOREDUMP(status) or bool(files)


# The positive control: an ordinary process of ours, treated the same way, must dump (and
# prlimit on it must work), or this system cannot show what the checks below look for.
control = start("control", ["sleep", "60"])
time.sleep(0.2)
system_dumps = dumps_core(control, "control")
if system_dumps is None:
    failed.append("prlimit on our own dumpable process was refused: cannot check")
if not system_dumps:
    print("core_dumps_test: this system writes no core dumps (core_pattern "
          f"{open('/proc/sys/kernel/core_pattern').read().strip()!r}); the SIGQUIT checks are skipped")

programs = {
    "strelay": [f"{bin_dir}/strelay", "--idfile", "../relay.ident", "--laddr", "127.0.0.1:0"],
    "stcat": [f"{bin_dir}/stcat", "listen", "--idfile", "../node.ident", "--relay",
              "../nowhere.relay", "--allow", node_key],
}
for name, argv in programs.items():
    process = start(name, argv)
    deadline = time.monotonic() + 10
    limit = None
    while time.monotonic() < deadline and process.poll() is None:
        limit = core_limit(process.pid)
        if limit == ["0", "0"]:
            break
        time.sleep(0.05)
    if process.poll() is not None:
        failed.append(f"{name} exited with {process.returncode}: {open(name + '.err').read()}")
        continue
    if limit != ["0", "0"]:
        failed.append(f"{name}: core file size (soft, hard) is {limit}, not 0, 0")
        process.kill()
        process.wait()
        continue
    print(f"core_dumps_test: {name}: core file size {limit}")
    if system_dumps:
        dumped = dumps_core(process, name)
        if dumped is None:
            print(f"core_dumps_test: {name}: prlimit refused, which the control allowed (not dumpable)")
        elif dumped:
            failed.append(f"{name} dumped core after its limit was raised: it is dumpable")
        else:
            print(f"core_dumps_test: {name}: no core on SIGQUIT with the limit raised (not dumpable)")
    else:
        process.kill()
        process.wait()

if failed:
    for f in failed:
        print("FAILED:", f, file=sys.stderr)
    sys.exit(1)
EOF

# ---------------------------------------------------------------- 2. stmgr, under strace
# LeakSanitizer cannot run under ptrace (the asan stage): leaks are checked everywhere else.
ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 \
  strace -f -qq -e trace=prctl,prlimit64,setrlimit,openat -o stmgr.trace \
  "$bin_dir/stmgr" gen-ident --output new.ident >/dev/null 2>stmgr.err ||
  { echo "FAILED: stmgr under strace: $(cat stmgr.err)" >&2; exit 1; }
core_line=$(grep -n 'RLIMIT_CORE, {rlim_cur=0, rlim_max=0}' stmgr.trace | head -n 1 | cut -d: -f1)
dumpable_line=$(grep -En 'prctl\(PR_SET_DUMPABLE, (0|SUID_DUMP_DISABLE)\)' stmgr.trace | head -n 1 |
  cut -d: -f1)
ident_line=$(grep -n 'new\.ident' stmgr.trace | head -n 1 | cut -d: -f1)
if [[ -z $core_line || -z $dumpable_line || -z $ident_line ]]; then
  echo "FAILED: stmgr: RLIMIT_CORE line '${core_line}', PR_SET_DUMPABLE line '${dumpable_line}'," \
    "identity file line '${ident_line}' in its trace:" >&2
  cat stmgr.trace >&2
  exit 1
fi
if ((core_line > ident_line || dumpable_line > ident_line)); then
  echo "FAILED: stmgr opened its identity file before disabling core dumps" >&2
  exit 1
fi
echo "core_dumps_test: stmgr sets RLIMIT_CORE 0/0 and PR_SET_DUMPABLE 0 before writing a seed"
echo "core_dumps_test: passed"
