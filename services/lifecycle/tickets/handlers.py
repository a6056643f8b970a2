"""Tickets' consumers (employees, playbooks' outreach) and the SLA check that runs beside them."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.lifecycle.tickets import service
from shared.db.uow import transaction
from shared.events.consumer import ConsumerSpec
from shared.events.contracts import PlaybookEntered, StakeholderCreated
from shared.events.envelope import Event
from shared.service.runtime import Runtime
from shared.settings import LifecycleSettings

log = logging.getLogger(__name__)


async def on_stakeholders(session: AsyncSession, events: list[Event[StakeholderCreated]]) -> None:
    await service.remember_employees(session, events)


EMPLOYEES = ConsumerSpec(
    purpose="employees",
    batch_handler=on_stakeholders,
    subjects=("crm.network.stakeholder.created",),
    description="Remembers network's employee stakeholders, who may be assigned tickets and write their comments.",
)


async def on_playbook_entered(session: AsyncSession, event: Event[PlaybookEntered]) -> None:
    await service.open_outreach(session, event)


OUTREACH = ConsumerSpec(
    purpose="outreach",
    handlers={"crm.lifecycle.playbook.entered": on_playbook_entered},
    description="Opens an outreach ticket for each treatment customer a playbook enters with `outreach`: in the "
    "playbook's queue, or assigned to the account manager it names.",
)


async def start_sla_check(runtime: Runtime[Any]) -> None:
    """lifecycle's start-up hook: the SLA check runs as long as the service does."""

    runtime.start_leased("ticket-sla-check", lambda: _sla_check(runtime))


async def _sla_check(runtime: Runtime[Any]) -> None:
    settings = runtime.settings
    interval = settings.ticket_sla_check_s if isinstance(settings, LifecycleSettings) else 60.0
    while True:
        try:
            while True:  # a full batch: more are overdue
                async with transaction(runtime.db.writer) as session:
                    found = await service.check_overdue(session)
                if found < 500:
                    break
        except Exception:  # the database away: log, wait, look again
            log.exception("the ticket SLA check failed")
        await asyncio.sleep(interval)
