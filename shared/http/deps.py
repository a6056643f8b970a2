"""Typed FastAPI dependencies: one session per request.

A write session is one transaction: it commits (with its events) when the path
operation returns, before the response is sent, and rolls back on any error.
A read session never writes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import Scope

from shared.db.uow import transaction

# The request's read sessions, closed by RequestContextMiddleware after the response.
SESSIONS_TO_CLOSE = "valuechain.sessions_to_close"


async def _write_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with transaction(request.app.state.runtime.db.writer) as session:
        yield session


def open_read_session(app: Any, scope: Scope) -> AsyncSession:
    # On SQLite an InlineSession, which offers the read part of AsyncSession's API.
    session: AsyncSession = app.state.runtime.db.reader()
    scope[SESSIONS_TO_CLOSE].append(session)
    return session


async def _read_session(request: Request) -> AsyncSession:
    # A plain dependency, not a generator: FastAPI runs a generator dependency
    # through exit stacks, which cost ~30 µs of the ~300 µs a one-row read took.
    # A read needs no commit or rollback, only a close, which the middleware does.
    return open_read_session(request.app, request.scope)


WriteSession = Annotated[AsyncSession, Depends(_write_session, scope="function")]
ReadSession = Annotated[AsyncSession, Depends(_read_session)]
