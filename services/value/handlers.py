"""value's event consumers."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.value import service
from services.value.models import aliases, known_customers
from shared.events.consumer import ConsumerSpec
from shared.events.contracts import StageChanged
from shared.events.envelope import Event


async def on_stage_changes(session: AsyncSession, events: list[Event[StageChanged]]) -> None:
    await service.welcome_new_buyers(session=session, events=events)


CUSTOMERS = known_customers.consumer("Remembers the customers identify created, so offers can be issued to them.")

WELCOME = ConsumerSpec(
    purpose="welcome",
    batch_handler=on_stage_changes,
    subjects=("crm.lifecycle.stage.changed",),
    description="Issues a welcome offer, once, to each customer whose stage becomes `new` (a first purchase).",
)

CONSUMERS = aliases.consumers(
    [CUSTOMERS, WELCOME],
    merge_steps=[known_customers.follow_merge, service.follow_merge],
    merges_description=(
        "Follows identify's merges: offers of the merged customers move to the survivor (which keeps one "
        "automatic offer of each kind); later events of a merged id go to the survivor."
    ),
)
