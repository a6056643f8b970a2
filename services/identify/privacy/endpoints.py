"""The erasure API (thin)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from services.identify.models import Base
from services.identify.privacy import repository, service
from services.identify.privacy.schemas import ErasureOut
from shared.http.deps import ReadSession, WriteSession
from shared.privacy.export import export_router

router = APIRouter(prefix="/v1", tags=["identify"])
# The internal personal-data route a customer's export gathers: with the customers merged into it.
export = export_router(Base.metadata, merged_ids=repository.merged_into, known=repository.exists)


@router.post(
    "/customers/{customer_id}/erasure",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ErasureOut,
    responses={200: {"model": ErasureOut, "description": "Erased before: the first request's report"}},
)
async def erase_customer(customer_id: str, session: WriteSession, response: Response):
    """Erase the customer's personal data in every service (GDPR Art. 17), and that of the
    customers merged into it; the facts stay under its id. 202 with the report, which
    completes as the services report (GET /v1/erasures/{id}); a second request answers
    the first one's report (200). A merged customer is 409 naming its survivor."""
    report, created = await service.request_erasure(session=session, customer_id=customer_id)
    if not created:
        response.status_code = status.HTTP_200_OK
    return report


@router.get("/erasures/{erasure_id}", response_model=ErasureOut)
async def get_erasure(erasure_id: str, session: ReadSession):
    """What each service erased and when, and whether the erasure is complete."""
    return await service.get_report(session=session, erasure_id=erasure_id)
