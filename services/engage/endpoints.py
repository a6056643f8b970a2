"""engage's HTTP API (thin: translate HTTP into service calls)."""

from __future__ import annotations

from fastapi import APIRouter, Query, status

from services.engage import service
from services.engage.schemas import InteractionCreate, InteractionOut, InteractionPage, TimelinePage
from shared.http.deps import ReadSession, WriteSession
from shared.http.pagination import PagingByTime

router = APIRouter(prefix="/v1", tags=["engage"])


@router.post("/interactions", status_code=status.HTTP_201_CREATED, response_model=InteractionOut)
async def log_interaction(body: InteractionCreate, session: WriteSession):
    """Log a two-way interaction with a customer (the customer must be known to engage)."""
    return await service.log_interaction(session=session, data=body)


@router.get("/interactions", response_model=InteractionPage)
async def list_interactions(
    session: ReadSession,
    page: PagingByTime,
    customer_id: str = Query(description="Whose interactions"),
):
    """A customer's interactions, newest first."""
    rows = await service.list_interactions(
        session=session, customer_id=customer_id, before=page.after, limit=page.fetch
    )
    return page.of(rows, lambda i: (i["occurred_at"], i["id"]))


@router.get("/interactions/{interaction_id}", response_model=InteractionOut)
async def get_interaction(interaction_id: str, session: ReadSession):
    """One interaction."""
    return await service.get_interaction(session=session, interaction_id=interaction_id)


@router.get("/customers/{customer_id}/timeline", response_model=TimelinePage)
async def customer_timeline(customer_id: str, session: ReadSession, page: PagingByTime):
    """Everything that happened to the customer across the suite, newest first."""
    rows = await service.timeline(session=session, customer_id=customer_id, before=page.after, limit=page.fetch)
    return page.of(rows, lambda e: (e["time"], e["event_id"]))
