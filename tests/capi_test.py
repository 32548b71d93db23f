#!/usr/bin/env python3
"""libstrelay from Python through ctypes (Debian's python3, no module beyond the standard
library): tests/capi_python_test.sh runs it against stcat through a real relay.

  capi_test.py LIBRARY listen IDFILE ALLOW_KEY SEND RECV RELAY...
  capi_test.py LIBRARY connect IDFILE FRIEND SEND RECV [RELAY...]

Sends the file SEND, then the end of data; writes the peer's bytes to RECV until its end of
data; closes. Events go to stderr ("capi.py: connected via ..."). Exit 0 after a clean end,
3 otherwise, 1 on an error, 2 on usage."""
import ctypes
import os
import sys
import time

OK, AGAIN, CLOSED = 0, -1, -4
READABLE, WRITABLE, ENDED = 1, 2, 4
EVENT_RELAY_UP, EVENT_CONNECT_FAILED, EVENT_PEER_CONNECTED = 1, 4, 5


class Options(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32), ("log_level", ctypes.c_int32),
                ("backoff_initial", ctypes.c_double), ("backoff_cap", ctypes.c_double),
                ("connect_timeout", ctypes.c_double), ("keepalive_interval", ctypes.c_double),
                ("dead_peer_timeout", ctypes.c_double)]


class Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("status", ctypes.c_int),
                ("key", ctypes.POINTER(ctypes.c_uint8)), ("address", ctypes.c_char_p),
                ("value_us", ctypes.c_int64), ("stream", ctypes.c_void_p)]


EVENT_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(Event))


def load(path):
    lib = ctypes.CDLL(path)
    P, I, S = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p
    signatures = {
        "strelay_last_error": (S, []), "strelay_status_name": (S, [I]),
        "strelay_version": (S, []),
        "strelay_node_new_from_file": (I, [S, ctypes.POINTER(Options), ctypes.POINTER(P)]),
        "strelay_node_new_from_seed": (I, [ctypes.c_char_p, ctypes.POINTER(Options),
                                           ctypes.POINTER(P)]),
        "strelay_node_free": (None, [P]), "strelay_node_add_relay": (I, [P, S]),
        "strelay_node_add_friend": (I, [P, S]), "strelay_node_listen": (I, [P]),
        "strelay_node_public_key_text": (I, [P, ctypes.c_char_p]),
        "strelay_node_accept": (I, [P, I, ctypes.POINTER(P)]),
        "strelay_node_connect": (I, [P, S, ctypes.POINTER(P)]),
        "strelay_node_set_event_callback": (I, [P, EVENT_FN, P]),
        "strelay_stream_read": (ctypes.c_int64, [P, ctypes.c_void_p, ctypes.c_size_t]),
        "strelay_stream_write": (ctypes.c_int64, [P, ctypes.c_void_p, ctypes.c_size_t]),
        "strelay_stream_shutdown": (I, [P]), "strelay_stream_close": (I, [P, I, S]),
        "strelay_stream_wait": (I, [P, I, I]), "strelay_stream_status": (I, [P]),
        "strelay_stream_free": (None, [P]),
    }
    for name, (restype, argtypes) in signatures.items():
        function = getattr(lib, name)
        function.restype, function.argtypes = restype, argtypes
    return lib


class StrelayError(Exception):
    pass


def check(lib, what, status):
    if status < 0:
        raise StrelayError(f"{what}: {lib.strelay_status_name(status).decode()} "
                           f"({lib.strelay_last_error().decode()})")
    return status


def pump(lib, stream, out, sink):
    """Sends `out` then the end of data; the peer's bytes to `sink` until its end of data."""
    buffer = ctypes.create_string_buffer(65536)
    sent, shut, eof = 0, False, False
    deadline = time.monotonic() + 120
    while not (shut and eof):
        if time.monotonic() > deadline:
            raise StrelayError("no end of data within 120 s")
        while sent < len(out):
            chunk = out[sent:sent + 262144]
            n = lib.strelay_stream_write(stream, chunk, len(chunk))
            if n == AGAIN:
                break
            sent += check(lib, "write", n)
        if sent == len(out) and not shut:
            check(lib, "shutdown", lib.strelay_stream_shutdown(stream))
            shut = True
        while not eof:
            n = lib.strelay_stream_read(stream, buffer, len(buffer))
            if n == AGAIN:
                break
            if check(lib, "read", n) == 0:
                eof = True
            sink.write(buffer.raw[:n])
        want = (0 if eof else READABLE) | (WRITABLE if sent < len(out) else 0)
        if want:
            lib.strelay_stream_wait(stream, want | ENDED, 1000)


def main(argv):
    if len(argv) < 7 or argv[2] not in ("listen", "connect"):
        print(__doc__, file=sys.stderr)
        return 2
    lib = load(argv[1])
    role, idfile, peer, send, recv, relays = argv[2], argv[3], argv[4], argv[5], argv[6], argv[7:]

    @EVENT_FN
    def on_event(_context, event):
        e = event.contents
        address = e.address.decode() if e.address else "?"
        if e.type == EVENT_RELAY_UP:
            print(f"capi.py: relay up {address}", file=sys.stderr, flush=True)
        elif e.type == EVENT_PEER_CONNECTED:
            print(f"capi.py: connected via {address}", file=sys.stderr, flush=True)
        elif e.type == EVENT_CONNECT_FAILED:
            name = lib.strelay_status_name(e.status).decode()
            print(f"capi.py: connect via {address} failed: {name}", file=sys.stderr, flush=True)

    options = Options(ctypes.sizeof(Options), 0, 0.2, 2.0, 2.0, 0, 0)
    node = ctypes.c_void_p()
    check(lib, "identity", lib.strelay_node_new_from_file(idfile.encode(), options,
                                                          ctypes.byref(node)))
    try:
        check(lib, "events", lib.strelay_node_set_event_callback(node, on_event, None))
        key = ctypes.create_string_buffer(44)
        check(lib, "key", lib.strelay_node_public_key_text(node, key))
        print(f"capi.py: libstrelay {lib.strelay_version().decode()}, node {key.value.decode()}",
              file=sys.stderr)
        for path in relays:
            with open(path, "rb") as f:
                check(lib, "relay", lib.strelay_node_add_relay(node, f.read()))
        stream = ctypes.c_void_p()
        if role == "listen":
            check(lib, "friend", lib.strelay_node_add_friend(node, peer.encode()))
            check(lib, "listen", lib.strelay_node_listen(node))
            check(lib, "accept", lib.strelay_node_accept(node, 60000, ctypes.byref(stream)))
        else:
            friend = open(peer, "rb").read() if os.path.exists(peer) else peer.encode()
            check(lib, "connect", lib.strelay_node_connect(node, friend, ctypes.byref(stream)))
        try:
            with open(send, "rb") as f:
                out = f.read()
            with open(recv, "wb") as sink:
                pump(lib, stream, out, sink)
            check(lib, "close", lib.strelay_stream_close(stream, 0, None))
            if not lib.strelay_stream_wait(stream, ENDED, 30000) & ENDED:
                raise StrelayError("close: no end within 30 s")
            status = lib.strelay_stream_status(stream)
            print(f"capi.py: done: {lib.strelay_status_name(status).decode()}", file=sys.stderr)
            return 0 if status == OK else 3
        finally:
            lib.strelay_stream_free(stream)
    except StrelayError as e:
        print(f"capi.py: {e}", file=sys.stderr)
        return 1
    finally:
        lib.strelay_node_free(node)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
