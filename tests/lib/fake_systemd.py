#!/usr/bin/env python3
"""Socket activation as systemd does it, for tests/operations_test.sh.

usage: fake_systemd.py PORT_FILE COMMAND...

Binds a listening TCP socket on 127.0.0.1 (a free port, written to PORT_FILE), and runs
COMMAND with the socket as descriptor 3 and LISTEN_FDS=1, LISTEN_PID=<its pid>,
LISTEN_FDNAMES=strelay.socket, as systemd passes a .socket unit's sockets. The socket stays
open here across restarts:
  SIGUSR1  restart: SIGTERM the command, wait for it, pause 1 s (connections meanwhile wait in
           the socket's queue), start it again; the exit code of each run is printed to stdout
  SIGTERM  SIGTERM the command, wait for it, exit
"""
import os
import signal
import socket
import subprocess
import sys
import time

port_file, command = sys.argv[1], sys.argv[2:]
listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", 0))
listener.listen(128)


def start():
    # LISTEN_PID must be the command's own pid: sh sets it to $$, then execs (same pid).
    fd = listener.fileno()

    def as_fd_3():  # in the child, before the exec; 3 is kept open (pass_fds)
        if fd != 3:
            os.dup2(fd, 3)

    shell = 'LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=strelay.socket exec "$@"'
    return subprocess.Popen(["/bin/sh", "-c", shell, "sh"] + command,
                            pass_fds=(3,) if fd == 3 else (3, fd), preexec_fn=as_fd_3)


def stop(child):
    child.send_signal(signal.SIGTERM)
    code = child.wait()
    print("exit", code, flush=True)


child = start()
restart = False
done = False


def on_usr1(*_):
    global restart
    restart = True


def on_term(*_):
    global done
    done = True


signal.signal(signal.SIGUSR1, on_usr1)
signal.signal(signal.SIGTERM, on_term)
with open(port_file + ".tmp", "w") as f:
    f.write(str(listener.getsockname()[1]))
os.rename(port_file + ".tmp", port_file)
while not done:
    if restart:
        restart = False
        stop(child)
        time.sleep(1)
        child = start()
        print("restarted", flush=True)
    time.sleep(0.05)
stop(child)
