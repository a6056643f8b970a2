"""lifecycle's HTTP API."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from services.lifecycle import service
from services.lifecycle.schemas import CustomerInStagePage, LifecycleOut
from shared.events.contracts import Stage
from shared.http.deps import ReadSession
from shared.http.pagination import PagingById

router = APIRouter(prefix="/v1", tags=["lifecycle"])


@router.get("/customers/{customer_id}/lifecycle", response_model=LifecycleOut, response_model_by_alias=True)
async def get_lifecycle(customer_id: str, session: ReadSession):
    """The customer's stage and every transition that led there, oldest first."""
    return await service.lifecycle_of(session=session, customer_id=customer_id)


@router.get("/lifecycle/customers", response_model=CustomerInStagePage)
async def customers_in_stage(
    session: ReadSession,
    page: PagingById,
    stage: Annotated[
        Stage | None, Query(description="Only customers in this stage; all customers with a stage if absent")
    ] = None,
):
    """The customers in a stage, in customer id order, each with the time it entered the stage.
    Stage names are the `crm.lifecycle.stage.changed` contract's; another is 422."""
    rows = await service.customers_in_stage(session=session, stage=stage, after_id=page.after_value, limit=page.fetch)
    return page.of(rows, lambda row: (row["customer_id"],))
