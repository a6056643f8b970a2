"""The loyalty programme over HTTP: the programme, a customer's points, redemptions, sweeps."""

from __future__ import annotations

from fastapi import APIRouter, status

from services.lifecycle.loyalty import service
from services.lifecycle.loyalty.schemas import (
    LoyaltyOut,
    ProgrammeIn,
    ProgrammeOut,
    RedemptionIn,
    RedemptionOut,
    SweepOut,
)
from shared.http.deps import ReadSession, WriteSession
from shared.http.pagination import PagingById

router = APIRouter(prefix="/v1", tags=["lifecycle"])


@router.get("/loyalty/programme", response_model=ProgrammeOut)
async def get_programme(session: ReadSession):
    """The programme: points per unit of the reporting currency, months until points expire, and the
    tiers (by points over the last 12 months, or by predicted CLV). Version 0 is the default."""
    return await service.get_programme(session=session)


@router.put("/loyalty/programme", response_model=ProgrammeOut)
async def put_programme(body: ProgrammeIn, session: WriteSession):
    """Replace the programme (a new version). Earning and expiry rules apply to points earned from now
    on; tiers are re-judged by the next sweep (`POST /v1/loyalty/sweeps` runs one now)."""
    return await service.set_programme(session=session, data=body)


@router.post("/loyalty/sweeps", response_model=SweepOut)
async def run_sweep(session: WriteSession):
    """Expire the points past their expiry and re-judge every tier now (the service does it hourly too)."""
    return await service.sweep(session=session)


@router.get(
    "/customers/{customer_id}/loyalty",
    response_model=LoyaltyOut,
    responses={404: {"description": "No such customer"}, 409: {"description": "`customer_merged`"}},
)
async def customer_loyalty(customer_id: str, session: ReadSession, page: PagingById):
    """The customer's points balance and tier, and its ledger (newest first, paginated)."""
    body = await service.loyalty_of(
        session=session, customer_id=customer_id, before_id=page.after_value, limit=page.fetch
    )
    entries = body.pop("entries")
    return {**body, **page.of(entries, lambda row: (row["entry_id"],))}


@router.post(
    "/customers/{customer_id}/loyalty/redemptions",
    status_code=status.HTTP_201_CREATED,
    response_model=RedemptionOut,
    responses={
        404: {"description": "No such customer"},
        409: {"description": "`insufficient_points`, `template_expired` or `customer_merged`"},
    },
)
async def redeem(customer_id: str, body: RedemptionIn, session: WriteSession):
    """Buy an offer template value sells for points: the points are debited now and value issues the
    offer (or refuses it, and the points come back). Too few points: 409 `insufficient_points`."""
    return await service.redeem(session=session, customer_id=customer_id, template_id=body.template_id)
