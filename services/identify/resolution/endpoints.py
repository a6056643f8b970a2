"""Identity resolution's HTTP API: duplicate candidates and merges."""

from __future__ import annotations

from fastapi import APIRouter

from services.identify.customers.schemas import CustomerOut
from services.identify.resolution import service
from services.identify.resolution.schemas import DuplicatesOut, MergeRequest
from shared.http.deps import ReadSession, WriteSession

router = APIRouter(prefix="/v1", tags=["identify"])


@router.get("/customers/{customer_id}/duplicates", response_model=DuplicatesOut)
async def list_duplicates(customer_id: str, session: ReadSession):
    """Customers that may be the same person, best first, each with a score (0..1) and the reasons."""
    return {"items": await service.find_duplicates(session=session, customer_id=customer_id)}


@router.post("/customers/{customer_id}/merge", response_model=CustomerOut)
async def merge_customers(customer_id: str, body: MergeRequest, session: WriteSession):
    """Merge the customers in `merge` into this one (the survivor), which is returned.

    Emits `crm.identify.customer.merged`; every other service moves its data to the survivor.
    """
    return await service.merge(session=session, survivor_id=customer_id, merged_ids=body.merge)
