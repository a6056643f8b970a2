"""/v1/api-keys (scope `keys:admin`) and /v1/me (any caller).

The front (gateway/proxy.py) has already resolved the caller and checked the route's
scope before a request gets here; these handlers read the principal from the scope.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Depends, Request, Response, status
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.access import keys
from gateway.access.resolver import AccessResolver
from gateway.access.roles import ROLES, scopes_of
from gateway.access.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut, ApiKeyPage, ApiKeyRotate, MeOut
from gateway.audit.writer import annotate
from gateway.deps import Caller, InsufficientScope, ReadSession, WriteSession
from gateway.upstream import UpstreamError
from shared.http.errors import AppError, Conflict, NotFound, field_error
from shared.http.pagination import PagingById

router = APIRouter(prefix="/v1", tags=["gateway"])


class NetworkUnavailable(AppError):
    status_code = 502
    error = "bad_gateway"


def _resolver(request: Request) -> AccessResolver:
    resolver = request.app.state.access
    assert isinstance(resolver, AccessResolver)
    return resolver


Resolver = Annotated[AccessResolver, Depends(_resolver)]


def _out(key: keys.ApiKey, resolver: AccessResolver) -> dict[str, Any]:
    pending = resolver.last_used(key.id)
    last_used: datetime | None = key.last_used_at
    if pending is not None and (last_used is None or pending > last_used):
        last_used = pending
    return {
        **{
            field: getattr(key, field)
            for field in ApiKeyOut.model_fields
            if field not in ("scopes", "event_types", "last_used_at")
        },
        "scopes": keys.extra_scopes(key),
        "event_types": keys.event_types(key),
        "last_used_at": last_used,
    }


async def _key(session: Any, key_id: str) -> keys.ApiKey:
    key = await keys.get(session, key_id)
    if key is None:
        raise NotFound(f"no API key with id {key_id}")
    return key


async def _check_stakeholder(request: Request, field: str, stakeholder_id: str, kind: str) -> None:
    """The key's partner or person must be a network stakeholder of that kind (asked once, at creation)."""

    upstreams = request.app.front.upstreams
    if upstreams is None:
        raise StarletteHTTPException(503, "gateway is not started")
    target = f"/v1/stakeholders/{quote(stakeholder_id, safe='')}".encode("ascii")
    request_id = request.scope.get("valuechain.request_id") or ""
    headers = f"accept: application/json\r\nx-request-id: {request_id}\r\n".encode("latin-1")
    settings = request.app.state.settings
    try:
        answer = await upstreams["network"].request("GET", target, headers, timeout=settings.composition_timeout_s)
    except UpstreamError:
        raise NetworkUnavailable(f"network unavailable: cannot check {field}") from None
    if answer.status == 404:
        raise field_error(field, f"no stakeholder {stakeholder_id} in network")
    if answer.status != 200:
        raise NetworkUnavailable(f"network answered {answer.status}: cannot check {field}")
    found = orjson.loads(answer.body).get("kind")
    if found != kind:
        raise field_error(field, f"stakeholder {stakeholder_id} is a {found}, not a {kind}")


@router.post("/api-keys", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated)
async def create_api_key(
    body: ApiKeyCreate, caller: Caller, session: WriteSession, resolver: Resolver, request: Request
) -> dict[str, Any]:
    """Make a key; the answer's `key` is the secret, shown this once."""
    if body.role == "partner" and body.partner_id is None:
        raise field_error("body.partner_id", "a partner key needs the partner's stakeholder id")
    if body.role != "partner" and body.partner_id is not None:
        raise field_error("body.partner_id", "only a partner key belongs to a partner")
    if body.partner_id is not None:
        await _check_stakeholder(request, "body.partner_id", body.partner_id, "partner")
    if body.person_id is not None:
        await _check_stakeholder(request, "body.person_id", body.person_id, "employee")
    # No one hands out more than they hold: a keys:admin with extra scopes cannot mint an admin.
    missing = sorted(scopes_of(body.role, tuple(body.scopes)) - caller.scopes)
    if missing:
        raise InsufficientScope(f"you cannot grant scopes you do not hold: {', '.join(missing)}")
    key, token = await keys.create(
        session,
        name=body.name,
        role=body.role,
        scopes=[s for s in body.scopes if s not in ROLES[body.role]],
        expires_at=body.expires_at,
        partner_id=body.partner_id,
        person_id=body.person_id,
        event_types=body.event_types,
    )
    # The audit entry names the new key (its id is in no path yet) with its name and role.
    annotate(request.scope, resources=[key.id], name=key.name, role=key.role)
    return {**_out(key, resolver), "key": token}


@router.get("/api-keys", response_model=ApiKeyPage)
async def list_api_keys(session: ReadSession, page: PagingById, resolver: Resolver) -> dict[str, Any]:
    """Every key, revoked ones included, oldest first; never a secret."""
    rows = await keys.list_keys(session, after_id=page.after_value, limit=page.fetch)
    return page.of(rows, lambda key: (key.id,), lambda key: _out(key, resolver))


@router.get("/api-keys/{key_id}", response_model=ApiKeyOut)
async def get_api_key(key_id: str, session: ReadSession, resolver: Resolver) -> dict[str, Any]:
    """One key; never its secret."""
    return _out(await _key(session, key_id), resolver)


@router.delete("/api-keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def revoke_api_key(key_id: str, session: WriteSession, resolver: Resolver) -> Response:
    """Revoke a key (every secret of it); it stays listed with `revoked_at`. Revoking twice is a no-op."""
    await keys.revoke(session, await _key(session, key_id))
    resolver.forget()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/api-keys/{key_id}/rotate", response_model=ApiKeyCreated)
async def rotate_api_key(
    key_id: str, session: WriteSession, resolver: Resolver, request: Request, body: ApiKeyRotate | None = None
) -> dict[str, Any]:
    """A new secret for the key; the old one keeps working for `overlap_seconds` (default 24 h)."""
    key = await _key(session, key_id)
    if key.revoked_at is not None:
        raise Conflict(f"API key {key_id} is revoked")
    overlap = (body or ApiKeyRotate()).overlap_seconds
    token = await keys.rotate(session, key, overlap=timedelta(seconds=overlap))
    annotate(request.scope, action="rotate", name=key.name, role=key.role, overlap_seconds=overlap)
    resolver.forget()
    return {**_out(key, resolver), "key": token}


@router.get("/me", response_model=MeOut)
async def me(caller: Caller) -> dict[str, Any]:
    """Who is calling, with which role and scopes: a frontend shows only what the caller may do."""
    return {
        "id": caller.id,
        "kind": caller.kind,
        "role": caller.role,
        "scopes": sorted(caller.scopes),
        "partner_id": caller.partner_id,
        "person_id": caller.person_id,
        "event_types": list(caller.event_types) if caller.event_types is not None else None,
    }
