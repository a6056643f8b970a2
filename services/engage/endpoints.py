"""engage's HTTP API (thin: translate HTTP into service calls)."""

from __future__ import annotations


from fastapi import APIRouter, Query, status

from services.engage import service
from services.engage.schemas import InteractionCreate, InteractionOut, InteractionPage, TimelinePage
from shared.deps import ReadSession, WriteSession
from shared.pagination import CursorParam, LimitParam, decode_time_cursor, page_of

router = APIRouter(prefix="/v1", tags=["engage"])


@router.post("/interactions", status_code=status.HTTP_201_CREATED, response_model=InteractionOut)
async def log_interaction(body: InteractionCreate, session: WriteSession):
    """Log a two-way interaction with a customer (the customer must be known to engage)."""
    return await service.log_interaction(session=session, data=body)


@router.get("/interactions", response_model=InteractionPage)
async def list_interactions(
    session: ReadSession,
    customer_id: str = Query(description="Whose interactions"),
    limit: LimitParam = 50,
    cursor: CursorParam = None,
):
    """A customer's interactions, newest first."""
    rows = await service.list_interactions(
        session=session, customer_id=customer_id, before=decode_time_cursor(cursor), limit=limit + 1
    )
    items, next_cursor = page_of(rows, limit, lambda i: (i["occurred_at"].isoformat(), i["id"]))
    return {"items": items, "next_cursor": next_cursor}


@router.get("/interactions/{interaction_id}", response_model=InteractionOut)
async def get_interaction(interaction_id: str, session: ReadSession):
    """One interaction."""
    return await service.get_interaction(session=session, interaction_id=interaction_id)


@router.get("/customers/{customer_id}/timeline", response_model=TimelinePage)
async def customer_timeline(customer_id: str, session: ReadSession, limit: LimitParam = 50, cursor: CursorParam = None):
    """Everything that happened to the customer across the suite, newest first."""
    rows = await service.timeline(session=session, customer_id=customer_id, before=decode_time_cursor(cursor), limit=limit + 1)
    items, next_cursor = page_of(rows, limit, lambda e: (e["time"].isoformat(), e["event_id"]))
    return {"items": items, "next_cursor": next_cursor}
