"""A bare asyncio HTTP/1.1 receiver for bench/webhook_bench.py, run as its own process so
that it does not share a CPU with the suite: answers every POST 204 at once and records
when each delivery arrived; `GET /count` and `GET /arrivals` (JSON) report them.

    python -m bench.webhook_receiver_process PORT
"""

from __future__ import annotations

import asyncio
import sys
import time

import orjson

arrivals: list[tuple[float, str]] = []  # (arrival wall time, the event's `time`)


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length) if length else b""
            if head.startswith(b"POST"):
                arrivals.append((time.time(), orjson.loads(body)["time"]))
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            else:
                answer = orjson.dumps(len(arrivals) if b" /count " in head.split(b"\r\n")[0] else arrivals)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
