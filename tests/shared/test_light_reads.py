"""The light path for simple reads answers exactly what FastAPI answers.

Every request is sent twice, once with the light path installed and once with
FastAPI routing it, and the two answers must be the same bytes (status, headers,
body), found or not, valid or not, whichever route FastAPI's order picks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import ClassVar

import pytest
from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy import Column, MetaData, String, Table, bindparam, insert, select
from sqlalchemy.orm import DeclarativeBase

from shared.db.database import NAMING_CONVENTION, UTCDateTime
from shared.events.messaging import messaging_tables
from shared.http.deps import ReadSession, _read_session, open_read_session
from shared.http.errors import NotFound
from shared.service.runtime import ServiceDefinition


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)  # the service's own
    __table__: ClassVar[Table]  # every model maps one table (SQLAlchemy types it a FromClause)


messaging = messaging_tables(Base.metadata)
things = Table(
    "things",
    Base.metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(100), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
)
_READ_THING = select(things).where(things.c.id == bindparam("thing_id"))


class ThingOut(BaseModel):
    id: str
    name: str | None
    created_at: datetime


router = APIRouter(prefix="/v1", tags=["things"])


@router.get("/things/special", response_model=ThingOut)
async def special_thing(session: ReadSession, flavour: str = "plain"):
    """Declared before /things/{thing_id}, so FastAPI picks it for this path."""
    return {"id": f"special-{flavour}", "name": None, "created_at": datetime(2026, 1, 1, tzinfo=UTC)}


@router.get("/things/{thing_id}", response_model=ThingOut)
async def get_thing(thing_id: str, session: ReadSession):
    row = (await session.execute(_READ_THING, {"thing_id": thing_id})).mappings().first()
    if row is None:
        raise NotFound(f"no thing with id {thing_id}")
    return row


@router.get("/numbers/{number}", response_model=dict[str, int])
async def get_number(number: int, session: ReadSession):
    return {"number": number, "double": number * 2}


@router.get("/broken/{thing_id}", response_model=ThingOut)
async def broken(thing_id: str, session: ReadSession):
    return {"id": thing_id}  # fails response validation: FastAPI answers 500


DEFINITION = ServiceDefinition(
    name="lightprobe",
    description="light read path test",
    metadata=Base.metadata,
    messaging=messaging,
    routers=[router],
)

PATHS = [
    "/v1/things/t-1",  # found
    "/v1/things/t-2",  # a NULL column
    "/v1/things/missing",  # NotFound from the endpoint
    "/v1/things/special",  # an earlier route with a query parameter: FastAPI's
    "/v1/things/special?flavour=sour",
    "/v1/numbers/21",
    "/v1/numbers/twenty-one",  # invalid path parameter: 422
    "/v1/things/t-1/more",  # no route: 404
    "/healthz",
]


@pytest.fixture
async def service(suite):
    handle = await suite.start_definition(DEFINITION)
    async with handle.runtime.db.writer() as session, session.begin():
        await session.execute(
            insert(things),
            [
                {"id": "t-1", "name": "One", "created_at": datetime(2026, 11, 1, 10, 0, tzinfo=UTC)},
                {"id": "t-2", "name": None, "created_at": datetime(2026, 11, 2, 10, 0, 0, 5, tzinfo=UTC)},
            ],
        )
    return handle


async def fetch(handle, path: str, *, light: bool):
    light_reads = handle.app.state.light_reads
    if not light:
        handle.app.state.light_reads = None
    try:
        response = await handle.client.get(path, headers={"x-request-id": "rid-1"})
    finally:
        handle.app.state.light_reads = light_reads
    return response.status_code, list(response.headers.raw), response.content


async def test_the_simple_reads_get_the_light_path(service):
    light_reads = service.app.state.light_reads
    assert light_reads is not None

    def route_of(path):
        chosen = light_reads.select({"type": "http", "method": "GET", "path": path, "root_path": ""})
        return chosen and chosen[1].path

    assert route_of("/v1/things/t-1") == "/v1/things/{thing_id}"
    assert route_of("/v1/numbers/2") == "/v1/numbers/{number}"
    assert route_of("/v1/things/special") is None  # a query parameter: FastAPI serves it
    assert route_of("/v1/ops/dead-letters") is None
    assert route_of("/v1/nothing") is None


@pytest.mark.parametrize("path", PATHS)
async def test_the_light_path_answers_what_fastapi_answers(service, path):
    light = await fetch(service, path, light=True)
    fastapi = await fetch(service, path, light=False)
    assert light == fastapi
    assert light[0] in (200, 404, 422)


async def test_a_found_row_reads_back_exactly(service):
    status, _, body = await fetch(service, "/v1/things/t-2", light=True)
    assert status == 200
    assert body == b'{"id":"t-2","name":null,"created_at":"2026-11-02T10:00:00.000005Z"}'


async def test_a_response_that_fails_validation_is_the_same_json_500_on_both_paths(service):
    # FastAPI raises ResponseValidationError; the services' catch-all answers it.
    light = await fetch(service, "/v1/broken/x", light=True)
    heavy = await fetch(service, "/v1/broken/x", light=False)
    assert light[0] == heavy[0] == 500
    assert (
        light[2]
        == heavy[2]
        == (b'{"error":"internal_error","detail":"an unexpected error; it was logged with request id rid-1"}')
    )


async def test_dependency_overrides_turn_the_light_path_off(service):
    calls = []

    async def counting_session(request: Request):
        calls.append(1)
        return open_read_session(request.app, request.scope)

    service.app.dependency_overrides[_read_session] = counting_session
    try:
        status, _, _ = await fetch(service, "/v1/things/t-1", light=True)
    finally:
        service.app.dependency_overrides.clear()
    assert status == 200
    assert calls == [1]


@contextmanager
def light_path_served(handle) -> Iterator[list[bool]]:
    """Record, request by request, whether the light path served it (True) or handed it to
    FastAPI (False); requests it does not take at all are not recorded."""

    light_routes = handle.app.state.light_reads
    served: list[bool] = []
    select = light_routes.select

    def recording_select(scope):
        chosen = select(scope)
        if chosen is None:
            return None
        handler, route, params = chosen

        async def recording(scope, receive, send):
            served.append(await handler(scope, receive, send))
            return served[-1]

        return recording, route, params

    light_routes.select = recording_select
    try:
        yield served
    finally:
        del light_routes.select


async def test_the_light_path_serves_found_rows_and_hands_errors_to_fastapi(service):
    with light_path_served(service) as served:
        for path in ("/v1/things/t-1", "/v1/numbers/3", "/v1/things/missing", "/v1/numbers/three"):
            await service.client.get(path)
    assert served == [True, True, False, False]
