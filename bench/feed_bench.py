"""The event feed (`GET /v1/events`): how many events per second one client reads.

Target (issue 16): at least 20,000 events/s read by one client.

1. starts a nats-server with the suite's users, provisioned as `valuechain migrate` does;
2. puts `--events` (100,000) events on the stream `CRM` as the services would publish them:
   three in four `crm.identify.transaction.recorded` (nothing personal), one in four
   `crm.identify.customer.created` (email, name, phone: redacted for a key without pii:read);
3. starts network (uvicorn, uvloop + httptools) and the gateway (`python -m gateway`);
4. one client (httpx, one connection) reads the whole feed page by page (`--limit` 1000),
   `--repeat` (3) times each: straight from network and through the gateway, with pii
   (the events pass as stored) and without (the personal ones are parsed and redacted).

Run: `.venv/bin/python -m bench.feed_bench` (`--events 20000 --repeat 1` for a quick one).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import nats
import orjson

from bench.gateway_bench import ROOT, Proc, cpu_seconds, free_port, start_gateway, wait_http
from shared.events.contracts import CATALOG
from shared.events.envelope import make_event
from shared.internal_auth import load_or_create_internal_secret
from shared.settings import SuiteSettings
from tests.support import NatsServer
from valuechain.nats_setup import provision_all

CREATED = "crm.identify.customer.created"
RECORDED = "crm.identify.transaction.recorded"
ADMIN_KEY = "bench-admin-key-0123456789"


def _event(i: int) -> tuple[str, bytes]:
    at = datetime(2026, 1, 1, tzinfo=UTC).isoformat()
    data: dict[str, object]
    if i % 4 == 0:
        data = {
            "id": f"c{i}",
            "email": f"p{i}@example.com",
            "name": f"Person {i}",
            "phone": "+4930123456",
            "created_at": at,
        }
        kind = CREATED
    else:
        data = {
            "id": f"t{i}",
            "customer_id": f"c{i - i % 4}",
            "amount": "49.90",
            "currency": "EUR",
            "occurred_at": at,
            "purchase_count": i % 4,
            "reporting_amount": "53.89",
            "reporting_currency": "USD",
        }
        kind = RECORDED
    payload = CATALOG[kind].model.model_validate(data).model_dump(mode="json")
    event = make_event(service="identify", type=kind, data=payload, subject=str(data.get("customer_id", data["id"])))
    return kind, event.to_json()


async def publish(url: str, count: int) -> int:
    """`count` events on the stream (core publishes, then waits until the stream holds them)."""

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        before = (await js.stream_info("CRM")).state.messages
        for i in range(count):
            subject, body = _event(i)
            await nc.publish(subject, body)
            if i % 5000 == 4999:
                await nc.flush()
        await nc.flush()
        deadline = time.monotonic() + 60
        while (held := (await js.stream_info("CRM")).state.messages) < before + count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the stream holds {held - before} of {count} events")
            await asyncio.sleep(0.1)
        return held
    finally:
        await nc.close()


async def read_all(base: str, headers: dict[str, str], limit: int) -> tuple[int, float, int]:
    """(events, seconds, bytes) for one client reading the whole feed from the start."""

    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        events = size = 0
        after = None
        started = time.perf_counter()
        while True:
            response = await client.get("/v1/events", params={"limit": limit, **({"after": after} if after else {})})
            response.raise_for_status()
            size += len(response.content)
            page = orjson.loads(response.content)  # a client reads what it gets
            events += len(page["items"])
            after = page["next_cursor"]
            if not page["has_more"]:
                return events, time.perf_counter() - started, size


def start_network(port: int, var: Path, nats_url: str) -> Proc:
    env = dict(os.environ, VALUECHAIN_VAR_DIR=str(var), VALUECHAIN_NATS_URL=nats_url)
    subprocess.run(
        [sys.executable, "-c", "from shared.db.migrations import upgrade; upgrade('network')"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    command = [sys.executable, "-m", "uvicorn", "services.network.main:create_app", "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning"]
    command += ["--loop", "uvloop", "--http", "httptools"]
    log = open(var / "network.log", "wb")  # noqa: SIM115 - the child holds it
    popen = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
    wait_http(f"http://127.0.0.1:{port}/readyz")
    return Proc("network", popen)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.feed_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-gateway", action="store_true", help="only straight from network")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp())
    var = tmp / "var"
    nats_server = NatsServer(tmp / "js", var_dir=var)
    nats_server.start()
    processes: list[Proc] = []
    try:
        asyncio.run(provision_all(nats_server.address, nats_server.credentials("admin")))  # as `valuechain migrate`
        started = time.perf_counter()
        held = asyncio.run(publish(nats_server.url, args.events))
        print(f"published {args.events:,} events in {time.perf_counter() - started:.1f} s (stream holds {held:,})")
        secret = load_or_create_internal_secret(SuiteSettings(var_dir=var))
        network_port = free_port()
        processes.append(start_network(network_port, var, nats_server.address))
        targets = {"network": (f"http://127.0.0.1:{network_port}", {"x-valuechain-internal": secret})}
        if not args.no_gateway:
            gateway_port = free_port()
            processes.append(start_gateway(gateway_port, network_port, ADMIN_KEY, tmp, workers=1))
            targets["gateway"] = (f"http://127.0.0.1:{gateway_port}", {"Authorization": f"Bearer {ADMIN_KEY}"})
        rows = []
        for name, (base, headers) in targets.items():
            for pii in (True, False):
                if name == "gateway" and not pii:
                    continue  # the admin key holds pii:read: the redacting read is measured on network
                sent = dict(headers, **({"x-valuechain-pii": "1"} if pii and name == "network" else {}))
                asyncio.run(read_all(base, sent, args.limit))  # warm up
                pids = [pid for process in processes for pid in process.pids()]
                cpu_before = cpu_seconds(pids)
                runs = [asyncio.run(read_all(base, sent, args.limit)) for _ in range(args.repeat)]
                cpu_after = cpu_seconds(pids)
                rates = [events / seconds for events, seconds, _ in runs]
                total = sum(events for events, _, _ in runs)
                # The server side's CPU per event (network, and the gateway when it is in the way):
                # what a busy machine's wall-clock rates hide.
                cpu_us = (
                    (cpu_after - cpu_before) / total * 1e6 if cpu_before is not None and cpu_after is not None else None
                )
                rows.append((name, pii, runs[0][0], runs[0][2], rates, cpu_us))
    finally:
        for process in reversed(processes):
            process.stop()
        nats_server.stop()
    print(f"\nEvent feed, one client, pages of {args.limit}, {args.repeat} runs each (medians)\n")
    print("| read | personal fields | events | MB | events/s | events/s per run | server CPU µs/event |")
    print("|---|---|---:|---:|---:|---|---:|")
    for name, pii, events, size, rates, cpu_us in rows:
        print(
            f"| {'straight from network' if name == 'network' else 'through the gateway'} | "
            f"{'kept (pii:read)' if pii else 'redacted'} | {events:,} | {size / 1e6:.1f} | "
            f"{statistics.median(rates):,.0f} | {', '.join(f'{r:,.0f}' for r in rates)} | "
            f"{'-' if cpu_us is None else f'{cpu_us:.1f}'} |"
        )
    print("\ntarget: >= 20,000 events/s")


if __name__ == "__main__":
    main()
