"""network's HTTP API (thin: translate HTTP into service calls)."""

from __future__ import annotations

from fastapi import APIRouter, Query, status

from services.network import service
from services.network.schemas import (
    StakeholderCreate,
    StakeholderKind,
    StakeholderOut,
    StakeholderPage,
)
from shared.http.caller import CallerDep
from shared.http.deps import ReadSession, WriteSession
from shared.http.pagination import PagingById

router = APIRouter(prefix="/v1", tags=["network"])


@router.post("/stakeholders", status_code=status.HTTP_201_CREATED, response_model=StakeholderOut)
async def create_stakeholder(body: StakeholderCreate, session: WriteSession):
    """Add a partner, supplier, employee or investor."""
    return await service.create_stakeholder(session=session, data=body)


@router.get("/stakeholders", response_model=StakeholderPage)
async def list_stakeholders(
    session: ReadSession,
    page: PagingById,
    caller: CallerDep,
    kind: StakeholderKind | None = Query(None, description="Only stakeholders of this kind"),
):
    """Stakeholders, oldest first. A partner's key sees only its own record."""
    rows = await service.repository.list_stakeholders(
        session,
        kind=kind,
        after_id=page.after_value,
        limit=page.fetch,
        only_id=caller.partner_id if caller.partner_only else None,
    )
    return page.of(rows, lambda s: (s["id"],))


@router.get("/stakeholders/{stakeholder_id}", response_model=StakeholderOut)
async def get_stakeholder(stakeholder_id: str, session: ReadSession, caller: CallerDep):
    """One stakeholder. A partner's key gets 404 for any but its own record."""
    return await service.get_stakeholder(session=session, stakeholder_id=stakeholder_id, caller=caller)
