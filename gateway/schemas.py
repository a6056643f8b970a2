"""The public JSON Schemas of the events (`GET /v1/schemas`, `/v1/schemas/<type>/v<n>.json`).

Generated from the contracts at the first request (shared/events/public.py), so they
cannot drift from what the services publish; every event's `dataschema` is the URL of its
schema here, under VALUECHAIN_PUBLIC_BASE_URL. Public: they are the catalog partners
read, with no data in them (docs/partners.md, "Public contracts and versioning").
"""

from __future__ import annotations

from functools import lru_cache

import orjson
from fastapi import APIRouter, Request, Response

from shared.events.contracts import CATALOG
from shared.events.public import PUBLIC_TYPES, public_schema, schema_index
from shared.http.errors import NotFound

router = APIRouter(prefix="/v1", tags=["gateway"])
SCHEMA_TYPE = "application/schema+json"


@lru_cache(maxsize=8)
def _index(base_url: str) -> bytes:
    return orjson.dumps(schema_index(base_url))


@lru_cache(maxsize=1024)
def _schema(base_url: str, event_type: str, version: str) -> bytes | None:
    contract = CATALOG.get(event_type)
    if contract is None or event_type not in PUBLIC_TYPES or version != f"v{contract.version}.json":
        return None
    return orjson.dumps(public_schema(contract, base_url))


def _base(request: Request) -> str:
    base: str = request.app.state.settings.public_base_url
    return base


@router.get("/schemas", summary="Every public event type with its version and the URL of its JSON Schema")
async def list_schemas(request: Request) -> Response:
    return Response(_index(_base(request)), media_type="application/json")


@router.get(
    "/schemas/{event_type}/{version}",
    summary="An event type's JSON Schema (of the CloudEvent's `data`), as its `dataschema` names it",
    responses={200: {"content": {SCHEMA_TYPE: {}}}, 404: {"description": "No such public type or version"}},
)
async def get_schema(event_type: str, version: str, request: Request) -> Response:
    body = _schema(_base(request), event_type, version)
    if body is None:
        raise NotFound(f"no schema {event_type}/{version}: see GET /v1/schemas for the public types and versions")
    return Response(body, media_type=SCHEMA_TYPE)
