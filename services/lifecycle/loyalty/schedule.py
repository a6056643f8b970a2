"""The loyalty sweep on a schedule: every `loyalty_sweep_interval_s` (0 turns it off).

No lease: the sweep is safe to run in two replicas at once. Each locks the accounts it
writes (in id order), a lot expires once (its `expired` entry's key is unique and its
remaining becomes 0 under that lock) and a tier is announced only when it changes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from services.lifecycle.loyalty import service
from shared.db.uow import transaction
from shared.service.runtime import Runtime

log = logging.getLogger(__name__)


async def _every(runtime: Runtime[Any], interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            async with transaction(runtime.db.writer) as session:
                done = await service.sweep(session=session)
            log.info("loyalty sweep: %s", done)
        except Exception:
            log.exception("loyalty sweep failed")


async def start(runtime: Runtime[Any]) -> None:
    """lifecycle's start-up hook: the loyalty sweep runs as long as the service does."""

    interval = getattr(runtime.settings, "loyalty_sweep_interval_s", 0)
    if interval > 0:
        runtime.start_leased("loyalty-sweep", lambda: _every(runtime, interval))
