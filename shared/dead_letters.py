"""`GET /v1/ops/dead-letters`: the events a service's consumers gave up on."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import select

from shared.deps import ReadSession
from shared.messaging import MessagingTables
from shared.pagination import CursorParam, InvalidCursor, LimitParam, decode_cursor, page_of


class DeadLetterOut(BaseModel):
    id: int
    consumer: str
    event_id: str | None
    subject: str | None
    error: str
    deliveries: int
    failed_at: datetime
    body: str


class DeadLetterPage(BaseModel):
    items: list[DeadLetterOut]
    next_cursor: str | None = None


def dead_letters_router(messaging: MessagingTables) -> APIRouter:
    router = APIRouter(tags=["operations"])
    table = messaging.dead_letters

    @router.get("/v1/ops/dead-letters", response_model=DeadLetterPage)
    async def list_dead_letters(session: ReadSession, limit: LimitParam = 50, cursor: CursorParam = None) -> dict[str, Any]:
        """Events this service's consumers gave up on, newest first."""
        query = select(table).order_by(table.c.id.desc()).limit(limit + 1)
        key = decode_cursor(cursor, 1)
        if key is not None:
            try:
                before = int(key[0])
            except (TypeError, ValueError) as exc:
                raise InvalidCursor("cursor is not one this API issued") from exc
            query = query.where(table.c.id < before)
        rows = (await session.execute(query)).mappings().all()
        rows, next_cursor = page_of(list(rows), limit, lambda row: (row["id"],))
        items = [dict(row, body=row["body"].decode("utf-8", "replace")) for row in rows]
        return {"items": items, "next_cursor": next_cursor}

    return router
