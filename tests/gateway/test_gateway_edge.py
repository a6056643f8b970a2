"""Limits at the edge (issue 12, part 2): rate limits per key with the IETF RateLimit
fields, body size limits, CORS preflights, security headers, the strict CSP of /docs.
Uploads streamed through the gateway: tests/gateway/test_gateway_edge_upload.py."""

from __future__ import annotations

import contextlib
import re

import httpx
import pytest

from gateway.main import create_app
from gateway.proxy import CORS_ALLOW_HEADERS, _response_headers
from gateway.ratelimit import RateLimiter
from gateway.settings import DEFAULT_RATE_LIMITS, GatewaySettings
from shared.http.docs_ui import CSP
from tests.gateway.conftest import API_KEY, AUTH, gateway_settings, serve

ORIGIN = "http://localhost:3000"
# RateLimit: "policy";r=<remaining>;t=<seconds> (a structured-field List of one Item).
RATELIMIT = re.compile(r'^"admin";r=(\d+);t=(\d+)$')
SECURITY = {"x-content-type-options": "nosniff", "x-frame-options": "DENY", "referrer-policy": "no-referrer"}


def assert_security_headers(response: httpx.Response, *, personal: bool) -> None:
    for name, value in SECURITY.items():
        assert response.headers.get_list(name) == [value], (name, response.request.url)
    if personal:
        assert response.headers.get_list("cache-control") == ["no-store"], response.request.url


# -- the limiter ---------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_bursts_its_quota_then_refills_evenly():
    clock = Clock()
    limiter = RateLimiter({"readonly": 60, "agent": 6}, window_s=60, clock=clock)
    decisions = [limiter.take("k1", "agent") for _ in range(7)]
    assert [d.allowed for d in decisions] == [True] * 6 + [False]
    assert [d.remaining for d in decisions] == [5, 4, 3, 2, 1, 0, 0]
    assert decisions[0].policy_header == (b"ratelimit-policy", b'"agent";q=6;w=60')
    assert decisions[0].header == (b"ratelimit", b'"agent";r=5;t=10')  # one token back every 10 s
    refused = decisions[-1]
    assert (refused.retry_after_s, refused.reset_s) == (10, 60)
    assert refused.retry_after == (b"retry-after", b"10")
    clock.now += 9.9
    assert not limiter.take("k1", "agent").allowed
    clock.now += 0.2
    assert limiter.take("k1", "agent").allowed
    # Another key has its own bucket; a role without a policy gets readonly's.
    assert limiter.take("k2", "agent").remaining == 5
    assert limiter.take("k3", "no-such-role").policy_header == (b"ratelimit-policy", b'"readonly";q=60;w=60')


def test_replicas_split_the_budget_and_full_buckets_are_forgotten():
    clock = Clock()
    limiter = RateLimiter({"readonly": 10}, window_s=60, replicas=2, clock=clock)
    assert sum(limiter.take("k", "readonly").allowed for _ in range(10)) == 5
    assert limiter.policy("readonly") == (b"ratelimit-policy", b'"readonly";q=5;w=60')
    assert len(limiter) == 1
    clock.now += 61  # refilled: the next take (of any key) sweeps it away
    limiter.take("other", "readonly")
    assert len(limiter) == 1
    assert limiter.take("k", "readonly").remaining == 4  # a full bucket again


def test_rate_limit_settings_merge_over_the_defaults_and_refuse_zero():
    settings = GatewaySettings(rate_limits={"agent": 5})
    assert settings.rate_limits == {**DEFAULT_RATE_LIMITS, "agent": 5}
    assert set(DEFAULT_RATE_LIMITS) == {"admin", "manager", "agent", "marketer", "analyst", "partner", "readonly"}
    with pytest.raises(ValueError):
        GatewaySettings(rate_limits={"agent": 0})
    assert GatewaySettings(workers=3).gateway_replicas() == 3
    assert GatewaySettings(workers=3, replicas=4).gateway_replicas() == 4


def test_the_limit_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("VALUECHAIN_GATEWAY_RATE_LIMITS", '{"partner": 42}')
    monkeypatch.setenv("VALUECHAIN_GATEWAY_REPLICAS", "2")
    settings = GatewaySettings()
    assert (settings.rate_limits["partner"], settings.rate_limits["admin"]) == (42, DEFAULT_RATE_LIMITS["admin"])
    assert settings.gateway_replicas() == 2


# -- rate limits through the gateway -----------------------------------------


async def test_every_authenticated_answer_says_the_limit_and_the_429_says_when(start_gateway):
    gw = await start_gateway(rate_limits={"admin": 4}, rate_limit_window_s=3600)
    answers = [
        await gw.get("/v1/customers/c1", headers=AUTH),  # proxied
        await gw.get("/v1/nowhere", headers=AUTH),  # the front's own 404
        await gw.get("/v1/customers/c1/360", headers=AUTH),  # the gateway's FastAPI route
        await gw.post("/v1/customers/c1", headers=AUTH),  # 405
    ]
    assert [a.status_code for a in answers] == [200, 404, 200, 405]
    for left, answer in zip([3, 2, 1, 0], answers, strict=True):
        assert answer.headers.get_list("ratelimit-policy") == ['"admin";q=4;w=3600']
        match = RATELIMIT.match(answer.headers["ratelimit"])
        assert match and int(match[1]) == left, answer.headers["ratelimit"]
        assert "retry-after" not in answer.headers
        assert_security_headers(answer, personal=True)

    refused = await gw.get("/v1/customers/c1", headers=AUTH)
    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited" and refused.json()["detail"]
    assert int(refused.headers["retry-after"]) == 900  # one token every 3600/4 s
    assert refused.headers["ratelimit"] == '"admin";r=0;t=3600'
    assert refused.headers["ratelimit-policy"] == '"admin";q=4;w=3600'
    assert_security_headers(refused, personal=True)

    # Unauthenticated answers and the open paths carry no limit (there is no key to count).
    for response in (await gw.get("/v1/customers/c1"), await gw.get("/healthz")):
        assert "ratelimit" not in response.headers and "ratelimit-policy" not in response.headers
    assert (await gw.get("/healthz")).status_code == 200


async def test_two_gateway_processes_hold_the_combined_budget(stand_ins, nats_stub, tmp_path):
    """Two gateway apps with the same settings (2 replicas) serve one key: together they
    allow the quota, not twice it, however the requests are spread."""

    settings = gateway_settings(
        stand_ins, nats_stub, tmp_path, rate_limits={"admin": 10}, rate_limit_window_s=3600, replicas=2
    )
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        for _ in range(2):
            url = await stack.enter_async_context(serve(create_app(settings, admin_key=API_KEY)))
            clients.append(await stack.enter_async_context(httpx.AsyncClient(base_url=url, headers=AUTH)))
        # Uneven: three requests to the first for each to the second, then the rest alternately.
        order = [0, 0, 0, 1] * 3 + [0, 1] * 6
        statuses = [(await clients[i].get("/v1/customers/c1")).status_code for i in order]
    assert statuses.count(200) == 10
    assert set(statuses) == {200, 429}
    first = [s for i, s in zip(order, statuses, strict=True) if i == 0]
    assert first.count(200) == 5  # each process's share


# -- body size limits ------------------------------------------------------------


async def test_a_json_body_over_1_mib_is_413(start_gateway):
    gw = await start_gateway()
    assert gw.gateway_app.state.settings.max_request_body_bytes == 1024 * 1024  # the default
    big = b'{"name": "' + b"x" * (1024 * 1024) + b'"}'
    response = await gw.post("/v1/customers", headers={**AUTH, "content-type": "application/json"}, content=big)
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert_security_headers(response, personal=True)
    # Chunked, without a length: counted as it comes.
    response = await gw.post(
        "/v1/customers", headers={**AUTH, "content-type": "application/json"}, content=_chunks(big, 64 * 1024)
    )
    assert response.status_code == 413
    # A multipart body is an upload only on the upload route.
    multipart = {**AUTH, "content-type": "multipart/form-data; boundary=x"}
    assert (await gw.post("/v1/customers", headers=multipart, content=big)).status_code == 413
    small = b'{"name": "' + b"x" * 1000 + b'"}'
    assert (await gw.post("/v1/customers", headers=AUTH, content=small)).status_code == 200


async def _chunks(data: bytes, size: int):
    for start in range(0, len(data), size):
        yield data[start : start + size]


# -- CORS --------------------------------------------------------------------------


async def test_a_preflight_allows_only_the_api_headers_and_never_echoes(gw):
    response = await gw.options(
        "/v1/customers",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, x-evil, content-type",
        },
    )
    assert response.status_code == 204
    allowed = response.headers["access-control-allow-headers"]
    assert allowed == CORS_ALLOW_HEADERS.decode()
    assert {h.strip().lower() for h in allowed.split(",")} == {
        "authorization",
        "content-type",
        "idempotency-key",
        "if-match",
        "x-request-id",
        "x-correlation-id",
    }
    assert "x-evil" not in str(response.headers.raw).lower()
    assert_security_headers(response, personal=False)


async def test_browsers_may_read_the_limit_headers(gw):
    response = await gw.get("/v1/customers/c1", headers={**AUTH, "Origin": ORIGIN})
    exposed = {h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")}
    assert {"ratelimit", "ratelimit-policy", "retry-after", "x-request-id"} <= exposed


# -- security headers --------------------------------------------------------------


async def test_security_headers_on_every_kind_of_answer(gw, stand_ins):
    cases = [
        ("GET", "/v1/customers/c1", AUTH, 200, True),  # proxied
        ("GET", "/v1/customers/missing", AUTH, 404, True),  # a service's 404
        ("GET", "/v1/nowhere", AUTH, 404, True),  # the front's 404
        ("GET", "/v1/customers/c1", {}, 401, True),
        ("GET", "/v1/customers/c1/360", AUTH, 200, True),  # the gateway's own /v1 route
        ("GET", "/healthz", {}, 200, False),
        ("GET", "/nowhere", {}, 404, False),
        ("GET", "/docs", {}, 200, False),
    ]
    for method, path, headers, status, personal in cases:
        response = await gw.request(method, path, headers=headers)
        assert response.status_code == status, path
        assert_security_headers(response, personal=personal)
    # A service's error answer gets them too.
    response = await gw.get("/v1/customers/c1", headers=AUTH, params={"status": "503"})
    assert response.status_code == 503
    assert_security_headers(response, personal=True)


def test_a_services_own_security_and_limit_headers_give_way_to_the_gateways():
    service = [
        (b"content-type", b"application/json"),
        (b"cache-control", b"max-age=3600"),
        (b"x-frame-options", b"SAMEORIGIN"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"unsafe-url"),
        (b"ratelimit", b'"svc";r=1;t=1'),
        (b"ratelimit-policy", b'"svc";q=1;w=1'),
        (b"retry-after", b"5"),  # a service's 503 may say when to retry: passed on
    ]
    assert _response_headers(service) == [(b"content-type", b"application/json"), (b"retry-after", b"5")]


async def test_docs_has_a_strict_csp_and_everything_it_loads_is_served(gw):
    page = await gw.get("/docs")
    csp = page.headers["content-security-policy"]
    assert csp == CSP
    directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in csp and "http" not in csp
    # Every script and stylesheet the page names is served here (no inline ones: the CSP
    # would block them); the docs test in test_gateway_openapi.py checks their bytes.
    for url in re.findall(r'(?:src|href)="([^"]+)"', page.text):
        assert url.startswith("/docs/"), url
        asset = await gw.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["x-content-type-options"] == "nosniff"
    assert re.search(r"<script>|<style|\son\w+=", page.text) is None


async def test_the_merged_document_names_the_429_on_every_v1_operation(gw):
    doc = (await gw.get("/openapi.json")).json()
    operations = [
        (method, path, operation)
        for path, item in doc["paths"].items()
        if path.startswith("/v1/")
        for method, operation in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]
    assert operations
    for method, path, operation in operations:
        assert "rate_limited" in operation["responses"]["429"]["description"], (method, path)
