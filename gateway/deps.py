"""What the gateway's own /v1 handlers (API keys, /v1/me, the audit log, exports) depend on:
the caller the front resolved, the gateway's database, and the 403 they raise.

The front (gateway/proxy.py) resolves the caller and checks the route's scope before a
request reaches these handlers; a handler that guards something sensitive checks again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.principal import SCOPE_PRINCIPAL, Principal
from shared.db.database import Database
from shared.db.uow import transaction
from shared.http.errors import AppError


class InsufficientScope(AppError):
    status_code = 403
    error = "insufficient_scope"


def caller(request: Request) -> Principal:
    principal = request.scope.get(SCOPE_PRINCIPAL)
    if principal is None:  # only reachable through the front, which resolves the caller
        raise StarletteHTTPException(401, "missing or invalid API key", headers={"WWW-Authenticate": "Bearer"})
    assert isinstance(principal, Principal)
    return principal


def store(request: Request) -> Database:
    database = request.app.state.store
    if database is None:
        raise StarletteHTTPException(503, "gateway is not started")
    assert isinstance(database, Database)
    return database


async def _write(request: Request) -> AsyncIterator[AsyncSession]:
    async with transaction(store(request).writer) as session:
        yield session


async def _read(request: Request) -> AsyncIterator[Any]:
    async with store(request).reader() as session:
        yield session


Caller = Annotated[Principal, Depends(caller)]
Store = Annotated[Database, Depends(store)]
WriteSession = Annotated[AsyncSession, Depends(_write, scope="function")]
ReadSession = Annotated[AsyncSession, Depends(_read)]
