"""Unknown query parameters are 422 on every route, never ignored (issue 10, point 7)."""

from __future__ import annotations

import importlib
import re
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI, Query
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from shared.http.query_params import UnknownQueryGuard, _entries
from shared.settings import service_settings

SERVICES = ("identify", "engage", "network", "value", "lifecycle")
UNKNOWN = {
    "error": "validation_error",
    "detail": [{"field": "query.colour", "message": "unknown query parameter", "type": "extra_forbidden"}],
}


def _unknown(response: httpx.Response) -> None:
    assert response.status_code == 422, (response.request.url, response.text)
    assert response.json() == UNKNOWN, response.request.url


SECRET = "query-params-internal-secret"


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}:]+(:path)?\}", lambda m: "a/b" if m.group(1) else "x", path)


@pytest.mark.parametrize("name", SERVICES)
async def test_every_get_route_of_every_service_refuses_an_unknown_parameter(name, tmp_path):
    """Walks the app's own route table: a route added later is covered without editing this test.
    The apps are not started: a request the guard let through would reach an endpoint without a
    database and fail with 500, not 422."""

    settings = service_settings(
        name, database_url=f"sqlite+aiosqlite:///{tmp_path}/{name}.db", var_dir=tmp_path, internal_secret=SECRET
    )
    app = importlib.import_module(f"services.{name}.main").create_app(settings)
    paths = sorted(
        {
            _concrete(route.path)
            for _, methods, route, _ in _entries(app)
            if route is not None and methods and "GET" in methods
        }
    )
    # Swagger UI's OAuth2 redirect page (FastAPI's, when it serves /docs) is read by its
    # script, not the server: left alone
    paths = [path for path in paths if path != app.swagger_ui_oauth2_redirect_url]
    assert {"/healthz", "/readyz", "/metrics", "/v1/ops/dead-letters", "/docs", "/openapi.json"} <= set(paths)
    assert len(paths) > 7, paths  # the service's own routes are there too
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    headers = {"x-valuechain-internal": SECRET}  # as the gateway sends it
    async with httpx.AsyncClient(transport=transport, base_url=f"http://{name}", headers=headers) as client:
        for path in paths:
            _unknown(await client.get(path, params={"colour": "red"}))


async def test_unknown_parameter_is_refused_before_anything_changes(suite):
    identify = await suite.start("identify")
    client = identify.client
    refused = await client.post("/v1/customers", params={"colour": "red"}, json={"email": "ada@example.com"})
    _unknown(refused)
    assert (await client.get("/v1/customers")).json()["items"] == []  # nothing was created

    customer = (await client.post("/v1/customers", json={"email": "ada@example.com"})).json()
    # a known parameter beside an unknown one: still refused, naming only the unknown one
    _unknown(await client.get("/v1/customers", params={"limit": 1, "colour": "red"}))
    assert (await client.get("/v1/customers", params={"limit": 1})).status_code == 200
    _unknown(await client.patch(f"/v1/customers/{customer['id']}", params={"colour": "red"}, json={"name": "A"}))
    assert (await client.get(f"/v1/customers/{customer['id']}")).json()["name"] is None
    for path in (
        "/healthz",
        "/readyz",
        "/metrics",
        "/docs",
        "/openapi.json",
        "/v1/ops/dead-letters",
        f"/v1/customers/{customer['id']}/transactions",
    ):
        _unknown(await client.get(path, params={"colour": "red"}))
    # several unknown parameters are all named
    both = await client.get("/v1/customers", params={"colour": "red", "size": "xl"})
    assert [d["field"] for d in both.json()["detail"]] == ["query.colour", "query.size"]
    # an unknown path or method is still FastAPI's 404 / 405
    assert (await client.get("/v1/nothing", params={"colour": "red"})).status_code == 404
    assert (await client.delete("/v1/customers", params={"colour": "red"})).status_code == 405


async def test_light_read_path_refuses_any_query_parameter(suite):
    """GET /v1/customers/{id} is served by shared/http/fast_reads.py, which skips FastAPI's validation."""

    identify = await suite.start("identify")
    assert identify.app.state.light_reads is not None
    customer = (await identify.client.post("/v1/customers", json={"email": "ada@example.com"})).json()
    url = f"/v1/customers/{customer['id']}"
    assert (await identify.client.get(url)).status_code == 200
    _unknown(await identify.client.get(url, params={"colour": "red"}))
    # an empty value is still a parameter the route does not take
    empty = await identify.client.get(url + "?colour")
    assert empty.status_code == 422 and empty.json()["detail"][0]["field"] == "query.colour"
    metrics = (await identify.client.get("/metrics")).text
    assert 'route="/v1/customers/{customer_id}",service="identify",status="422"} 2.0' in metrics


async def test_repeated_parameter_that_is_not_a_list_is_refused(suite):
    identify = await suite.start("identify")
    twice = await identify.client.get("/v1/customers?limit=1&limit=2")
    assert twice.status_code == 422
    assert twice.json()["detail"] == [
        {
            "field": "query.limit",
            "type": "multiple_values",
            "message": "given more than once; this parameter takes one value",
        }
    ]
    # a list parameter repeats freely (portfolio's Pareto shares)
    shares = await identify.client.get("/v1/portfolio/pareto?top=0.2&top=0.5")
    assert shares.status_code != 422, shares.text


async def test_a_nul_in_a_query_value_is_refused_naming_the_parameter(suite):
    """PostgreSQL cannot compare text holding a NUL: these filters were 500s there."""

    identify = await suite.start("identify")
    for path, name, value in (
        ("/v1/customers", "external_id", "a\x00b"),
        ("/v1/customers", "email", "a\x00b@x.com"),
        ("/v1/customers", "q", "ab\x00c"),
        ("/v1/transactions", "customer_id", "a\x00b"),
    ):
        response = await identify.client.get(path, params={name: value})
        assert response.status_code == 422, (path, name, response.text)
        assert response.json()["detail"] == [
            {"field": f"query.{name}", "message": "must not contain a NUL character", "type": "value_error"}
        ]
    # the same values without the NUL are ordinary filters
    assert (await identify.client.get("/v1/customers", params={"external_id": "ab"})).json()["items"] == []


class Filters(BaseModel):
    kind: str | None = None
    tags: list[str] = []


def paging(cursor: str | None = None):
    return cursor


async def things(
    filters: Annotated[Filters, Query()],
    from_: Annotated[str | None, Query(alias="from")] = None,
    cursor=Depends(paging),
):
    return {"from": from_, "kind": filters.kind, "tags": filters.tags, "cursor": cursor}


async def _static(scope, receive, send):
    await PlainTextResponse(scope["query_string"].decode())(scope, receive, send)


async def test_aliases_and_query_models_are_known():
    """The name the client sends (an alias, a query model's fields, a dependency's) is the one accepted."""

    app = FastAPI()
    app.add_middleware(UnknownQueryGuard, fastapi_app=app)
    app.mount("/files", _static)  # a mount serves what it serves (e.g. `?v=` cache busters)...
    app.get("/things")(things)  # ...and the routes after it are still checked
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        ok = await client.get("/things?from=a&kind=b&tags=c&tags=d&cursor=e")
        assert ok.json() == {"from": "a", "kind": "b", "tags": ["c", "d"], "cursor": "e"}
        refused = await client.get("/things?from_=a")
        assert refused.status_code == 422 and refused.json()["detail"][0]["field"] == "query.from_"
        assert (await client.get("/things?kind=a&kind=b")).json()["detail"][0]["type"] == "multiple_values"
        assert (await client.get("/redoc?colour=red")).status_code == 422
        assert (await client.get("/files/app.js?v=3")).text == "v=3"
