#!/usr/bin/env python3
"""A malicious path between a node and its relay, for tests/stcat_test.sh.

    stcat_flip_proxy.py TARGET_PORT FLIP_AT

Listens on 127.0.0.1 (a free port, printed as "listening on 127.0.0.1:PORT"), forwards each
connection to 127.0.0.1:TARGET_PORT byte for byte in both directions (half-closes included),
except that byte FLIP_AT (from 0) of what the client sends is XORed with 0x01. Past the relay
handshake and the Connect request (a few hundred bytes), that byte is end-to-end tunnel data,
which the relay forwards without looking: only the two nodes can notice. Runs until killed.
"""
import asyncio
import sys


async def pump(reader, writer, flip_at):
    offset = 0
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            if flip_at is not None and offset <= flip_at < offset + len(data):
                changed = bytearray(data)
                changed[flip_at - offset] ^= 0x01
                data = bytes(changed)
                print(f"flipped byte {flip_at}", file=sys.stderr, flush=True)
            offset += len(data)
            writer.write(data)
            await writer.drain()
        writer.write_eof()  # carry the half-close through
    except (ConnectionError, OSError):
        writer.close()


async def main(target_port, flip_at):
    async def handle(client_reader, client_writer):
        try:
            relay_reader, relay_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pump(client_reader, relay_writer, flip_at),
                             pump(relay_reader, client_writer, None))
        client_writer.close()
        relay_writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"listening on 127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
