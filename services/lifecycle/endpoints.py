"""lifecycle's HTTP API."""

from __future__ import annotations

from fastapi import APIRouter

from services.lifecycle import service
from services.lifecycle.schemas import LifecycleOut
from shared.deps import ReadSession

router = APIRouter(prefix="/v1", tags=["lifecycle"])


@router.get("/customers/{customer_id}/lifecycle", response_model=LifecycleOut, response_model_by_alias=True)
async def get_lifecycle(customer_id: str, session: ReadSession):
    """The customer's stage and every transition that led there, oldest first."""
    return await service.lifecycle_of(session=session, customer_id=customer_id)
