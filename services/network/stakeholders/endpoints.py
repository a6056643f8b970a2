"""Stakeholders, their relations to customers, a customer's network and partner performance (thin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, status
from pydantic import AwareDatetime

from services.network.stakeholders import repository, service
from services.network.stakeholders.schemas import (
    CustomerNetwork,
    PerformancePage,
    RelationCreate,
    RelationOut,
    RelationPage,
    StakeholderCreate,
    StakeholderCustomers,
    StakeholderKind,
    StakeholderOut,
    StakeholderPage,
    StakeholderUpdate,
)
from shared.http.caller import CallerDep
from shared.http.deps import ReadSession, WriteSession
from shared.http.pagination import ID, NUMBER, PageParams, PagingById, page_params

router = APIRouter(prefix="/v1", tags=["network"])

IncludeEnded = Annotated[bool, Query(description="Count ended relations too (default: current ones only)")]
# Performance pages by rank: (revenue in cents, stakeholder id).
PagingByRank = Annotated[PageParams[tuple[float, str]], Depends(page_params(NUMBER, ID))]


@router.post("/stakeholders", status_code=status.HTTP_201_CREATED, response_model=StakeholderOut)
async def create_stakeholder(body: StakeholderCreate, session: WriteSession):
    """Add a partner, reseller, supplier, employee, investor or owner."""
    return await service.create_stakeholder(session=session, data=body)


@router.get("/stakeholders", response_model=StakeholderPage)
async def list_stakeholders(
    session: ReadSession,
    page: PagingById,
    caller: CallerDep,
    kind: StakeholderKind | None = Query(None, description="Only stakeholders of this kind"),
    q: str | None = Query(None, min_length=1, max_length=200, description="Only those whose name contains this"),
):
    """Stakeholders, oldest first. A partner's key sees only its own record."""
    rows = await repository.list_stakeholders(
        session,
        kind=kind,
        name=q.strip() if q else None,
        after_id=page.after_value,
        limit=page.fetch,
        only_id=caller.partner_id if caller.partner_only else None,
    )
    return page.of(rows, lambda s: (s["id"],))


@router.get("/stakeholders/performance", response_model=PerformancePage)
async def stakeholder_performance(
    session: ReadSession,
    page: PagingByRank,
    caller: CallerDep,
    include_ended: IncludeEnded = False,
    kind: StakeholderKind | None = Query(None, description="Only stakeholders of this kind (e.g. partner)"),
):
    """Partner performance: stakeholders ranked by the net revenue of their customers, with how many
    customers they have, how many still buy (within the active window) and their predicted CLV.
    A partner's key sees only its own row."""

    rows = await service.performance(
        session=session,
        caller=caller,
        kind=kind,
        include_ended=include_ended,
        after=page.after,
        limit=page.fetch,
    )
    return page.of(rows, lambda r: (float(r["rank"]), r["stakeholder_id"]))


@router.get("/stakeholders/{stakeholder_id}", response_model=StakeholderOut)
async def get_stakeholder(stakeholder_id: str, session: ReadSession, caller: CallerDep):
    """One stakeholder. A partner's key gets 404 for any but its own record."""
    return await service.get_stakeholder(session=session, stakeholder_id=stakeholder_id, caller=caller)


@router.patch("/stakeholders/{stakeholder_id}", response_model=StakeholderOut)
async def update_stakeholder(stakeholder_id: str, body: StakeholderUpdate, session: WriteSession):
    """Change a stakeholder's name, email, organisation or notes (its kind stays)."""
    return await service.update_stakeholder(session=session, stakeholder_id=stakeholder_id, data=body)


@router.get("/stakeholders/{stakeholder_id}/customers", response_model=StakeholderCustomers)
async def stakeholder_customers(
    stakeholder_id: str, session: ReadSession, page: PagingById, caller: CallerDep, include_ended: IncludeEnded = False
):
    """The stakeholder's customers (one item per relation, in the order they began), each with its net
    revenue, purchases, whether it still buys and identify's predicted CLV and segment; the totals
    count each customer once. A partner's key sees only its own (404 for any other)."""

    items, totals = await service.stakeholder_customers(
        session=session,
        stakeholder_id=stakeholder_id,
        caller=caller,
        include_ended=include_ended,
        after_id=page.after_value,
        limit=page.fetch,
    )
    return {**page.of(items, lambda r: (r["relation_id"],)), **totals}


@router.post("/customers/{customer_id}/relations", status_code=status.HTTP_201_CREATED, response_model=RelationOut)
async def start_relation(customer_id: str, body: RelationCreate, session: WriteSession, caller: CallerDep):
    """A stakeholder takes up a relation to the customer: a new period in its history."""
    return await service.start_relation(session=session, customer_id=customer_id, data=body, caller=caller)


@router.get("/customers/{customer_id}/relations", response_model=RelationPage)
async def list_relations(customer_id: str, session: ReadSession, page: PagingById, caller: CallerDep):
    """Every period of the customer's relations, current or ended, in the order they were recorded."""
    rows = await service.relations_page(
        session=session, customer_id=customer_id, caller=caller, after_id=page.after_value, limit=page.fetch
    )
    return page.of(rows, lambda r: (r["id"],))


@router.delete("/customers/{customer_id}/relations/{relation_id}", response_model=RelationOut)
async def end_relation(customer_id: str, relation_id: str, session: WriteSession, caller: CallerDep):
    """End a current relation now. Its period stays in the history (ended_at, ended_by)."""
    return await service.end_relation(session=session, customer_id=customer_id, relation_id=relation_id, caller=caller)


@router.get("/customers/{customer_id}/network", response_model=CustomerNetwork)
async def customer_network(
    customer_id: str,
    session: ReadSession,
    caller: CallerDep,
    at: Annotated[
        AwareDatetime | None, Query(description="The network as it was then, with a time zone (default: now)")
    ] = None,
) -> Any:
    """The customer's network: its current relations with their stakeholders, and the history of every
    period. A partner's key sees only its own relations (404 for a customer it has none with)."""
    return await service.customer_network(session=session, customer_id=customer_id, at=at, caller=caller)
