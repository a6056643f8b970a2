"""network's HTTP API (thin: translate HTTP into service calls)."""

from __future__ import annotations

from fastapi import APIRouter

from services.network import service
from services.network.schemas import ReferralPage
from shared.http.deps import ReadSession
from shared.http.pagination import PagingById

router = APIRouter(prefix="/v1", tags=["network"])


@router.get("/customers/{customer_id}/referrals", response_model=ReferralPage)
async def list_referrals(customer_id: str, session: ReadSession, page: PagingById):
    """The customers this customer referred, oldest first (an empty list when none).

    404 when network never heard of the customer (it learns customers from
    `crm.identify.customer.created`, so a brand-new customer may 404 for a moment).
    """
    rows = await service.referrals_by(
        session=session, customer_id=customer_id, after_id=page.after_value, limit=page.fetch
    )
    return page.of(rows, lambda r: (r["id"],))
