"""The light path for simple writes answers exactly what FastAPI answers, and writes the same.

Every request is sent twice, each time on the same starting rows, once with the light path
installed and once with FastAPI routing it: the two answers must be the same bytes (status,
headers, body) and leave the same rows, whether the write is new, a duplicate, a conflict,
a bad body, or an endpoint or response that fails after it wrote (rolled back either way).
"""

from __future__ import annotations

from typing import ClassVar

import pytest
from fastapi import APIRouter, Response, status
from pydantic import BaseModel, Field
from sqlalchemy import Column, Integer, MetaData, String, Table, delete, insert, select
from sqlalchemy.orm import DeclarativeBase

from shared.db.database import NAMING_CONVENTION
from shared.events.messaging import messaging_tables
from shared.http.deps import WriteSession
from shared.http.errors import Conflict, NotFound
from shared.service.runtime import ServiceDefinition
from tests.shared.test_light_reads import light_path_served


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)  # the service's own
    __table__: ClassVar[Table]


messaging = messaging_tables(Base.metadata)
things = Table(
    "things",
    Base.metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("size", Integer, nullable=False),
)


class ThingIn(BaseModel):
    id: str = Field(min_length=1, max_length=36)
    name: str = Field(min_length=1, max_length=100)
    size: int = Field(ge=0)


class ThingOut(BaseModel):
    id: str
    name: str
    size: int


class Rename(BaseModel):
    name: str = Field(min_length=1, max_length=100)


router = APIRouter(prefix="/v1", tags=["things"])


@router.post("/things", status_code=status.HTTP_201_CREATED, response_model=ThingOut)
async def create_thing(body: ThingIn, session: WriteSession, response: Response):
    """201 when new; the same thing again is 200; another under its id is 409."""
    row = (await session.execute(select(things).where(things.c.id == body.id))).mappings().first()
    if row is not None:
        if dict(row) != body.model_dump():
            raise Conflict(f"thing {body.id} is another thing")
        response.status_code = status.HTTP_200_OK
        return row
    await session.execute(insert(things).values(**body.model_dump()))
    return body.model_dump()


@router.post("/things/{thing_id}/grow", response_model=ThingOut)
async def grow(thing_id: str, body: Rename, session: WriteSession):
    await session.execute(things.update().where(things.c.id == thing_id).values(name=body.name))
    row = (await session.execute(select(things).where(things.c.id == thing_id))).mappings().first()
    if row is None:
        raise NotFound(f"no thing with id {thing_id}")  # after the UPDATE: nothing to roll back but the call
    return row


@router.post("/sizes/{size}", status_code=status.HTTP_201_CREATED, response_model=ThingOut)
async def make_size(size: int, body: Rename, session: WriteSession):
    await session.execute(insert(things).values(id=f"size-{size}", name=body.name, size=size))
    return {"id": f"size-{size}", "name": body.name, "size": size}


@router.post("/broken", status_code=status.HTTP_201_CREATED, response_model=ThingOut)
async def broken(body: ThingIn, session: WriteSession):
    await session.execute(insert(things).values(**body.model_dump()))
    return {"id": body.id}  # fails response validation: 500, and the insert is rolled back


@router.post("/written-then-refused", response_model=ThingOut)
async def written_then_refused(body: ThingIn, session: WriteSession):
    await session.execute(insert(things).values(**body.model_dump()))
    raise Conflict("refused after writing: rolled back")


DEFINITION = ServiceDefinition(
    name="lightwrites",
    description="light write path test",
    metadata=Base.metadata,
    messaging=messaging,
    routers=[router],
)

JSON = {"content-type": "application/json"}
NEW = b'{"id":"t-new","name":"New","size":3}'
CASES = [
    ("new", "/v1/things", NEW, JSON),
    ("duplicate", "/v1/things", b'{"id":"t-1","name":"One","size":1}', JSON),
    ("conflict", "/v1/things", b'{"id":"t-1","name":"Other","size":1}', JSON),
    ("invalid field", "/v1/things", b'{"id":"t-x","name":"","size":-1}', JSON),
    ("missing field", "/v1/things", b'{"id":"t-x"}', JSON),
    ("not an object", "/v1/things", b"[1, 2]", JSON),
    ("malformed JSON", "/v1/things", b'{"id": "t-x",', JSON),
    ("NaN", "/v1/things", b'{"id":"t-x","name":"N","size":NaN}', JSON),
    ("empty body", "/v1/things", b"", JSON),
    ("another content type", "/v1/things", NEW, {"content-type": "text/plain"}),
    ("JSON with a charset", "/v1/things", NEW, {"content-type": "application/json; charset=utf-8"}),
    ("no content type", "/v1/things", NEW, {}),
    ("query parameter", "/v1/things?dry_run=1", NEW, JSON),
    ("path parameter", "/v1/things/t-1/grow", b'{"name":"Bigger"}', JSON),
    ("missing row after the write", "/v1/things/t-none/grow", b'{"name":"Bigger"}', JSON),
    ("typed path parameter", "/v1/sizes/7", b'{"name":"Seven"}', JSON),
    ("invalid path parameter", "/v1/sizes/seven", b'{"name":"Seven"}', JSON),
    ("response fails validation", "/v1/broken", NEW, JSON),
    ("refused after writing", "/v1/written-then-refused", NEW, JSON),
]


@pytest.fixture
async def service(suite):
    return await suite.start_definition(DEFINITION)


async def _fresh(handle) -> None:
    async with handle.runtime.db.writer() as session, session.begin():
        await session.execute(delete(things))
        await session.execute(insert(things), [{"id": "t-1", "name": "One", "size": 1}])


async def _rows(handle) -> list[tuple]:
    async with handle.runtime.db.reader() as session:
        return [tuple(row) for row in (await session.execute(select(things).order_by(things.c.id))).all()]


async def send(handle, path: str, body: bytes, headers: dict, *, light: bool):
    await _fresh(handle)
    light_routes = handle.app.state.light_reads
    if not light:
        handle.app.state.light_reads = None
    try:
        response = await handle.client.post(path, content=body, headers={"x-request-id": "rid-1", **headers})
    finally:
        handle.app.state.light_reads = light_routes
    return response.status_code, list(response.headers.raw), response.content, await _rows(handle)


@pytest.mark.parametrize(("case", "path", "body", "headers"), CASES, ids=[case[0] for case in CASES])
async def test_the_light_path_answers_and_writes_what_fastapi_does(service, case, path, body, headers):
    light = await send(service, path, body, headers, light=True)
    fastapi = await send(service, path, body, headers, light=False)
    assert light == fastapi
    assert light[0] in (200, 201, 400, 404, 409, 422, 500)


async def test_the_light_path_serves_good_writes_and_hands_the_rest_to_fastapi(service):
    await _fresh(service)
    answers = []
    with light_path_served(service) as served:
        for path, body in [
            ("/v1/things", NEW),  # new: light
            ("/v1/things", NEW),  # the same again, 200: light
            ("/v1/things", b'{"id":"t-new","name":"Other","size":3}'),  # 409: FastAPI
            ("/v1/things", b'{"id":"t-x"}'),  # 422: FastAPI
            ("/v1/broken", b'{"id":"t-b","name":"B","size":1}'),  # 500: FastAPI
        ]:
            answers.append((await service.client.post(path, content=body, headers=JSON)).status_code)
    assert answers == [201, 200, 409, 422, 500]
    assert served == [True, True, False, False, False]
    assert await _rows(service) == [("t-1", "One", 1), ("t-new", "New", 3)]
