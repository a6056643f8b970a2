"""Scheduled campaigns launch at their time.

A task of every value process looks every `VALUECHAIN_VALUE_CAMPAIGN_SCHEDULE_POLL_S` for
scheduled campaigns that are due and launches each one as `POST /v1/campaigns/{id}/launch`
would. Several processes may look at once: the launch's plan reads the campaign under a lock
(PostgreSQL's row lock, SQLite's one writer) and goes on only while it is still `scheduled`,
so one process launches it and the others find it `launching` and leave it. A launch the
business rules refuse (409: an empty audience, the budget, the template's window) sends the
campaign back to draft with the reason in `launch_error`, rather than retrying for ever.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from services.value.campaigns import repository, service
from shared.db.database import Database, utcnow
from shared.db.uow import transaction
from shared.http.errors import Conflict
from shared.service.runtime import Runtime
from shared.settings import ValueSettings

log = logging.getLogger("valuechain.value.campaigns")


async def start(runtime: Runtime[Any]) -> None:
    settings = runtime.settings
    assert isinstance(settings, ValueSettings)
    runtime.start_leased("campaign-schedule", lambda: _every(runtime.db, settings.campaign_schedule_poll_s))


async def _every(db: Database, poll_s: float) -> None:
    while True:
        try:
            await launch_due(db)
        except asyncio.CancelledError:
            raise
        except Exception:  # a database hiccup: the next round tries again
            log.exception("launching scheduled campaigns failed")
        await asyncio.sleep(poll_s)


async def launch_due(db: Database, now: datetime | None = None) -> list[str]:
    """Launch the scheduled campaigns due by `now`; the ids launched here."""

    async with db.reader() as session:
        due = await repository.due_campaigns(session, now or utcnow())
    launched = []
    for campaign_id in due:
        try:
            if await service.launch(db=db, campaign_id=campaign_id, only_from="scheduled") is not None:
                launched.append(campaign_id)
        except Conflict as refused:
            if refused.error == "launch_in_progress":
                continue
            async with transaction(db.writer) as session:
                await service.refuse_scheduled(session, campaign_id, refused)
            log.warning(
                "a scheduled campaign could not launch",
                extra={"campaign_id": campaign_id, "error": refused.error, "detail": refused.detail},
            )
    return launched
