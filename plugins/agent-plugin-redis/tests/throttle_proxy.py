"""A TCP proxy for tests: ``python throttle_proxy.py LISTEN_PORT REDIS_PORT RATE`` passes
what clients send to the redis-server on 127.0.0.1:REDIS_PORT at RATE bytes per second per
connection (replies unthrottled), as a slow link to Redis would; prints ``ready`` once it
listens."""

from __future__ import annotations

import asyncio
import contextlib
import sys

CHUNK = 16384


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rate: float) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
            if rate:
                await asyncio.sleep(len(data) / rate)
    writer.close()


async def main(listen: int, target: int, rate: float) -> None:
    async def handle(
        client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(
            pump(client_reader, server_writer, rate), pump(server_reader, client_writer, 0)
        )

    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
