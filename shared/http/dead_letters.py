"""`GET /v1/ops/dead-letters`: the events a service's consumers gave up on."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from sqlalchemy import select

from shared.events.messaging import MessagingTables
from shared.http.deps import ReadSession
from shared.http.pagination import INTEGER, Page, PageParams, page_params


class DeadLetterOut(BaseModel):
    id: int
    consumer: str
    event_id: str | None
    subject: str | None
    error: str
    deliveries: int
    failed_at: datetime
    body: str


class DeadLetterPage(Page[DeadLetterOut]):
    pass


DeadLetterPaging = Annotated[PageParams[tuple[int]], Depends(page_params(INTEGER))]  # by row id


def dead_letters_router(messaging: MessagingTables) -> APIRouter:
    router = APIRouter(tags=["operations"])
    table = messaging.dead_letters

    @router.get("/v1/ops/dead-letters", response_model=DeadLetterPage)
    async def list_dead_letters(session: ReadSession, page: DeadLetterPaging) -> dict[str, Any]:
        """Events this service's consumers gave up on, newest first."""
        query = select(table).order_by(table.c.id.desc()).limit(page.fetch)
        if page.after_value is not None:
            query = query.where(table.c.id < page.after_value)
        rows = (await session.execute(query)).mappings().all()
        return page.of(
            rows, lambda row: (row["id"],), lambda row: dict(row, body=row["body"].decode("utf-8", "replace"))
        )

    return router
