"""The referral programme's HTTP API (thin: translate HTTP into service calls)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from services.network.referrals import service
from services.network.referrals.schemas import ProgrammeOut, ProgrammeUpdate, ReferralPage, ReferralStatus
from shared.http.deps import ReadSession, WriteSession
from shared.http.pagination import PagingById

router = APIRouter(prefix="/v1", tags=["network"])


@router.get("/customers/{customer_id}/referrals", response_model=ReferralPage)
async def customer_referrals(customer_id: str, session: ReadSession, page: PagingById):
    """The customers this customer referred, oldest first (an empty list when none), each with its
    status and reward.

    404 when network never heard of the customer (it learns customers from
    `crm.identify.customer.created`, so a brand-new customer may 404 for a moment).
    """
    rows = await service.referrals_by(
        session=session, customer_id=customer_id, after_id=page.after_value, limit=page.fetch
    )
    return page.of(rows, lambda r: (r["id"],))


@router.get("/referrals", response_model=ReferralPage)
async def list_referrals(
    session: ReadSession,
    page: PagingById,
    status: Annotated[ReferralStatus | None, Query(description="Only referrals in this status")] = None,
    referrer_id: Annotated[str | None, Query(description="Only this customer's referrals")] = None,
    referred_id: Annotated[str | None, Query(description="Only the referral(s) of this referred customer")] = None,
):
    """The programme's referrals, oldest first."""
    rows = await service.list_referrals(
        session=session,
        after_id=page.after_value,
        limit=page.fetch,
        status=status,
        referrer_id=referrer_id,
        referred_id=referred_id,
    )
    return page.of(rows, lambda r: (r["id"],))


@router.get("/referral-programme", response_model=ProgrammeOut)
async def get_programme(session: ReadSession):
    """The programme's terms: the window a first purchase must fall in, and the referrer's reward."""
    return await service.programme(session)


@router.put("/referral-programme", response_model=ProgrammeOut)
async def put_programme(body: ProgrammeUpdate, session: WriteSession):
    """Set the terms. The window holds for referrals recorded from now on; the reward for every
    referral that qualifies from now on. No reward (neither template nor points): referrals still
    qualify, and nothing is issued."""
    return await service.set_programme(session=session, data=body)
