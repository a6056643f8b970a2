"""Typed FastAPI dependencies: one session per request.

A write session is one transaction: it commits (with its events) when the path
operation returns, before the response is sent, and rolls back on any error.
A read session never writes.
"""

from __future__ import annotations

from typing import Annotated, AsyncIterator

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from shared.uow import transaction


async def _write_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with transaction(request.app.state.runtime.db.writer) as session:
        yield session


async def _read_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.runtime.db.reader() as session:
        yield session


WriteSession = Annotated[AsyncSession, Depends(_write_session, scope="function")]
ReadSession = Annotated[AsyncSession, Depends(_read_session, scope="function")]
