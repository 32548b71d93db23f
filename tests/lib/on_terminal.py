#!/usr/bin/env python3
"""Runs a command on a real pseudo-terminal and saves what it wrote there.

  on_terminal.py OUTPUT SECONDS [--until TEXT] -- COMMAND...

Collects the terminal's output until the command exits, or, with --until, until TEXT has
appeared (then a moment more) and the command is sent SIGTERM. Fails when SECONDS pass first.
Exits with the command's status (0 after a SIGTERM it asked for)."""
import os, pty, select, signal, sys, time

out, seconds, args = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
until = None
if args[0] == "--until":
    until, args = args[1].encode(), args[2:]
if args[0] == "--":
    args = args[1:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(args[0], args)
seen = b""
status = None
stop_at = None
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    if select.select([fd], [], [], 0.1)[0]:
        try:
            seen += os.read(fd, 65536)
        except OSError:  # the command exited and closed the terminal
            pass
    if until is not None and stop_at is None and until in seen:
        stop_at = time.monotonic() + 0.5  # the rest of what it writes at once
    if stop_at is not None and time.monotonic() >= stop_at:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
        status = 0
        break
    done, wait_status = os.waitpid(pid, os.WNOHANG)
    if done:
        status = os.waitstatus_to_exitcode(wait_status)
        while select.select([fd], [], [], 0.1)[0]:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        break
open(out, "wb").write(seen)
if status is None:
    os.kill(pid, signal.SIGKILL)
    sys.exit(f"on_terminal: {args[0]} did not finish within {seconds} s")
sys.exit(status)
