"""The suite on a three-node JetStream cluster (issue 17 §2), as `valuechain run --nats-cluster 3`
starts it: three real nats-servers on loopback with authenticated routes and `sync_interval:
always`, the stream and its consumers R3, every service connected to all three nodes.

Faults are real signals to real processes: the node leading the stream is SIGKILLed while
events are published and consumed, a node is SIGSTOPped (a long GC pause) and continued.
Nothing acknowledged is lost, nothing is applied twice, readiness says so while it lasts."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
import urllib.request
from types import SimpleNamespace

import nats
from sqlalchemy import func, select

from gateway.health import check_nats
from shared.events.bus import provision
from shared.events.publisher import BatchPublisher
from tests.shared import probe
from tests.support import NatsCluster, free_ports, nats_server_binary, wait_until
from valuechain.nats_setup import patiently, provision_all


def _jsz(cluster: NatsCluster, name: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{cluster.node(name).monitor_port}/jsz", timeout=5) as response:
        return json.loads(response.read())


async def test_the_suites_stream_consumers_and_bucket_are_r3_written_with_fsync_always(nats_cluster):
    lines = await provision_all(nats_cluster.address, nats_cluster.credentials("admin"), replicas=3)
    assert lines[0].startswith("identify: stream CRM (R3), consumers identify-")

    nc = await nats_cluster.connect()
    try:
        js = nc.jetstream()
        stream = await js.stream_info("CRM")
        assert stream.config.num_replicas == 3
        assert stream.cluster is not None and stream.cluster.leader
        assert len(stream.cluster.replicas or []) == 2
        durables = [name async for name in _consumer_names(js)]
        assert "lifecycle-events" in durables
        for durable in durables:  # consumers inherit the stream's replicas
            consumer = await js.consumer_info("CRM", durable)
            assert consumer.cluster is not None and len(consumer.cluster.replicas or []) == 2, durable
        bucket = await js.stream_info("KV_ratelimits")
        assert bucket.config.num_replicas == 3
    finally:
        await nc.close()
    for node in nats_cluster.nodes:
        jsz = _jsz(nats_cluster, node.name)
        assert jsz["config"]["sync_always"] is True, node.name
        assert jsz["meta_cluster"]["cluster_size"] == 3


async def _consumer_names(js):
    for info in await js.consumers_info("CRM"):
        yield info.name


async def test_the_routes_refuse_a_node_without_the_route_password(nats_cluster, tmp_path):
    """A process that knows the route port but not the password does not join the cluster:
    the node it dials refuses it, and no node counts it as a peer."""

    client, routes = free_ports(2)
    config = tmp_path / "intruder.conf"
    port = nats_cluster.nodes[0].cluster_port
    config.write_text(
        f'server_name: "intruder"\nlisten: "127.0.0.1:{client}"\njetstream {{ store_dir: "{tmp_path / "x"}" }}\n'
        f'cluster {{ name: "valuechain", listen: "127.0.0.1:{routes}", routes: ["nats-route://127.0.0.1:{port}"] }}\n'
    )
    log = tmp_path / "intruder.log"
    with open(log, "wb") as out:
        intruder = subprocess.Popen([nats_server_binary(), "-c", str(config)], stdout=out, stderr=subprocess.STDOUT)
    try:
        await wait_until(lambda: "Authorization Violation" in log.read_text(), what="the route refused")
        for node in nats_cluster.nodes:
            meta = _jsz(nats_cluster, node.name)["meta_cluster"]
            assert "intruder" not in {peer["name"] for peer in meta.get("replicas", [])} | {meta["leader"]}
            assert meta["cluster_size"] == 3
    finally:
        intruder.kill()
        intruder.wait()


async def test_every_acknowledged_publish_survives_killing_the_stream_leader(nats_cluster):
    """Publish with a message id, retrying one that failed with the same id (as the outbox
    relay does); SIGKILL the node that leads the stream a third of the way in. Every
    publish that was acknowledged is stored once, on the two nodes left."""

    nc = await nats_cluster.connect()
    try:
        await patiently(time.monotonic() + 20, provision, nc.jetstream(timeout=5), "CRM", [], replicas=3)
        leader = await nats_cluster.stream_leader()
        js = nc.jetstream(timeout=2)
        acknowledged: list[int] = []
        total = 90
        for n in range(total):
            if n == total // 3:
                nats_cluster.signal(leader, signal.SIGKILL)
            for _attempt in range(60):
                try:
                    ack = await js.publish(f"crm.test.item.{n}", str(n).encode(), headers={"Nats-Msg-Id": f"item-{n}"})
                except Exception:  # the leader is gone: no answer until another is elected
                    await asyncio.sleep(0.2)
                    continue
                acknowledged.append(n)
                assert not ack.duplicate or n >= total // 3
                break
        assert len(acknowledged) == total, "publishing resumed after the new leader was elected"
        new_leader = await nats_cluster.stream_leader()
        assert new_leader != leader

        stored = await _stored_items(js)
        assert sorted(stored) == list(range(total)), "every acknowledged publish kept, none twice"
    finally:
        await nc.close()


async def test_fast_batches_retried_across_a_leader_kill_store_every_event_once(nats_cluster):
    """The relay's large batches go as fast-ingest batches (shared/events/publisher.py). A
    batch the leader's SIGKILL cut short is published again with the same ids, as the relay
    does: on the R3 stream every event is stored once."""

    nc = await nats_cluster.connect()
    try:
        await patiently(time.monotonic() + 20, provision, nc.jetstream(timeout=5), "CRM", [], replicas=3)
        leader = await nats_cluster.stream_leader()
        publisher = BatchPublisher(SimpleNamespace(nc=nc))  # type: ignore[arg-type]  # it reads .nc
        size, batches = 100, 9
        for b in range(batches):
            if b == batches // 3:
                nats_cluster.signal(leader, signal.SIGKILL)
            batch = [(f"crm.test.item.{n}", str(n).encode(), f"item-{n}") for n in range(b * size, (b + 1) * size)]
            for _attempt in range(60):
                try:
                    await publisher.publish(batch, timeout_s=2)
                except Exception:  # the leader is gone: no answer until another is elected
                    await asyncio.sleep(0.2)
                    continue
                break
            else:
                raise AssertionError(f"batch {b} was never stored")
        assert publisher.fast_ingest and publisher.fast_batches >= batches - 1
        stored = await _stored_items(nc.jetstream(timeout=2))
        assert sorted(stored) == list(range(size * batches)), "every event kept, none twice"
    finally:
        await nc.close()


async def _stored_items(js) -> list[int]:
    """Every message of the stream, read by sequence (direct gets: any current replica answers)."""

    deadline = time.monotonic() + 20
    info = await patiently(deadline, js.stream_info, "CRM")
    messages = [
        await patiently(deadline, js.get_msg, "CRM", seq, direct=True)
        for seq in range(info.state.first_seq, info.state.last_seq + 1)
    ]
    return [int(message.data) for message in messages]


async def test_a_consumer_keeps_going_across_a_leader_kill_and_applies_each_event_once(cluster_suite):
    identify = await cluster_suite.start("identify")
    probe_service = await cluster_suite.start_definition(probe.DEFINITION)
    for n in range(5):
        assert (await identify.client.post("/v1/customers", json={"external_id": f"before-{n}"})).status_code == 201
    await wait_until(lambda: _applied_at_least(probe_service, 5), timeout=20, what="the first five applied")

    leader = await cluster_suite.nats.stream_leader()
    cluster_suite.nats.signal(leader, signal.SIGKILL)
    for n in range(5):
        assert (await identify.client.post("/v1/customers", json={"external_id": f"after-{n}"})).status_code == 201
    await wait_until(lambda: _applied_at_least(probe_service, 10), timeout=30, what="all ten applied")
    assert await probe.applied_count(probe_service) == 10
    assert await _distinct_applied(probe_service) == 10

    cluster_suite.nats.start_node(leader)  # back with its store: it catches up from the others
    await cluster_suite.nats.wait_healthy()
    await wait_until(lambda: _ready(identify), timeout=20, what="identify ready")
    await wait_until(lambda: _ready(probe_service), timeout=20, what="the probe ready")


async def test_a_paused_node_shows_in_readiness_and_the_cluster_recovers_when_it_continues(cluster_suite):
    """SIGSTOP the node identify is connected to (a long GC pause): identify's readiness
    reports the trouble, writes go on into the outbox; after SIGCONT (or once identify has
    moved to another node) it is ready again and every event is applied once."""

    identify = await cluster_suite.start("identify")
    probe_service = await cluster_suite.start_definition(probe.DEFINITION)
    assert (await identify.client.post("/v1/customers", json={"external_id": "before"})).status_code == 201
    await wait_until(lambda: _applied_at_least(probe_service, 1), timeout=20, what="the first applied")

    connected = identify.runtime.bus.nc.connected_url.port
    paused = next(node.name for node in cluster_suite.nats.nodes if node.client_port == connected)
    cluster_suite.nats.signal(paused, signal.SIGSTOP)
    try:
        during = await identify.client.post("/v1/customers", json={"external_id": "during"})
        assert during.status_code == 201  # the write and its event wait in identify's database

        async def trouble() -> dict | None:
            response = await identify.client.get("/readyz")
            return response.json()["checks"] if response.status_code == 503 else None

        checks = await wait_until(trouble, timeout=20, interval=0.1, what="identify's readiness reports NATS trouble")
        assert checks["nats"] in ("no answer within 2 s", "disconnected"), checks
        # The gateway's readiness asks the nodes one by one: one paused node does not fail it.
        gateway = cluster_suite.nats.credentials("gateway")
        assert await check_nats(cluster_suite.nats.address, 3.0, lambda: gateway) == "ready"
    finally:
        cluster_suite.nats.signal(paused, signal.SIGCONT)

    await cluster_suite.nats.wait_healthy()
    await wait_until(lambda: _ready(identify), timeout=30, what="identify ready again")
    await wait_until(lambda: _applied_at_least(probe_service, 2), timeout=30, what="the paused write applied")
    assert await probe.applied_count(probe_service) == 2


async def _applied_at_least(handle, n: int) -> bool:
    return await probe.applied_count(handle) >= n


async def _distinct_applied(handle) -> int:
    async with handle.runtime.db.reader() as session:
        return (await session.execute(select(func.count(func.distinct(probe.applied.c.event_id))))).scalar_one()


async def _ready(handle) -> bool:
    return (await handle.client.get("/readyz")).status_code == 200


def test_nats_py_reads_a_comma_separated_url_as_one_server():
    """Why every connect goes through `nats_servers`: nats-py does not split the setting."""

    from shared.settings import nats_servers

    client = nats.NATS()
    try:
        client._setup_server_pool("nats://127.0.0.1:4222,nats://127.0.0.1:4223")
    except nats.errors.Error:
        pass  # refused outright
    else:
        assert len(client._server_pool) == 1
    assert nats_servers(" nats://a:1, nats://b:2 ,") == ["nats://a:1", "nats://b:2"]


async def test_migrate_again_with_r3_brings_an_r1_stream_and_bucket_to_three_copies(nats_cluster):
    """An installation that was provisioned R1 on the cluster moves to R3 by provisioning
    again with the new count: JetStream copies the data to the new replicas."""

    admin = nats_cluster.credentials("admin")
    await provision_all(nats_cluster.address, admin, replicas=1)
    nc = await nats_cluster.connect()
    try:
        js = nc.jetstream(timeout=5)
        await js.publish("crm.test.kept", b"1", headers={"Nats-Msg-Id": "kept"})
        assert (await js.stream_info("CRM")).config.num_replicas == 1
        await provision_all(nats_cluster.address, admin, replicas=3)
        stream = await js.stream_info("CRM")
        assert stream.config.num_replicas == 3 and stream.state.messages == 1
        assert (await js.stream_info("KV_ratelimits")).config.num_replicas == 3
    finally:
        await nc.close()
