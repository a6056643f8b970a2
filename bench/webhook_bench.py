"""Webhooks through the running suite (`valuechain run`'s processes) to a receiver in its own
process on loopback:

1. throughput: one subscription with N events waiting (published while it was disabled),
   enabled: webhooks/s from the enable to the last arrival. Target (issue 16) >= 1,000/s;
2. latency: customers created through the gateway at a fixed rate (default 200/s), one
   subscription to `crm.identify.customer.created`: from the event's time (set when identify
   emits it, in the transaction that commits it) to its webhook's arrival at the receiver.
   Target: p99 < 100 ms at 200 writes/s.
3. network alone (in this process, its migrations applied, a nats-server of its own): events
   published straight to the stream at the same rate, from publish to arrival: webhooks'
   own latency, without the gateway, identify and its outbox relay sharing the machine.

Run: `.venv/bin/python -m bench.webhook_bench [--events 5000] [--rate 200] [--seconds 8]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import nats

from bench.latency_bench import PurchaseClient, percentiles
from shared.events.envelope import make_event
from tests.e2e.harness import RunningSuite
from tests.support import NatsServer, Suite, free_port


async def wait_count(receiver: httpx.AsyncClient, count: int, timeout: float = 120) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (await receiver.get("/count")).json() >= count:
            return time.perf_counter()
        await asyncio.sleep(0.005)
    raise TimeoutError(f"fewer than {count} webhooks arrived")


async def throughput(suite: RunningSuite, gw: httpx.AsyncClient, receiver_url: str, events: int) -> float:
    made = await gw.post("/v1/webhooks", json={"url": receiver_url, "event_types": ["crm.network.webhook.disabled"]})
    made.raise_for_status()
    hook = made.json()["id"]
    (await gw.patch(f"/v1/webhooks/{hook}", json={"enabled": False})).raise_for_status()
    await asyncio.sleep(1.0)  # its worker stopped
    nc = await nats.connect(suite.nats_url)
    js = nc.jetstream()
    pending = []
    for i in range(events):  # a type nothing in the suite consumes
        event = make_event(
            service="network",
            type="crm.network.webhook.disabled",
            data={
                "id": f"bench-{i}",
                "reason": "failing",
                "detail": "bench",
                "disabled_at": datetime.now(UTC).isoformat(),
            },
        )
        pending.append(js.publish(event.type, event.to_json(), headers={"Nats-Msg-Id": event.id}))
        if len(pending) >= 500:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
    await nc.close()
    async with httpx.AsyncClient(base_url=receiver_url) as receiver:
        started = time.perf_counter()
        (await gw.patch(f"/v1/webhooks/{hook}", json={"enabled": True})).raise_for_status()
        finished = await wait_count(receiver, events)
    (await gw.delete(f"/v1/webhooks/{hook}")).raise_for_status()
    return events / (finished - started)


async def latency(suite: RunningSuite, gw: httpx.AsyncClient, receiver_url: str, rate: float, count: int):
    async with httpx.AsyncClient(base_url=receiver_url) as receiver:
        before = (await receiver.get("/count")).json()
        made = await gw.post(
            "/v1/webhooks", json={"url": receiver_url, "event_types": ["crm.identify.customer.created"]}
        )
        made.raise_for_status()
        await asyncio.sleep(1.0)
        # Baseline in the same run: the same events as they reach a plain NATS subscriber.
        on_bus: dict[str, float] = {}  # the event's time -> when a plain subscriber had it
        nc = await nats.connect(suite.nats_url)

        async def seen(msg) -> None:
            on_bus[json.loads(msg.data)["time"]] = time.time()

        await nc.subscribe("crm.identify.customer.created", cb=seen)
        client = PurchaseClient(suite.gateway_url, suite.admin_key)
        await client.open(16)
        started = time.perf_counter()

        async def create(i: int) -> None:
            await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
            status = await client.post("/v1/customers", json.dumps({"external_id": f"lat-{i}"}).encode())
            assert status == 201, status

        await asyncio.gather(*(create(i) for i in range(count)))
        await wait_count(receiver, before + count, timeout=60)
        client.close()
        await nc.close()
        arrivals = (await receiver.get("/arrivals")).json()[before:]

    def ms(at: str, arrived: float) -> float:
        return (arrived - datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()) * 1000

    hooks = [ms(at, arrived) for arrived, at in arrivals]
    bus = [ms(at, arrived) for at, arrived in on_bus.items()]
    # network's own share: from the event reaching the bus to its webhook's arrival
    network = [(arrived - on_bus[at]) * 1000 for arrived, at in arrivals if at in on_bus]
    return hooks, bus, network


async def network_alone(receiver_url: str, rate: float, count: int) -> list[float]:
    from contextlib import AsyncExitStack

    tmp = Path(tempfile.mkdtemp())
    server = NatsServer(tmp / "js")
    server.start()
    try:
        async with AsyncExitStack() as stack, httpx.AsyncClient(base_url=receiver_url) as receiver:
            suite = Suite(server, tmp, stack)
            network = await suite.start("network", webhook_allow_hosts=("127.0.0.1",), log_level="WARNING")
            before = (await receiver.get("/count")).json()
            made = await network.client.post(
                "/v1/webhooks", json={"url": receiver_url, "event_types": ["crm.network.webhook.disabled"]}
            )
            made.raise_for_status()
            await asyncio.sleep(1.0)
            nc = await nats.connect(server.url)
            js = nc.jetstream()
            started = time.perf_counter()
            for i in range(count):
                await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
                event = make_event(
                    service="network",
                    type="crm.network.webhook.disabled",
                    data={"id": f"alone-{i}", "reason": "gone", "detail": "bench", "disabled_at": datetime.now(UTC)},
                )
                await js.publish(event.type, event.to_json())
            await wait_count(receiver, before + count, timeout=60)
            await nc.close()
            arrivals = (await receiver.get("/arrivals")).json()[before:]
    finally:
        server.stop()
    return [
        (arrived - datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()) * 1000 for arrived, at in arrivals
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000, help="events waiting for the throughput run")
    parser.add_argument("--rate", type=float, default=200.0, help="writes per second for the latency run")
    parser.add_argument("--seconds", type=float, default=8.0, help="how long to write")
    args = parser.parse_args()
    port = free_port()
    receiver = subprocess.Popen([sys.executable, "-m", "bench.webhook_receiver_process", str(port)])
    receiver_url = f"http://127.0.0.1:{port}/"
    suite = RunningSuite(Path(tempfile.mkdtemp()) / "var")
    suite.start()
    try:
        import uvloop

        async def run():
            async with httpx.AsyncClient(
                base_url=suite.gateway_url, timeout=30, headers={"Authorization": f"Bearer {suite.admin_key}"}
            ) as gw:
                rate = await throughput(suite, gw, receiver_url, args.events)
                values, on_bus, network = await latency(
                    suite, gw, receiver_url, args.rate, int(args.rate * args.seconds)
                )
            return rate, values, on_bus, network

        rate, values, on_bus, network = uvloop.run(run())
        suite.stop()  # before network runs alone
        alone = percentiles(uvloop.run(network_alone(receiver_url, args.rate, int(args.rate * args.seconds))))
    finally:
        suite.stop()
        receiver.terminate()
    p, bus, own = percentiles(values), percentiles(on_bus), percentiles(network)
    print("\nWebhooks through the running suite to a receiver process on loopback\n")
    print("| measure | value | target |")
    print("|---|---:|---:|")
    print(f"| one subscription, {args.events:,} events waiting: webhooks/s | {rate:,.0f} | >= 1,000 |")
    print(
        f"| event time -> webhook arrival at {args.rate:.0f} writes/s ({p['n']} writes): "
        f"p50 / p90 / p99 / max ms | {p['p50']:.1f} / {p['p90']:.1f} / {p['p99']:.1f} / {p['max']:.1f} | p99 < 100 |"
    )
    print(
        f"| baseline: event time -> a plain NATS subscriber (identify's outbox relay): "
        f"p50 / p90 / p99 / max ms | {bus['p50']:.1f} / {bus['p90']:.1f} / {bus['p99']:.1f} / {bus['max']:.1f} | |"
    )
    print(
        f"| network alone: publish -> webhook arrival at {args.rate:.0f}/s: p50 / p90 / p99 / max ms | "
        f"{alone['p50']:.1f} / {alone['p90']:.1f} / {alone['p99']:.1f} / {alone['max']:.1f} | p99 < 100 |"
    )
    print(
        f"| network's share: on the bus -> webhook arrival: "
        f"p50 / p90 / p99 / max ms | {own['p50']:.1f} / {own['p90']:.1f} / {own['p99']:.1f} / {own['max']:.1f} | |"
    )


if __name__ == "__main__":
    main()
