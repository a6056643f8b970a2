"""network's rules: stakeholders (the referral programme's are in services/network/referrals/)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.network import repository
from services.network.models import Stakeholder
from services.network.schemas import StakeholderCreate
from shared.db.database import utcnow
from shared.db.ids import uuid7
from shared.events.messaging import emit
from shared.http.caller import Caller
from shared.http.errors import NotFound

# --- stakeholders --------------------------------------------------------------------


async def create_stakeholder(*, session: AsyncSession, data: StakeholderCreate) -> Stakeholder:
    stakeholder = Stakeholder(
        id=uuid7(),
        kind=data.kind,
        name=data.name,
        email=data.email,
        organisation=data.organisation,
        notes=data.notes,
        created_at=utcnow(),
    )
    session.add(stakeholder)
    await session.flush()
    # Not about a customer: the CloudEvent has no subject.
    emit(
        session,
        "crm.network.stakeholder.created",
        {field: getattr(stakeholder, field) for field in ("id", "kind", "name", "email", "created_at")},
    )
    return stakeholder


async def get_stakeholder(*, session: AsyncSession, stakeholder_id: str, caller: Caller | None = None):
    # Another partner's record is as unknown to a partner as a missing one: the same 404.
    hidden = caller is not None and caller.partner_only and stakeholder_id != caller.partner_id
    stakeholder = None if hidden else await repository.read_stakeholder(session, stakeholder_id)
    if stakeholder is None:
        raise NotFound(f"no stakeholder with id {stakeholder_id}")
    return stakeholder
