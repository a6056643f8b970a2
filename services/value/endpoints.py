"""value's HTTP API."""

from __future__ import annotations

from fastapi import APIRouter, status

from services.value import service
from services.value.schemas import OfferCreate, OfferOut, OfferPage
from shared.deps import ReadSession, WriteSession
from shared.pagination import CursorParam, InvalidCursor, LimitParam, decode_cursor, page_of

router = APIRouter(prefix="/v1", tags=["value"])


@router.post("/offers", status_code=status.HTTP_201_CREATED, response_model=OfferOut)
async def create_offer(body: OfferCreate, session: WriteSession):
    """Issue an offer to a customer."""
    return await service.create_offer(session=session, data=body)


@router.get("/offers/{offer_id}", response_model=OfferOut)
async def get_offer(offer_id: str, session: ReadSession):
    """One offer; an issued offer past its expiry reads as `expired`."""
    return await service.get_offer(session=session, offer_id=offer_id)


@router.post("/offers/{offer_id}/redeem", response_model=OfferOut)
async def redeem_offer(offer_id: str, session: WriteSession):
    """Redeem an issued offer; a redeemed or expired one answers 409."""
    return await service.redeem(session=session, offer_id=offer_id)


@router.get("/customers/{customer_id}/offers", response_model=OfferPage)
async def list_offers(customer_id: str, session: ReadSession, limit: LimitParam = 50, cursor: CursorParam = None):
    """The customer's offers, newest first."""
    key = decode_cursor(cursor, 1)
    if key is not None and not isinstance(key[0], str):
        raise InvalidCursor("cursor is not one this API issued")
    rows = await service.offers_of(
        session=session, customer_id=customer_id, before_id=key[0] if key else None, limit=limit + 1
    )
    items, next_cursor = page_of(rows, limit, lambda offer: (offer["id"],))
    return {"items": items, "next_cursor": next_cursor}
