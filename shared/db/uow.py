"""One transaction: the state change and the events it emitted commit together."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.events.messaging import flush_events


@asynccontextmanager
async def transaction(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with factory() as session:
        async with session.begin():
            yield session
            emitted = await flush_events(session)
        if emitted:
            notify = session.info.get("notify")
            if notify:
                notify()  # wake the outbox relay: the events are committed now
