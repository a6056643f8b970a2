"""Gateway tests: the real gateway app, served by uvicorn on a loopback port, in
front of stand-in services (small FastAPI apps, also served by uvicorn on
loopback ports). Nothing of the gateway is mocked; the stand-ins replace the
five services so these tests do not depend on their code.

A stand-in echoes what it received (service, method, path, query, headers,
body) on every route the real service has, and obeys two test knobs in the
query string: `sleep=<seconds>` and `status=<code>`. `/v1/customers/missing`
and `/v1/stakeholders/missing` are 404; `/v1/stakeholders/<kind>-...` is of that
kind. Its `/readyz` follows `state.ready`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from gateway.main import create_app
from gateway.server import protocol_class
from gateway.settings import SERVICES, GatewaySettings
from shared.db.migrations import upgrade
from tests.support import POSTGRES_URL, NatsServer, free_port, make_database_url

API_KEY = "test-admin-key-0123456789"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # leave the test runner's signal handlers alone
        yield


def client_of(url: str, **options: Any) -> httpx.AsyncClient:
    """An httpx client for a gateway served here. It drops an idle connection after 4 s, before
    the server's 5 s keep-alive timeout closes it: with both at 5 s, a request sent on a pooled
    connection just as the server closed it failed with ReadError (the session's `gw` client,
    idle between modules)."""

    return httpx.AsyncClient(base_url=url, limits=httpx.Limits(keepalive_expiry=4.0), **options)


@contextlib.asynccontextmanager
async def serve(app, port: int | None = None, http: Any = "auto", lifespan: str = "on"):
    """Serve an ASGI app with uvicorn on 127.0.0.1 (with the `http` protocol); yields its base URL.

    `lifespan="off"` for an app whose lifespan runs already (a service of tests.support's suite)."""

    port = port or free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan=lifespan, loop="none", http=http
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if task.done():
        task.result()
    assert server.started, "server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


# What each stand-in serves: the real services' routes, plus a few the gateway
# must not expose (DELETE on a customer, an internal path).
SERVICE_ROUTES: dict[str, list[tuple[str, str]]] = {
    "identify": [
        ("GET", "/v1/customers/export"),
        ("GET", "/v1/transactions/export"),
        ("GET", "/v1/customers"),
        ("POST", "/v1/customers"),
        ("GET", "/v1/customers/{customer_id}"),
        ("PATCH", "/v1/customers/{customer_id}"),
        ("DELETE", "/v1/customers/{customer_id}"),
        ("GET", "/v1/customers/{customer_id}/transactions"),
        ("POST", "/v1/transactions"),
        ("POST", "/v1/transactions:batch"),
        ("GET", "/v1/imports/{import_id}"),
        ("GET", "/v1/portfolio/segments"),
        ("GET", "/v1/internal/secrets"),
    ],
    "engage": [
        ("POST", "/v1/interactions"),
        ("GET", "/v1/interactions"),
        ("GET", "/v1/customers/{customer_id}/timeline"),
    ],
    "network": [
        ("POST", "/v1/stakeholders"),
        ("GET", "/v1/stakeholders"),
        ("GET", "/v1/stakeholders/{stakeholder_id}"),
        ("GET", "/v1/customers/{customer_id}/referrals"),
        ("GET", "/v1/events"),
    ],
    "value": [
        ("POST", "/v1/offers"),
        ("GET", "/v1/offers/{offer_id}"),
        ("POST", "/v1/offers/{offer_id}/redeem"),
        ("GET", "/v1/customers/{customer_id}/offers"),
        ("GET", "/v1/campaigns/{campaign_id}"),
        ("POST", "/v1/campaigns/{campaign_id}/launch"),
    ],
    "lifecycle": [
        ("GET", "/v1/customers/{customer_id}/lifecycle"),
    ],
}
for _service in SERVICE_ROUTES:
    SERVICE_ROUTES[_service].append(("GET", "/v1/ops/dead-letters"))


# What a stand-in's export streams: a header line, then EXPORT_CHUNKS chunks of lines.
EXPORT_CHUNKS = 64
EXPORT_LINE = b"0123456789abcdef" * 63 + b"0123456789abcd\r\n"  # 1 KiB
EXPORT_CHUNK = EXPORT_LINE * 64


@dataclass
class StandIn:
    name: str
    url: str = ""
    ready: bool = True
    requests: list[dict] = field(default_factory=list)
    # Set by a test: an export sends its first chunk, then waits for this before the rest.
    export_gate: asyncio.Event | None = None
    # Set by a test: the internal personal-data answer waits for this.
    personal_data_gate: asyncio.Event | None = None


def stand_in_app(state: StandIn) -> FastAPI:
    app = FastAPI(title=f"{state.name} stand-in", version="0.0.1")

    async def echo(request: Request) -> Any:
        body = await request.body()
        seen = {
            "service": state.name,
            "method": request.method,
            "path": request.url.path,
            "raw_path": request.scope.get("raw_path", b"").decode("latin-1"),
            "query": request.url.query,
            "headers": dict(request.headers.items()),
            "body": body.decode("utf-8", "replace"),
        }
        state.requests.append(seen)
        params = request.query_params
        if "sleep" in params:
            await asyncio.sleep(float(params["sleep"]))
        if request.path_params.get("customer_id") == "missing":
            return JSONResponse({"error": "not_found", "detail": "no such customer"}, status_code=404)
        stakeholder = request.path_params.get("stakeholder_id")
        if stakeholder is not None:
            if stakeholder == "missing":
                return JSONResponse({"error": "not_found", "detail": "no such stakeholder"}, status_code=404)
            seen["kind"] = stakeholder.split("-")[0]  # `partner-p1` is a partner
        status = int(params.get("status", 200))
        headers = {"x-upstream": state.name, "x-request-id": "upstream-must-not-override"}
        path = request.url.path
        if path.endswith(("/timeline", "/offers", "/referrals")) and request.method == "GET":
            # Lists come as cursor pages, as the real services answer them.
            return JSONResponse({"items": [seen], "next_cursor": None}, status_code=status, headers=headers)
        return JSONResponse(seen, status_code=status, headers=headers)

    async def export(request: Request) -> Any:
        if request.query_params.get("format") == "xlsx":
            return JSONResponse({"error": "validation_error", "detail": []}, status_code=422)

        async def lines():
            yield b"id,name\r\n"
            if state.export_gate is not None:
                await state.export_gate.wait()
            for _ in range(EXPORT_CHUNKS):
                yield EXPORT_CHUNK

        return StreamingResponse(
            lines(),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": 'attachment; filename="export.csv"'},
        )

    for method, path in SERVICE_ROUTES[state.name]:
        handler = export if path.endswith("/export") else echo
        app.add_api_route(path, handler, methods=[method], name=f"{method.lower()}_{path}")

    @app.get("/internal/customers/{customer_id}/personal-data")
    async def personal_data(customer_id: str):
        # As shared/privacy/export.py answers: `missing` is unknown to identify, and for
        # `broken` lifecycle fails.
        if state.personal_data_gate is not None:
            await state.personal_data_gate.wait()
        if customer_id == "missing" and state.name == "identify":
            return JSONResponse({"error": "not_found", "detail": "no such customer"}, status_code=404)
        if customer_id == "broken" and state.name == "lifecycle":
            return JSONResponse({"error": "internal_error", "detail": "boom"}, status_code=500)
        rows = [{"customer_id": customer_id, "note": f"{state.name} holds this"}]
        table = {"table": f"{state.name}_things", "purpose": "a test", "personal": ["note"], "rows": rows}
        return {"service": state.name, "customer_id": customer_id, "customer_ids": [customer_id], "tables": [table]}

    @app.get("/readyz")
    async def readyz():
        if state.ready:
            return {"status": "ready", "checks": {"database": "ok"}}
        return JSONResponse({"status": "not ready", "checks": {"database": "down"}}, status_code=503)

    return app


@pytest.fixture(scope="session")
async def stand_ins():
    """The five stand-in services, running for the whole session."""

    async with contextlib.AsyncExitStack() as stack:
        result = {}
        for name in SERVICES:
            state = StandIn(name)
            state.url = await stack.enter_async_context(serve(stand_in_app(state)))
            result[name] = state
        yield result


@pytest.fixture(scope="session")
def nats_stub(tmp_path_factory):
    """A real nats-server with the suite's users: the gateway's /readyz logs in as its own."""

    server = NatsServer(tmp_path_factory.mktemp("nats") / "jetstream")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def dead_url():
    """An http URL where nothing listens, for the whole session: its port stays bound (not
    listening, so a connection is refused), so no other process can take it meanwhile. A
    port merely found free once was taken by the other xdist worker's suite, and the
    "dead" service answered (401, 200 from /readyz)."""

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{held.getsockname()[1]}"


def gateway_settings(stand_ins: dict[str, StandIn], nats: NatsServer, tmp_dir, **overrides) -> GatewaySettings:
    values: dict[str, Any] = {f"{name}_url": state.url for name, state in stand_ins.items()}
    values.update(
        nats_url=nats.address,
        nats_password=nats.credentials("gateway").password,
        var_dir=tmp_dir,
        access_log_flush_s=0,
        request_timeout_s=5.0,
        composition_timeout_s=1.0,
        ready_timeout_s=1.0,
        openapi_retry_s=0.0,
    )
    values.update(overrides)
    return GatewaySettings(**values)


@pytest.fixture(scope="session")
async def start_gateway(stand_ins, nats_stub, tmp_path_factory):
    """Start a gateway with settings overrides; yields an httpx client bound to it."""

    async with contextlib.AsyncExitStack() as stack:

        async def start(**overrides) -> httpx.AsyncClient:
            var = tmp_path_factory.mktemp("var")
            if POSTGRES_URL and "database_url" not in overrides:  # the gateway's own database on PostgreSQL too
                overrides["database_url"], drop = await make_database_url("gateway", var)
                stack.push_async_callback(drop)
            settings = gateway_settings(stand_ins, nats_stub, var, **overrides)
            await asyncio.to_thread(upgrade, "gateway", settings.database_url)
            app = create_app(settings, admin_key=API_KEY)
            # Served as `python -m gateway` serves it: with its own protocol (gateway/server.py).
            url = await stack.enter_async_context(serve(app, http=protocol_class(settings)))
            client = await stack.enter_async_context(client_of(url, timeout=10.0))
            client.gateway_app = app  # type: ignore[attr-defined]
            return client

        yield start


@pytest.fixture
async def database(tmp_path):
    """A fresh gateway database, migrated (several gateways of one test may share it)."""

    url, drop = await make_database_url("gateway", tmp_path)
    await asyncio.to_thread(upgrade, "gateway", url)
    yield url
    await drop()


@pytest.fixture(scope="session")
async def gw(start_gateway):
    """A gateway in front of all five stand-ins."""

    return await start_gateway()
