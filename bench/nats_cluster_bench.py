"""What a three-node JetStream cluster (R3, `sync_interval: always`) costs an event, against
the embedded default's single server (R1, the server's default fsync every 2 minutes).

For each setup: the stream `CRM` provisioned as `valuechain migrate` does (R1, or R3 on the
cluster), one durable pull consumer on it as the services use, and events published
open-loop at a fixed rate (default 200/s), each with its `Nats-Msg-Id`, as the outbox
relay publishes. Two latencies per event:

- publish → ack: what the relay waits for (on R3, a quorum of the nodes stored it and,
  with `sync_interval: always`, fsynced it);
- publish → fetched by the consumer: the transport's share of a purchase's 201 → effect.

The servers are real (tests.support.NatsServer and NatsCluster), on loopback.
Run: `.venv/bin/python -m bench.nats_cluster_bench [--rate 200] [--seconds 5]`.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import nats
from nats.js.api import AckPolicy, ConsumerConfig

from bench.latency_bench import percentiles
from shared.events.bus import provision
from tests.support import NatsCluster, NatsServer
from valuechain.nats_setup import patiently


async def measure(servers: list[str], replicas: int, rate: float, count: int) -> tuple[list[float], list[float]]:
    nc = await nats.connect(servers=servers)
    try:
        js = nc.jetstream(timeout=10)
        durable = ConsumerConfig(
            name="bench-latency",
            durable_name="bench-latency",
            filter_subjects=["crm.bench.>"],
            ack_policy=AckPolicy.EXPLICIT,
        )
        await patiently(time.monotonic() + 30, provision, js, "CRM", [durable], replicas=replicas)
        sub = await js.pull_subscribe_bind("bench-latency", stream="CRM")
        sent: dict[int, float] = {}
        acked: list[float] = []
        fetched: list[float] = []

        async def consume() -> None:
            while len(fetched) < count:
                try:
                    messages = await sub.fetch(100, timeout=1)
                except nats.errors.TimeoutError:
                    continue
                now = time.perf_counter()
                fetched.extend((now - sent[int(m.data)]) * 1000 for m in messages)
                for message in messages:
                    await message.ack()

        async def publish(i: int) -> None:
            await js.publish("crm.bench.event", str(i).encode(), headers={"Nats-Msg-Id": f"bench-{i}"})
            acked.append((time.perf_counter() - sent[i]) * 1000)

        consumer = asyncio.create_task(consume())
        started = time.perf_counter()
        publishing = []
        for i in range(count):
            await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
            sent[i] = time.perf_counter()
            publishing.append(asyncio.create_task(publish(i)))
        await asyncio.gather(*publishing)
        await asyncio.wait_for(consumer, timeout=60)
        return acked, fetched
    finally:
        await nc.close()


def row(name: str, acked: list[float], fetched: list[float]) -> str:
    a, f = percentiles(acked), percentiles(fetched)
    return (
        f"| {name} | {a['p50']:.1f} | {a['p99']:.1f} | {f['p50']:.1f} | {f['p90']:.1f} | {f['p99']:.1f} "
        f"| {f['max']:.1f} | {f['n']} |"
    )


async def run(rate: float, seconds: float) -> None:
    count = int(rate * seconds)
    lines = [
        f"publish → ack and publish → fetched, ms, {count} events at {rate:g}/s",
        "",
        "| setup | ack p50 | ack p99 | fetched p50 | p90 | p99 | max | n |",
        "|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory(prefix="nats-cluster-bench-") as tmp:
        single = NatsServer(Path(tmp) / "single" / "jetstream")
        single.start()
        try:
            lines.append(row("1 node, R1 (embedded default)", *await measure([single.url], 1, rate, count)))
        finally:
            single.stop()
        cluster = NatsCluster(Path(tmp) / "cluster")
        cluster.start()
        try:
            lines.append(row("3 nodes, R3, sync_interval always", *await measure(cluster.servers, 3, rate, count)))
        finally:
            cluster.stop()
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200.0, help="events per second (default 200)")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long to publish, each setup (default 5)")
    args = parser.parse_args()
    asyncio.run(run(args.rate, args.seconds))


if __name__ == "__main__":
    main()
