"""`valuechain run --replicas 2 --nats-cluster 3`, issue 17's shape on loopback: three
nats-servers with routes, the stream and its consumers R3; two processes of every service and
two gateways, each with its log; a purchase through one gateway reaches lifecycle, and reads
through the other reach both identify replicas in turn. SIGTERM stops all of them.

It starts a suite of its own (not `running_suite`): the shared suite runs one process of each
on one NATS, and this one is what the flags change (both in one suite: each start of a suite
costs the run tens of seconds). Its ports for NATS are three consecutive free ones each
(clients, routes, monitoring), as the flag lays the nodes out."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from datetime import UTC, datetime

import httpx
import nats

from shared.settings import SERVICES, nats_servers
from tests.e2e.harness import RunningSuite, postgres_databases, unique, unique_email
from tests.support import wait_until
from valuechain.supervisor import tcp_open


async def test_run_with_two_replicas_on_a_three_node_cluster_carries_a_purchase_to_lifecycle(tmp_path):
    urls, drops = await postgres_databases("nats-cluster")
    suite = RunningSuite(tmp_path / "var", urls, replicas=2, nats_cluster=3)
    stopped = False
    try:
        await asyncio.to_thread(suite.start)
        for i in range(3):  # every node: JetStream with fsync on every write, in a cluster of 3
            monitor = f"http://127.0.0.1:{suite.ports['nats_monitor'] + i}/jsz"
            with urllib.request.urlopen(monitor, timeout=5) as response:
                jsz = json.loads(response.read())
            assert jsz["config"]["sync_always"] is True
            assert jsz["meta_cluster"]["cluster_size"] == 3
            assert (tmp_path / "var" / f"jetstream-{i + 1}").is_dir()

        nc = await nats.connect(servers=nats_servers(suite.nats_url))
        try:
            js = nc.jetstream()
            stream = await js.stream_info("CRM")
            assert stream.config.num_replicas == 3
            stages = await js.consumer_info("CRM", "lifecycle-events")
            assert stages.cluster is not None and len(stages.cluster.replicas or []) == 2
        finally:
            await nc.close()

        async with suite.client() as gw:
            ada = (await gw.post("/v1/customers", json={"email": unique_email("ada.cluster"), "name": "Ada"})).json()
            bought = await gw.post(
                "/v1/transactions",
                json={
                    "customer_id": ada["id"],
                    "amount": "25.00",
                    "currency": "USD",
                    "occurred_at": datetime.now(UTC).isoformat(),
                    "external_id": unique("cluster"),
                },
            )
            assert bought.status_code == 201, bought.text

            async def staged():
                response = await gw.get(f"/v1/customers/{ada['id']}/lifecycle")
                return response.status_code == 200 and response.json()["stage"] == "new"

            await wait_until(staged, timeout=30, interval=0.2, what="the purchase moves Ada to new in lifecycle")
            ready = await gw.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["replicas"] == {name: {"healthy": 2, "total": 2} for name in SERVICES}

        # The other gateway reads what the first wrote, from both identify replicas in turn.
        async with httpx.AsyncClient(base_url=suite.gateway_urls[1], headers=gw.headers, timeout=10) as other:
            for _ in range(4):
                read = await other.get(f"/v1/customers/{ada['id']}")
                assert read.status_code == 200, read.text
        internal = {"x-valuechain-internal": suite.internal_secret}
        async with httpx.AsyncClient(timeout=5) as client:
            for replica in suite.service_urls("identify"):
                metrics = (await client.get(f"{replica}/metrics", headers=internal)).text
                assert 'method="GET",route="/v1/customers/{customer_id}",service="identify",status="200"' in metrics
        logs = tmp_path / "var" / "log"
        for name in (*SERVICES, "gateway"):
            for i in (1, 2):
                assert (logs / f"{name}-{i}.log").is_file(), f"{name}-{i}.log"
        assert await asyncio.to_thread(suite.stop) == 0, suite.tail()
        stopped = True
        ports = [int(url.rsplit(":", 1)[1]) for name in SERVICES for url in suite.service_urls(name)]
        ports += [int(url.rsplit(":", 1)[1]) for url in suite.gateway_urls]
        for port in ports:
            assert not tcp_open("127.0.0.1", port), f"{port} still listens"
    finally:
        if not stopped:
            await asyncio.to_thread(suite.stop)
        for drop in drops:
            await drop()
