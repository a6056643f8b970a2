"""The stream step of an erasure: how fast identify walks the stream for the events about
an erased customer (services/identify/privacy/stream.py, one MSG.GET per message on the
subjects with personal fields). A stream of N customer.created events, two of them about
the erased ids. Run: `.venv/bin/python -m bench.erasure_bench` (BENCH_MESSAGES, BENCH_REPEATS).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import nats

from services.identify.privacy.stream import delete_events_about
from shared.events.contracts import CustomerCreated
from shared.events.envelope import make_event
from tests.support import NatsServer

MESSAGES = int(os.environ.get("BENCH_MESSAGES", "20000"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))


async def once(n: int) -> tuple[int, float]:
    server = NatsServer(Path(tempfile.mkdtemp()) / "jetstream")
    server.start()
    try:
        nc = await nats.connect(server.url)
        await nc.jetstream().add_stream(name="CRM", subjects=["crm.>"])
        at = datetime(2026, 1, 1, tzinfo=UTC)
        for i in range(n):
            data = CustomerCreated(id=f"c{i}", email=f"p{i}@x.io", name=f"P{i}", created_at=at).model_dump(mode="json")
            event = make_event(service="identify", type="crm.identify.customer.created", data=data, subject=f"c{i}")
            await nc.publish("crm.identify.customer.created", event.to_json())
            if i % 1000 == 999:
                await nc.flush()
        await nc.flush()
        await asyncio.sleep(1)
        start = time.perf_counter()
        deleted = await delete_events_about(nc, "CRM", {"c5", f"c{n // 2}"})
        elapsed = time.perf_counter() - start
        await nc.close()
        return deleted, elapsed
    finally:
        server.stop()


def main() -> None:
    for _ in range(REPEATS):
        deleted, elapsed = asyncio.run(once(MESSAGES))
        print(
            f"erasure stream step: {MESSAGES} messages scanned, {deleted} deleted in {elapsed:.2f} s "
            f"({MESSAGES / elapsed:,.0f} messages/s)"
        )


if __name__ == "__main__":
    main()
