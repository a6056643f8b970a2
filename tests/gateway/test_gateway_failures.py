"""Upstream failures: 502 when a service is down, 504 when it is too slow."""

from __future__ import annotations

import time

import pytest

from tests.gateway.conftest import AUTH


async def test_service_down_is_502(start_gateway, dead_url):
    client = await start_gateway(value_url=dead_url)
    response = await client.get("/v1/offers/o1", headers=AUTH)
    assert response.status_code == 502
    assert response.json() == {"error": "bad_gateway", "detail": "value unavailable"}
    assert response.headers["x-request-id"]
    # Other services are unaffected.
    assert (await client.get("/v1/customers/c1", headers=AUTH)).status_code == 200
    metrics = (await client.get("/metrics", headers=AUTH)).text
    assert 'gateway_upstream_errors_total{kind="unavailable",service="value"} 1.0' in metrics


async def test_slow_service_is_504_within_the_timeout(start_gateway):
    client = await start_gateway(request_timeout_s=0.3)
    started = time.monotonic()
    response = await client.get("/v1/customers/c1?sleep=2", headers=AUTH)
    elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert response.json() == {"error": "gateway_timeout", "detail": "identify timed out"}
    assert elapsed < 1.5
    # The connection that timed out is dropped; the next request works.
    assert (await client.get("/v1/customers/c1", headers=AUTH)).status_code == 200


async def test_a_route_with_its_own_timeout_waits_longer(start_gateway):
    # A campaign's launch answers once every offer is issued (gateway/routes.py: timeout_s=300).
    client = await start_gateway(request_timeout_s=0.3)
    slow = await client.post("/v1/campaigns/k1/launch?sleep=0.8", headers=AUTH)
    assert slow.status_code == 200, slow.text
    assert (await client.get("/v1/campaigns/k1?sleep=0.8", headers=AUTH)).status_code == 504


async def test_many_concurrent_requests_share_few_connections(start_gateway, stand_ins):
    import asyncio

    client = await start_gateway(pool_max_connections=4)
    responses = await asyncio.gather(*(client.get(f"/v1/customers/c{i}", headers=AUTH) for i in range(40)))
    assert [r.status_code for r in responses] == [200] * 40
    assert [r.json()["path"] for r in responses] == [f"/v1/customers/c{i}" for i in range(40)]
    pool = client.gateway_app.front.upstreams["identify"]
    assert pool.open_connections <= 4


async def test_an_unexpected_error_is_a_json_500_on_both_paths(start_gateway, monkeypatch):
    import gateway.main

    client = await start_gateway()

    async def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    # The proxy path (the front's own code) ...
    monkeypatch.setattr(client.gateway_app.front.upstreams.pools["identify"], "request", broken)
    response = await client.get("/v1/customers/c1", headers=AUTH)
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "internal_error" and response.headers["x-request-id"] in body["detail"]
    assert "a bug" not in body["detail"]  # the log has the exception, the client only the id
    # ... and the gateway's own FastAPI routes.
    monkeypatch.setattr(gateway.main, "compose_360", broken)
    response = await client.get("/v1/customers/c1/360", headers=AUTH)
    assert response.status_code == 500 and response.json()["error"] == "internal_error"


# -- services that misbehave (issue 19): a raw server stands in for value ---------------


async def test_headers_named_in_the_services_connection_header_stay_behind(start_gateway):
    from tests.gateway.test_gateway_upstream import raw_server, read_request, response

    async def hop_by_hop(reader, writer, state):
        while True:
            await read_request(reader)
            extra = b"connection: keep-alive, X-Hop-Secret,x-other-hop\r\n"
            extra += b"x-hop-secret: s\r\nx-other-hop: o\r\nx-kept: k\r\n"
            writer.write(response(b"{}", extra=extra))
            await writer.drain()

    async with raw_server(hop_by_hop) as (url, _state):
        client = await start_gateway(value_url=url)
        got = await client.get("/v1/offers/o1", headers=AUTH)
        assert got.status_code == 200 and got.headers["x-kept"] == "k"
        assert "x-hop-secret" not in got.headers and "x-other-hop" not in got.headers
        assert "keep-alive" not in got.headers.get("connection", "")


async def endless_headers(reader, writer):
    writer.write(b"HTTP/1.1 200 OK\r\n")
    for _ in range(64 * 1024):  # 64 MiB at most: the gateway stops reading long before
        writer.write(b"x-filler: " + b"a" * 1000 + b"\r\n")
        await writer.drain()


def answering(raw: bytes):
    """An answer that sends `raw` and waits for the gateway to hang up."""

    async def answer(reader, writer):
        writer.write(raw)
        await writer.drain()
        await reader.read()

    return answer


async def framed_by_close(reader, writer):
    # No Content-Length, not chunked: the body ends when the connection does, so an
    # answer cut short looks complete. Refused (docs/operations.md says why).
    writer.write(b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{"complete": ')
    await writer.drain()
    writer.close()


MISBEHAVING = {
    "endless-headers": endless_headers,
    "101": answering(b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n"),
    "close-framed": framed_by_close,
    # De-chunked by llhttp, the body stayed gzipped and the gateway dropped the header
    # that said so: the client got bytes it could not read.
    "gzip-chunked": answering(b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"),
    # Three digits, but no status (RFC 9110 15): the gateway's server cannot write it.
    "status-999": answering(b"HTTP/1.1 999 Whatever\r\ncontent-length: 2\r\n\r\n{}"),
}


@pytest.mark.parametrize("answer", list(MISBEHAVING.values()), ids=list(MISBEHAVING))
async def test_a_misbehaving_service_is_a_502(start_gateway, answer):
    from tests.gateway.test_gateway_upstream import raw_server, read_request

    async def misbehave(reader, writer, state):
        await read_request(reader)
        await answer(reader, writer)

    async with raw_server(misbehave) as (url, _state):
        client = await start_gateway(value_url=url)
        got = await client.get("/v1/offers/o1", headers=AUTH)
        assert got.status_code == 502
        assert got.json() == {"error": "bad_gateway", "detail": "value unavailable"}
