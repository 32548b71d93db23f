#!/usr/bin/env python3
"""A lying relay's pipe, for tests/stcat_test.sh: the relay-in-the-middle of docs/protocol.md 2.4.

    stcat_splice_proxy.py RELAY_PORT DIVERT_PORT

Listens on 127.0.0.1 (a free port, printed as "listening on 127.0.0.1:PORT"). Each connection
(a connector's) is forwarded to the genuine relay at 127.0.0.1:RELAY_PORT until the relay has
sent msg2 and one transport frame, its Connected (a connector hears nothing else before its
outcome). From then on the connector's tunnel goes to 127.0.0.1:DIVERT_PORT instead, byte for
byte both ways, as a relay would pipe it to another party: for instance to a real strelay whose
identity is the friend's key (the end-to-end handshake must refuse it), or to a server of
another protocol version. Prints "diverted" on stderr for each diverted connection. Runs until
killed.
"""
import asyncio
import sys


async def read_frame(reader):
    header = await reader.readexactly(2)
    return header + await reader.readexactly(int.from_bytes(header, "big"))


async def pump(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.write_eof()  # carry the half-close through
    except (ConnectionError, OSError):
        writer.close()


async def handle(client_reader, client_writer, relay_port, divert_port):
    try:
        relay_reader, relay_writer = await asyncio.open_connection("127.0.0.1", relay_port)
    except OSError:
        client_writer.close()
        return
    destination = {"writer": relay_writer}

    async def client_to_destination():
        # The connector sends nothing between msg3 and Connected, so no byte meant for the
        # relay can be read after the switch below.
        try:
            while data := await client_reader.read(65536):
                destination["writer"].write(data)
                await destination["writer"].drain()
            destination["writer"].write_eof()
        except (ConnectionError, OSError):
            destination["writer"].close()

    async def to_client():
        try:
            msg2 = await read_frame(relay_reader)
            client_writer.write(msg2)
            connected = await read_frame(relay_reader)
            divert_reader, divert_writer = await asyncio.open_connection("127.0.0.1", divert_port)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            client_writer.close()
            return
        destination["writer"] = divert_writer
        relay_writer.close()
        print("diverted", file=sys.stderr, flush=True)
        client_writer.write(connected)
        await pump(divert_reader, client_writer)

    await asyncio.gather(client_to_destination(), to_client())
    client_writer.close()


async def main(relay_port, divert_port):
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, relay_port, divert_port), "127.0.0.1", 0)
    print(f"listening on 127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
