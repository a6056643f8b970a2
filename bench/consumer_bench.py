"""Consumer throughput: how many events per second each real consumer applies,
inbox records included, from a JetStream stream that already holds them.

Baselines in the same run: nats-py fetching and acking the same messages with no
database work (the transport's ceiling), and the backbone alone applying them
with a one-statement batch handler. Run: `.venv/bin/python -m bench.consumer_bench`.
Target (issue 2): every consumer ≥ 5,000 events/s.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

import nats

from shared.events.bus import ensure_stream
from shared.events.envelope import make_event
from tests.shared import probe
from tests.support import NatsServer, Suite

N_CUSTOMERS = 5_000  # each gets created + one transaction + a stage change: 15,000 events
REPEATS = int(__import__("os").environ.get("BENCH_REPEATS", "3"))


def workload(n: int) -> list[tuple[str, str, bytes]]:
    """The stream's events as (type, id, JSON body).

    Kept as bytes, not CloudEvent objects: the services run in this process, and
    15,000 pydantic models held for the whole run made every full garbage
    collection of the service under test walk them too.
    """

    events = []
    for i in range(n):
        cid = f"00000000-0000-7000-8000-{i:012d}"
        events.append(
            make_event(
                service="identify",
                type="crm.identify.customer.created",
                data={
                    "id": cid,
                    "email": f"c{i}@example.com",
                    "created_at": "2024-01-01T00:00:00Z",
                    "referred_by": f"00000000-0000-7000-8000-{i - 1:012d}" if i % 10 == 1 else None,
                },
                subject=cid,
            )
        )
    for i in range(n):
        cid = f"00000000-0000-7000-8000-{i:012d}"
        events.append(
            make_event(
                service="identify",
                type="crm.identify.transaction.recorded",
                data={
                    "id": f"10000000-0000-7000-8000-{i:012d}",
                    "customer_id": cid,
                    "amount": "12.50",
                    "currency": "USD",
                    "occurred_at": "2024-01-02T00:00:00Z",
                    "purchase_count": 1,
                },
                subject=cid,
            )
        )
    for i in range(n):
        cid = f"00000000-0000-7000-8000-{i:012d}"
        events.append(
            make_event(
                service="lifecycle",
                type="crm.lifecycle.stage.changed",
                data={
                    "customer_id": cid,
                    "from_stage": "prospect",
                    "to_stage": "new",
                    "at": "2024-01-02T00:00:00Z",
                    "cause_event_id": events[n + i].id,
                },
                subject=cid,
            )
        )
    return [(event.type, event.id, event.to_json()) for event in events]


async def publish(url: str, events) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await ensure_stream(js, "CRM")
    pending = []
    for type_, event_id, body in events:
        pending.append(js.publish(type_, body, headers={"Nats-Msg-Id": event_id}))
        if len(pending) >= 1000:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
    await nc.close()


async def transport_baseline(url: str, expected: int) -> float:
    nc = await nats.connect(url)
    js = nc.jetstream()
    sub = await js.pull_subscribe("crm.>", durable="bench-raw", stream="CRM")
    started = time.perf_counter()
    seen = 0
    while seen < expected:
        msgs = await sub.fetch(1000, timeout=2)
        for msg in msgs:
            await msg.ack()
        seen += len(msgs)
    elapsed = time.perf_counter() - started
    await nc.close()
    return expected / elapsed


async def measure(definition_or_name, events) -> dict[str, float]:
    """Events/s of every consumer of one service, started on a stream that holds `events`."""

    tmp = Path(tempfile.mkdtemp())
    server = NatsServer(tmp / "js")
    server.start()
    try:
        await publish(server.url, events)
        async with AsyncExitStack() as stack:
            suite = Suite(server, tmp, stack)
            if isinstance(definition_or_name, str):
                handle = await suite.start(definition_or_name, log_level="WARNING")
            else:
                handle = await suite.start_definition(definition_or_name, log_level="WARNING")
            # Each consumer is timed from the first event it applied to its last, so
            # start-up is not counted; a service's consumers run side by side, as in
            # production, sharing its database.
            metrics = handle.runtime.metrics
            tracked = {}
            for spec in (spec for runner in handle.runtime.consumers for spec in runner.group.specs):
                subjects = set(spec.all_subjects)
                wanted = sum(1 for type_, _, _ in events if type_ in subjects)
                if not wanted:  # e.g. a follower of merges: nothing of its kind in this workload
                    continue
                name = spec.durable(handle.name)
                tracked[name] = {
                    "counter": metrics.events_handled.labels(handle.name, name),
                    "wanted": wanted,
                    "t0": None,
                    "v0": 0,
                    "t1": None,
                }
            deadline = time.perf_counter() + 600
            while any(t["t1"] is None for t in tracked.values()) and time.perf_counter() < deadline:
                now = time.perf_counter()
                for t in tracked.values():
                    value = t["counter"]._value.get()
                    if t["t0"] is None and value > 0:
                        t["t0"], t["v0"] = now, value
                    if t["t1"] is None and value >= t["wanted"]:
                        t["t1"] = now
                await asyncio.sleep(0.002)
            results = {name: (t["wanted"] - t["v0"]) / max(t["t1"] - t["t0"], 1e-3) for name, t in tracked.items()}
            return results
    finally:
        server.stop()


async def run() -> list[tuple[str, float]]:
    events = workload(N_CUSTOMERS)
    rows: dict[str, list[float]] = {}
    for _ in range(REPEATS):
        tmp = Path(tempfile.mkdtemp())
        server = NatsServer(tmp / "js")
        server.start()
        try:
            await publish(server.url, events)
            rows.setdefault("baseline: nats-py fetch+ack, no database", []).append(
                await transport_baseline(server.url, len(events))
            )
        finally:
            server.stop()
        only_created = [e for e in events if e[0] == "crm.identify.customer.created"]
        for name, rate in (await measure(probe.BATCH_DEFINITION, only_created)).items():
            rows.setdefault(f"baseline: backbone + 1-statement batch handler ({name})", []).append(rate)
        for service in ("lifecycle", "engage", "network", "value"):
            for name, rate in (await measure(service, events)).items():
                rows.setdefault(name, []).append(rate)
    return [(name, statistics.median(rates)) for name, rates in rows.items()]


def main() -> None:
    import logging

    logging.disable(logging.WARNING)
    import uvloop  # what uvicorn runs the services on

    results = uvloop.run(run())
    print(f"\nConsumer throughput, median of {REPEATS} runs, {N_CUSTOMERS * 3:,} events in the stream\n")
    print("| consumer | events/s |")
    print("|---|---|")
    for name, rate in results:
        print(f"| {name} | {rate:,.0f} |")


if __name__ == "__main__":
    main()
