from __future__ import annotations

import asyncio
import uuid

import pytest

from gateway.routes import ROUTES, RouteTable, r
from tests.gateway.conftest import AUTH, EXPORT_CHUNK, EXPORT_CHUNKS

# (method, gateway path, service, path the service sees)
ROUTED = [
    ("GET", "/v1/customers", "identify", "/v1/customers"),
    ("POST", "/v1/customers", "identify", "/v1/customers"),
    ("GET", "/v1/customers/c1", "identify", "/v1/customers/c1"),
    ("PATCH", "/v1/customers/c1", "identify", "/v1/customers/c1"),
    ("GET", "/v1/customers/c1/transactions", "identify", "/v1/customers/c1/transactions"),
    ("POST", "/v1/transactions", "identify", "/v1/transactions"),
    ("POST", "/v1/transactions:batch", "identify", "/v1/transactions:batch"),
    ("GET", "/v1/imports/i1", "identify", "/v1/imports/i1"),
    ("GET", "/v1/portfolio/segments", "identify", "/v1/portfolio/segments"),
    ("GET", "/v1/customers/c1/lifecycle", "lifecycle", "/v1/customers/c1/lifecycle"),
    ("POST", "/v1/interactions", "engage", "/v1/interactions"),
    ("GET", "/v1/interactions", "engage", "/v1/interactions"),
    ("GET", "/v1/customers/c1/timeline", "engage", "/v1/customers/c1/timeline"),
    ("POST", "/v1/stakeholders", "network", "/v1/stakeholders"),
    ("GET", "/v1/stakeholders", "network", "/v1/stakeholders"),
    ("GET", "/v1/stakeholders/s1", "network", "/v1/stakeholders/s1"),
    ("GET", "/v1/customers/c1/referrals", "network", "/v1/customers/c1/referrals"),
    ("POST", "/v1/offers", "value", "/v1/offers"),
    ("GET", "/v1/offers/o1", "value", "/v1/offers/o1"),
    ("POST", "/v1/offers/o1/redeem", "value", "/v1/offers/o1/redeem"),
    ("GET", "/v1/customers/c1/offers", "value", "/v1/customers/c1/offers"),
    *[
        ("GET", f"/v1/ops/{s}/dead-letters", s, "/v1/ops/dead-letters")
        for s in ("identify", "engage", "network", "value", "lifecycle")
    ],
]


@pytest.mark.parametrize("method, path, service, upstream_path", ROUTED)
async def test_each_route_reaches_its_service(gw, method, path, service, upstream_path):
    response = await gw.request(method, path, headers=AUTH, json={"x": 1} if method in ("POST", "PATCH") else None)
    assert response.status_code == 200, response.text
    seen = response.json()
    if "items" in seen:
        seen = seen["items"][0]
    assert (seen["service"], seen["method"], seen["path"]) == (service, method, upstream_path)
    assert response.headers["x-upstream"] == service


async def test_query_body_and_headers_are_forwarded(gw):
    response = await gw.post(
        "/v1/customers?source=web&tag=a&tag=b",
        headers={
            **AUTH,
            "Idempotency-Key": "idem-1",
            "X-Request-ID": "req-123",
            "X-Correlation-ID": "corr-456",
            "Accept": "application/json",
            "X-Custom": "kept",
        },
        content=b'{"email": "ada@example.com"}',
    )
    assert response.status_code == 200
    seen = response.json()
    assert seen["query"] == "source=web&tag=a&tag=b"
    assert seen["body"] == '{"email": "ada@example.com"}'
    headers = seen["headers"]
    assert headers["idempotency-key"] == "idem-1"
    assert headers["x-request-id"] == "req-123"
    assert headers["x-correlation-id"] == "corr-456"
    assert headers["accept"] == "application/json"
    assert headers["x-custom"] == "kept"
    assert headers["content-length"] == str(len(b'{"email": "ada@example.com"}'))
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert "authorization" not in headers
    # The client's ids come back, not the upstream's.
    assert response.headers["x-request-id"] == "req-123"
    assert response.headers["x-correlation-id"] == "corr-456"


async def test_ids_are_minted_when_absent(gw):
    response = await gw.get("/v1/customers/c1", headers=AUTH)
    request_id = response.headers["x-request-id"]
    assert uuid.UUID(request_id).version == 4
    assert response.headers["x-correlation-id"] == request_id
    assert response.json()["headers"]["x-request-id"] == request_id
    assert response.json()["headers"]["x-correlation-id"] == request_id


async def test_correlation_id_alone_is_kept(gw):
    response = await gw.get("/v1/customers/c1", headers={**AUTH, "X-Correlation-ID": "flow-9"})
    assert response.headers["x-correlation-id"] == "flow-9"
    assert response.headers["x-request-id"] != "flow-9"


async def test_malformed_request_id_is_replaced(gw):
    response = await gw.get("/v1/customers/c1", headers={**AUTH, "X-Request-ID": "x" * 500})
    assert response.headers["x-request-id"] != "x" * 500


async def test_upstream_status_and_headers_are_returned(gw):
    response = await gw.post("/v1/offers?status=201", headers=AUTH, json={})
    assert response.status_code == 201
    assert response.headers["x-upstream"] == "value"
    assert response.headers["content-type"] == "application/json"
    assert response.headers.get("transfer-encoding") is None
    assert response.headers["x-request-id"] != "upstream-must-not-override"


async def test_upstream_errors_pass_through(gw):
    response = await gw.get("/v1/customers/missing", headers=AUTH)
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "no such customer"}


async def test_percent_encoding_is_forwarded_unchanged(gw):
    response = await gw.get("/v1/customers/a%20b", headers=AUTH)
    assert response.status_code == 200
    assert response.json()["raw_path"] == "/v1/customers/a%20b"


@pytest.mark.parametrize(
    "path",
    [
        "/v1/nothing",
        "/v1/customers/c1/unknown",
        "/v1/internal/secrets",
        "/v1/customers/",
        "/v1/customers/a%2Fb",
        "/v1/customers/..",
        "/v1/ops/billing/dead-letters",
        "/v1/ops/dead-letters",
    ],
)
async def test_unknown_v1_path_is_404(gw, path):
    response = await gw.get(path, headers=AUTH)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert response.headers["content-type"] == "application/json"


async def test_known_path_with_wrong_method_is_405(gw):
    response = await gw.delete("/v1/customers/c1", headers=AUTH)
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"
    assert response.headers["allow"] == "GET, PATCH"


@pytest.mark.parametrize(
    "path, allow",
    [
        ("/v1/imports/i1", "GET"),
        ("/v1/imports/i1/errors", "GET"),
        ("/v1/portfolio/refits", "GET, POST"),
        ("/v1/portfolio/model", "GET"),
        ("/v1/customers", "GET, POST"),
    ],
)
async def test_options_is_405_allowing_only_what_the_services_serve(gw, path, allow):
    # Subtree routes used to allow GET and POST on every path under /v1/imports and
    # /v1/portfolio, so a 405 advertised methods that then answered 405 again.
    response = await gw.options(path, headers=AUTH)
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    assert (await gw.post("/v1/imports/i1", headers=AUTH)).status_code == 405


async def test_other_paths_are_json_404(gw):
    response = await gw.get("/nowhere")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


async def test_request_body_limit(start_gateway):
    client = await start_gateway(max_request_body_bytes=100)
    response = await client.post("/v1/customers", headers=AUTH, content=b"x" * 101)
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert (await client.post("/v1/customers", headers=AUTH, content=b"x" * 100)).status_code == 200


# -- the route table itself --------------------------------------------------


def test_every_route_is_matched_by_its_own_pattern():
    table = RouteTable()
    for route in ROUTES:
        for method in route.methods:
            path = "/".join("abc" if part.startswith("{") else part for part in route.pattern.split("/"))
            assert table.match(method, path).route is route, (method, route.pattern)


def test_literal_segments_win_over_placeholders():
    table = RouteTable()
    assert table.match("GET", "/v1/customers/c1/360").route.service is None
    assert table.match("GET", "/v1/customers/c1").route.service == "identify"
    export = table.match("GET", "/v1/customers/export").route
    assert export.pattern == "/v1/customers/export" and export.stream
    assert table.match("PATCH", "/v1/customers/export").route.pattern == "/v1/customers/{id}"


async def test_exports_stream_through_the_gateway_without_being_buffered(gw, stand_ins):
    """The stand-in sends its first line, then holds the rest until the test has read
    that line through the gateway: a gateway that buffered answers whole never would."""

    state = stand_ins["identify"]
    state.export_gate = asyncio.Event()
    try:
        for path in ("/v1/customers/export", "/v1/transactions/export"):
            state.export_gate.clear()
            async with gw.stream("GET", path, params={"format": "csv"}, headers=AUTH) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/csv")
                assert response.headers["content-disposition"] == 'attachment; filename="export.csv"'
                assert "content-length" not in response.headers and response.headers["x-request-id"]
                chunks = response.aiter_raw()
                # A guard against a hang, not a measurement: the line comes at once or never.
                first = await asyncio.wait_for(anext(chunks), timeout=30)
                assert first == b"id,name\r\n" and not state.export_gate.is_set()
                state.export_gate.set()
                size = len(first) + sum([len(chunk) async for chunk in chunks])
            assert size == len(b"id,name\r\n") + EXPORT_CHUNKS * len(EXPORT_CHUNK)
    finally:
        state.export_gate = None
    # An error answer (here a 422) comes through the streaming path too.
    response = await gw.get("/v1/customers/export", params={"format": "xlsx"}, headers=AUTH)
    assert response.status_code == 422 and response.json()["error"] == "validation_error"
    # The connection went back to the pool: the next request is served as usual.
    assert (await gw.get("/v1/customers", headers=AUTH)).status_code == 200


def test_a_method_on_a_less_specific_route_is_found():
    table = RouteTable(
        [r("GET", "/v1/things/{id}", "a", scope="ops"), r("POST", "/v1/things/special", "b", scope="ops")]
    )
    assert table.match("GET", "/v1/things/special").route.service == "a"
    assert table.match("POST", "/v1/things/special").route.service == "b"
    assert table.match("DELETE", "/v1/things/special").allowed == frozenset({"POST"})


def test_subtree_routes():
    table = RouteTable(
        [
            r("GET POST", "/v1/imports/{rest:path}", "identify", scope="imports:write"),
            r("GET POST", "/v1/portfolio/{rest:path}", "identify", scope="portfolio:read"),
        ]
    )
    assert table.match("POST", "/v1/imports/i1/rows").route.service == "identify"
    assert table.match("GET", "/v1/portfolio/a/b/c").route.service == "identify"
    assert table.match("GET", "/v1/portfolio").route is None
    assert table.match("GET", "/v1/imports/i1/../../ops").route is None


def test_duplicate_routes_are_refused():
    with pytest.raises(ValueError, match="duplicate"):
        RouteTable([r("GET", "/v1/a/{id}", "x", scope="ops"), r("GET POST", "/v1/a/{other}", "y", scope="ops")])


def test_rewrites_need_static_patterns():
    with pytest.raises(ValueError):
        RouteTable([r("GET", "/v1/a/{id}", "x", scope="ops", upstream="/v1/b")])


async def test_the_gateways_own_routes_refuse_unknown_query_parameters(gw):
    """Health, readiness, metrics, OpenAPI, docs and the 360 view are the gateway's own routes:
    it checks their query strings as the services check theirs (shared/http/query_params.py)."""

    unknown = {
        "error": "validation_error",
        "detail": [{"field": "query.colour", "message": "unknown query parameter", "type": "extra_forbidden"}],
    }
    for path, headers in (
        ("/healthz", {}),
        ("/readyz", {}),
        ("/metrics", AUTH),
        ("/openapi.json", {}),
        ("/docs", {}),
        ("/v1/customers/c1/360", AUTH),
    ):
        response = await gw.get(path, params={"colour": "red"}, headers=headers)
        assert response.status_code == 422, (path, response.text)
        assert response.json() == unknown
        assert response.headers["x-request-id"]
    assert (await gw.get("/v1/customers/c1/360", headers=AUTH)).status_code == 200
    # without the key the 360 view is still 401 first: the key is checked before anything else
    assert (await gw.get("/v1/customers/c1/360", params={"colour": "red"})).status_code == 401


async def test_proxied_routes_leave_query_parameters_to_the_service(gw, stand_ins):
    """The route table knows paths, not parameters: the query string goes to the service
    unchanged, and what the service answers (its 422 for an unknown one) comes back."""

    response = await gw.get("/v1/customers", params={"colour": "red", "status": "422"}, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["query"] == "colour=red&status=422"
