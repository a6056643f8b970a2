"""Next best offer over HTTP."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from services.value.nbo import service
from services.value.nbo.schemas import NextBestOffer
from shared.events.contracts import MessageChannel
from shared.http.deps import ReadSession

router = APIRouter(prefix="/v1", tags=["value"])


@router.get("/customers/{customer_id}/next-best-offer", response_model=NextBestOffer)
async def next_best_offer(
    customer_id: str,
    session: ReadSession,
    channel: Annotated[
        MessageChannel | None, Query(description="Only if the customer consented to marketing on it")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=50, description="How many offers to rank")] = 5,
):
    """The offer templates the customer is eligible for, ranked by expected value: the
    response probability for the customer's segment (Beta–Binomial, learned from past
    redemptions) × the expected order value − the offer's cost; each factor shown, and the
    templates left out with the reason."""
    return await service.next_best_offer(session=session, customer_id=customer_id, channel=channel, limit=limit)
