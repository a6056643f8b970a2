"""Replicas of a service behind one gateway (issue 17 §1): two identify stand-ins, each a
real uvicorn server on its own loopback port, listed in VALUECHAIN_GATEWAY_IDENTIFY_URL.
Requests reach both; a stopped replica leaves the rotation without a failed request (the
one that finds it refused goes to the other), a started one comes back; none left is a
503 naming the service; /readyz counts them."""

from __future__ import annotations

import contextlib

import httpx
import pytest

from gateway.main import create_app
from gateway.server import protocol_class
from gateway.settings import GatewaySettings
from gateway.upstream import NoHealthyReplica, ReplicaSet, ServicePool
from tests.gateway.conftest import API_KEY, AUTH, StandIn, free_port, gateway_settings, serve, stand_in_app
from tests.support import wait_until


class Replica:
    """A stand-in of identify that a test stops and starts again on the same port."""

    def __init__(self) -> None:
        self.state = StandIn("identify")
        self.port = free_port()
        self.state.url = f"http://127.0.0.1:{self.port}"
        self._stack: contextlib.AsyncExitStack | None = None

    async def start(self) -> None:
        self._stack = contextlib.AsyncExitStack()
        await self._stack.enter_async_context(serve(stand_in_app(self.state), port=self.port))

    async def stop(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    def seen(self) -> int:
        return len(self.state.requests)


@pytest.fixture
async def replicas():
    pair = [Replica(), Replica()]
    for replica in pair:
        await replica.start()
    try:
        yield pair
    finally:
        for replica in pair:
            await replica.stop()


@pytest.fixture
async def gw2(stand_ins, nats_stub, database, tmp_path, replicas):
    """A gateway of the test's own (its health checks end with it) whose identify is the two
    replicas, checked every 0.1 s."""

    settings = gateway_settings(
        stand_ins,
        nats_stub,
        tmp_path,
        database_url=database,
        identify_url=",".join(replica.state.url for replica in replicas),
        replica_check_interval_s=0.1,
    )
    app = create_app(settings, admin_key=API_KEY)
    async with (
        serve(app, http=protocol_class(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=10.0) as client,
    ):
        client.gateway_app = app  # type: ignore[attr-defined]
        yield client


def identify_set(client) -> ReplicaSet:
    upstream = client.gateway_app.front.upstreams["identify"]
    assert isinstance(upstream, ReplicaSet)
    return upstream


async def test_requests_reach_every_replica(gw2, replicas):
    for i in range(10):
        response = await gw2.get(f"/v1/customers/c{i}", headers=AUTH)
        assert response.status_code == 200, response.text
    # One at a time: nothing is under way anywhere, so the replicas take turns.
    assert [replica.seen() for replica in replicas] == [5, 5]
    # Other services keep their one URL and their plain pool.
    assert isinstance(gw2.gateway_app.front.upstreams["engage"], ServicePool)


async def test_a_stopped_replica_leaves_the_rotation_and_comes_back_when_started(gw2, replicas):
    first, second = replicas
    await second.stop()
    # Not one request fails: those that find the stopped replica refused go to the other,
    # POSTs too (nothing was sent), and it is out of the rotation from the first refusal on.
    for i in range(10):
        response = await gw2.post("/v1/customers", json={"n": i}, headers=AUTH)
        assert response.status_code == 200, response.text
    assert second.seen() == 0 and first.seen() == 10
    assert identify_set(gw2).healthy_count == 1

    ready = await gw2.get("/readyz")
    assert ready.status_code == 200  # one replica of identify is enough
    body = ready.json()
    assert body["checks"]["identify"] == "ready"
    assert body["replicas"]["identify"] == {
        "healthy": 1,
        "total": 2,
        "not_ready": {second.state.url: "not ready: unavailable"},
    }
    assert body["replicas"]["engage"] == {"healthy": 1, "total": 1}

    await second.start()
    await wait_until(lambda: identify_set(gw2).healthy_count == 2, what="the health check to put it back")
    for i in range(10):
        assert (await gw2.get(f"/v1/customers/c{i}", headers=AUTH)).status_code == 200
    assert second.seen() > 0
    assert (await gw2.get("/readyz")).json()["replicas"]["identify"] == {"healthy": 2, "total": 2}


async def test_a_replica_whose_readyz_fails_takes_no_requests_until_it_is_ready(gw2, replicas):
    second = replicas[1]
    second.state.ready = False
    await wait_until(lambda: identify_set(gw2).healthy_count == 1, what="the health check to take it out")
    before = second.seen()
    for i in range(6):
        assert (await gw2.get(f"/v1/customers/c{i}", headers=AUTH)).status_code == 200
    assert second.seen() == before
    body = (await gw2.get("/readyz")).json()
    assert body["replicas"]["identify"]["not_ready"] == {second.state.url: "not ready: /readyz answered 503"}

    second.state.ready = True
    await wait_until(lambda: identify_set(gw2).healthy_count == 2, what="the health check to put it back")
    for i in range(6):
        assert (await gw2.get(f"/v1/customers/c{i}", headers=AUTH)).status_code == 200
    assert second.seen() > before


async def test_no_healthy_replica_is_a_503_naming_the_service(gw2, replicas):
    for replica in replicas:
        await replica.stop()
    expected = {"error": "service_unavailable", "detail": "identify unavailable: no healthy replica"}
    # The first request finds both refused; the next ones find none in the rotation.
    for _ in range(3):
        response = await gw2.get("/v1/customers/c1", headers=AUTH)
        assert response.status_code == 503
        assert response.json() == expected
    ready = await gw2.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["identify"] == "not ready: unavailable"
    assert ready.json()["replicas"]["identify"]["healthy"] == 0
    metrics = (await gw2.get("/metrics", headers=AUTH)).text
    assert 'gateway_upstream_errors_total{kind="no_replica",service="identify"}' in metrics

    await replicas[0].start()
    await wait_until(lambda: identify_set(gw2).healthy_count == 1, what="the health check to put it back")
    assert (await gw2.get("/v1/customers/c1", headers=AUTH)).status_code == 200


async def test_a_request_that_reached_a_replica_is_not_sent_again(replicas):
    """Only a connection that could not be opened moves a request on: an answer that breaks
    off after the request went out is the client's 502, never a second POST elsewhere."""

    import asyncio

    async def cut_off(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()  # read the request, answer nothing

    server = await asyncio.start_server(cut_off, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        upstream = ReplicaSet("identify", [f"http://127.0.0.1:{port}", replicas[0].state.url])
        upstream._turn = len(upstream.replicas) - 1  # the cut-off one first
        with pytest.raises(Exception) as failure:
            await upstream.request("POST", b"/v1/customers", b"content-type: application/json\r\n", b"{}")
        assert not isinstance(failure.value, NoHealthyReplica)
        assert replicas[0].seen() == 0
        # It answered nothing but did accept: still in the rotation (its /readyz decides).
        assert upstream.healthy_count == 2
        await upstream.aclose()
    finally:
        server.close()
        await server.wait_closed()


def test_one_failed_check_is_not_enough_to_leave_the_rotation_a_refused_connection_is():
    upstream = ReplicaSet("identify", ["http://127.0.0.1:1", "http://127.0.0.1:2"])
    first, second = upstream.replicas
    upstream.checked(second, "not ready: timed out")  # a busy replica, once
    assert upstream.healthy_count == 2 and second.health == "not ready: timed out"
    upstream.checked(second, "not ready: /readyz answered 503")
    assert upstream.healthy_count == 1 and not second.healthy
    upstream.checked(second, "ready")
    assert upstream.healthy_count == 2 and second.health == "ready"
    upstream.checked(first, "not ready: unavailable", refused=True)  # the process is gone
    assert upstream.healthy_count == 1 and not first.healthy


def test_a_service_url_lists_its_replicas():
    settings = GatewaySettings(identify_url=" http://a:1/ , http://b:2")
    assert settings.identify_url == "http://a:1,http://b:2"
    assert settings.service_urls()["identify"] == ["http://a:1", "http://b:2"]
    assert GatewaySettings(engage_url='["http://a:1", "http://b:2"]').service_urls()["engage"] == [
        "http://a:1",
        "http://b:2",
    ]
    assert GatewaySettings().service_urls()["value"] == ["http://127.0.0.1:8104"]
    for bad in ("http://a:1,ftp://b", "http://a:1,http://a:1", " , ", "[1, 2]"):
        with pytest.raises(ValueError):
            GatewaySettings(identify_url=bad)
