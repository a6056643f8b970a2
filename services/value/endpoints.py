"""value's HTTP API."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from services.value import service
from services.value.schemas import OfferCreate, OfferOut, OfferPage, OfferStatus
from shared.deps import ReadSession, WriteSession
from shared.pagination import CursorParam, InvalidCursor, LimitParam, decode_cursor, page_of

router = APIRouter(prefix="/v1", tags=["value"])


@router.post("/offers", status_code=status.HTTP_201_CREATED, response_model=OfferOut)
async def create_offer(body: OfferCreate, session: WriteSession):
    """Issue an offer to a customer."""
    return await service.create_offer(session=session, data=body)


@router.get("/offers", response_model=OfferPage, responses={404: {"description": "`customer_id` names no customer"}})
async def search_offers(
    session: ReadSession,
    customer_id: Annotated[str | None, Query(description="Only this customer's")] = None,
    kind: Annotated[str | None, Query(description="Only offers of this kind (e.g. `welcome`)")] = None,
    status: Annotated[OfferStatus | None, Query(description="Only offers in this state, as the offer shows it")] = None,
    limit: LimitParam = 50,
    cursor: CursorParam = None,
):
    """Offers across customers, newest first, by customer, kind and status (all optional).

    `status` is the offer's as shown: `expired` is an issued offer past its expiry."""
    rows = await service.search_offers(
        session=session, customer_id=customer_id, kind=kind, status=status, before_id=_id_cursor(cursor),
        limit=limit + 1,
    )
    return _offer_page(rows, limit)


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
    rows = await service.offers_of(session=session, customer_id=customer_id, before_id=_id_cursor(cursor),
                                   limit=limit + 1)
    return _offer_page(rows, limit)


def _id_cursor(cursor: str | None) -> str | None:
    key = decode_cursor(cursor, 1)
    if key is not None and not isinstance(key[0], str):
        raise InvalidCursor("cursor is not one this API issued")
    return key[0] if key else None


def _offer_page(rows: list[dict], limit: int) -> dict:
    items, next_cursor = page_of(rows, limit, lambda offer: (offer["id"],))
    return {"items": items, "next_cursor": next_cursor}
