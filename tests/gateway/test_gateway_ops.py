"""CORS, health, readiness, metrics, logs."""

from __future__ import annotations

import json

import pytest

from gateway.proxy import CORS_ALLOW_HEADERS
from tests.gateway.conftest import AUTH

ORIGIN = "http://localhost:3000"


async def test_preflight_works_without_a_key(gw):
    response = await gw.options(
        "/v1/customers",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in response.headers["access-control-allow-methods"]
    # The API's list, not an echo of the request (tests/gateway/test_gateway_edge.py).
    assert response.headers["access-control-allow-headers"] == CORS_ALLOW_HEADERS.decode()
    assert "Origin" in response.headers["vary"]


async def test_preflight_from_another_origin_is_refused(gw):
    response = await gw.options(
        "/v1/customers", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    )
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


async def test_simple_requests_get_cors_headers(gw):
    response = await gw.get("/v1/customers/c1", headers={**AUTH, "Origin": "http://127.0.0.1:3000"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "http://127.0.0.1:3000"
    assert "X-Request-ID" in response.headers["access-control-expose-headers"]
    # A 401 is readable by the frontend too.
    response = await gw.get("/v1/customers/c1", headers={"Origin": ORIGIN})
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == ORIGIN


async def test_foreign_origin_gets_no_cors_headers(gw):
    response = await gw.get("/v1/customers/c1", headers={**AUTH, "Origin": "https://evil.example"})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


async def test_cors_origins_setting(start_gateway):
    client = await start_gateway(cors_origins="https://crm.example.com, https://admin.example.com")
    headers = {"Origin": "https://admin.example.com", "Access-Control-Request-Method": "GET"}
    assert (await client.options("/v1/customers", headers=headers)).status_code == 204
    headers["Origin"] = ORIGIN
    assert (await client.options("/v1/customers", headers=headers)).status_code == 400


async def test_healthz(gw):
    response = await gw.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["x-request-id"]


async def test_readyz_when_everything_is_ready(gw, stand_ins):
    response = await gw.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"identify", "engage", "network", "value", "lifecycle", "nats"}


async def test_readyz_names_a_service_that_is_not_ready(gw, stand_ins):
    stand_ins["lifecycle"].ready = False
    try:
        response = await gw.get("/readyz")
    finally:
        stand_ins["lifecycle"].ready = True
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert body["checks"]["lifecycle"] == "not ready: /readyz answered 503"
    assert body["checks"]["identify"] == "ready"


async def test_readyz_names_a_service_that_is_down(start_gateway, dead_url):
    client = await start_gateway(engage_url=dead_url)
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["engage"] == "not ready: unavailable"


async def test_readyz_needs_nats(start_gateway, dead_url):
    client = await start_gateway(nats_url=dead_url.replace("http://", "nats://"))
    response = await client.get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["nats"].startswith("not ready")
    assert checks["identify"] == "ready"


async def test_readyz_needs_nats_to_let_the_gateways_user_in(start_gateway):
    client = await start_gateway(nats_password="not-the-gateways-password")
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["nats"] == "not ready: NATS refused the gateway's credentials"


async def test_metrics_count_requests_by_route_and_status(start_gateway):
    client = await start_gateway()
    await client.get("/v1/customers/c1", headers=AUTH)
    await client.get("/v1/customers/c2", headers=AUTH)
    await client.get("/v1/customers/c2")
    response = await client.get("/metrics", headers=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'gateway_requests_total{method="GET",route="/v1/customers/{id}",status="200"} 2.0' in text
    assert 'gateway_requests_total{method="GET",route="/v1/customers/{id}",status="401"}' not in text
    assert 'gateway_requests_total{method="GET",route="unmatched",status="401"} 1.0' in text
    assert (
        'gateway_request_duration_seconds_bucket{le="0.1",method="GET",route="/v1/customers/{id}",status="200"}' in text
    )


async def test_one_json_log_line_per_request(start_gateway, capsys):
    client = await start_gateway()
    capsys.readouterr()
    await client.get(
        "/v1/customers/c1", headers={**AUTH, "X-Request-ID": "log-req-1", "X-Correlation-ID": "log-corr-1"}
    )
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    mine = [line for line in lines if line.get("request_id") == "log-req-1"]
    assert len(mine) == 1
    entry = mine[0]
    assert entry["level"] == "INFO"
    assert entry["correlation_id"] == "log-corr-1"
    assert entry["route"] == "/v1/customers/{id}"
    assert entry["service"] == "identify"
    assert entry["status"] == 200
    assert entry["duration_ms"] >= 0


@pytest.mark.parametrize("path", ["/healthz", "/v1/customers/c1/360"])
async def test_own_routes_carry_the_ids(gw, path):
    response = await gw.get(path, headers={**AUTH, "X-Request-ID": "own-1"})
    assert response.headers["x-request-id"] == "own-1"
    assert response.headers["x-correlation-id"] == "own-1"


async def test_access_log_batches_whole_lines(capsys):
    from gateway.observability import AccessLog

    log = AccessLog(flush_interval=60)
    capsys.readouterr()
    for i in range(200):
        log.write({"request_id": f"r{i}", "path": "/v1/x" * 10})
    assert capsys.readouterr().err == ""  # buffered
    log.flush()
    lines = capsys.readouterr().err.splitlines()
    assert [json.loads(line)["request_id"] for line in lines] == [f"r{i}" for i in range(200)]
    assert all(json.loads(line)["level"] == "INFO" for line in lines)


def test_the_gateway_logs_in_the_suites_format(capsys):
    """The request log's fast lines and every other line (the services' too) share one shape."""
    import logging
    import re

    from gateway.observability import AccessLog
    from shared.observability.logs import JsonFormatter

    AccessLog(flush_interval=0).write({"request_id": "r1", "status": 200})
    request_line = json.loads(capsys.readouterr().err)
    record = logging.LogRecord("gateway", logging.WARNING, __file__, 1, "created a new admin API key", None, None)
    record.fields = {"path": "/var/admin.key"}
    other_line = json.loads(JsonFormatter("gateway").format(record))
    head = ["time", "level", "service", "logger", "message"]
    assert list(request_line)[:5] == head and list(other_line)[:5] == head
    assert (request_line["level"], request_line["message"]) == ("INFO", "request")
    assert (other_line["level"], other_line["service"], other_line["path"]) == ("WARNING", "gateway", "/var/admin.key")
    iso_ms = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00")
    assert iso_ms.fullmatch(request_line["time"]) and iso_ms.fullmatch(other_line["time"])
