"""The customers HTTP API (thin: translate HTTP into service calls)."""

from __future__ import annotations

from fastapi import APIRouter, status

from services.identify.customers import repository, service
from services.identify.customers.schemas import CustomerCreate, CustomerOut, CustomerPatch
from shared.http.deps import ReadSession, WriteSession
from shared.http.errors import NotFound

router = APIRouter(prefix="/v1", tags=["identify"])


@router.post("/customers", status_code=status.HTTP_201_CREATED, response_model=CustomerOut)
async def create_customer(body: CustomerCreate, session: WriteSession):
    """Create a customer; email (case-insensitive) and external_id are unique."""
    return await service.create_customer(session=session, data=body)


@router.get("/customers/{customer_id}", response_model=CustomerOut)
async def get_customer(customer_id: str, session: ReadSession):
    """One customer."""
    customer = await repository.read_customer(session, customer_id)
    if customer is None:
        raise NotFound(f"no customer with id {customer_id}")
    return customer


@router.patch("/customers/{customer_id}", response_model=CustomerOut)
async def patch_customer(customer_id: str, body: CustomerPatch, session: WriteSession):
    """Change some fields; send null to clear one. An erased customer takes no personal data
    again (409 `customer_erased`)."""
    return await service.update_customer(session=session, customer_id=customer_id, patch=body)
