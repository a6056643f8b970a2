"""`valuechain run --nats-cluster 3`: three nats-servers on loopback with routes, the stream
and its consumers R3, and a purchase through the gateway reaches lifecycle.

It starts a suite of its own (not `running_suite`): the shared suite runs on one NATS, and
this one is what the flag changes. Its ports for NATS are three consecutive free ones each
(clients, routes, monitoring), as the flag lays the nodes out."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from datetime import UTC, datetime

import nats

from shared.settings import nats_servers
from tests.e2e.harness import RunningSuite, postgres_databases, unique, unique_email
from tests.support import wait_until


async def test_run_with_a_three_node_cluster_carries_a_purchase_to_lifecycle(tmp_path):
    urls, drops = await postgres_databases("nats-cluster")
    suite = RunningSuite(tmp_path / "var", urls, nats_cluster=3)
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
    finally:
        assert await asyncio.to_thread(suite.stop) == 0
        for drop in drops:
            await drop()
