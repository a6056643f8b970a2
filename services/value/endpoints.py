"""value's HTTP API."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from services.value import service
from services.value.schemas import OfferCreate, OfferOut, OfferPage, OfferStatus, RedeemRequest
from shared.http.deps import ReadSession, WriteSession
from shared.http.pagination import PagingById

router = APIRouter(prefix="/v1", tags=["value"])


@router.post("/offers", status_code=status.HTTP_201_CREATED, response_model=OfferOut)
async def create_offer(body: OfferCreate, session: WriteSession):
    """Issue an offer to a customer."""
    return await service.create_offer(session=session, data=body)


@router.get("/offers", response_model=OfferPage, responses={404: {"description": "`customer_id` names no customer"}})
async def search_offers(
    session: ReadSession,
    page: PagingById,
    customer_id: Annotated[str | None, Query(description="Only this customer's")] = None,
    kind: Annotated[str | None, Query(description="Only offers of this kind (e.g. `welcome`)")] = None,
    status: Annotated[OfferStatus | None, Query(description="Only offers in this state, as the offer shows it")] = None,
):
    """Offers across customers, newest first, by customer, kind and status (all optional).

    `status` is the offer's as shown: `expired` is an issued offer past its expiry."""
    rows = await service.search_offers(
        session=session,
        customer_id=customer_id,
        kind=kind,
        status=status,
        before_id=page.after_value,
        limit=page.fetch,
    )
    return page.of(rows, _by_id)


@router.get("/offers/{offer_id}", response_model=OfferOut)
async def get_offer(offer_id: str, session: ReadSession):
    """One offer; an issued offer past its expiry reads as `expired`."""
    return await service.get_offer(session=session, offer_id=offer_id)


@router.post("/offers/{offer_id}/redeem", response_model=OfferOut)
async def redeem_offer(offer_id: str, session: WriteSession, body: RedeemRequest | None = None):
    """Redeem an issued offer, optionally naming the coupon code shown (another offer's is 422
    `body.code`) and the purchase (`transaction_id`) it applied to; a redeemed, expired or
    not yet valid one answers 409."""
    return await service.redeem(session=session, offer_id=offer_id, data=body)


@router.get("/customers/{customer_id}/offers", response_model=OfferPage)
async def list_offers(customer_id: str, session: ReadSession, page: PagingById):
    """The customer's offers, newest first."""
    rows = await service.offers_of(
        session=session, customer_id=customer_id, before_id=page.after_value, limit=page.fetch
    )
    return page.of(rows, _by_id)


def _by_id(offer: dict) -> tuple[str]:
    return (offer["id"],)
