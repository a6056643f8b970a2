"""The stage machine's event consumers."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.lifecycle.stages import service, sweeps
from shared.events.consumer import ConsumerSpec
from shared.events.envelope import Event
from shared.settings import LifecycleSettings, current_settings


async def on_customer_events(session: AsyncSession, events: list[Event[service.Purchases]]) -> None:
    await service.apply_events(session=session, events=events)


async def on_signals(session: AsyncSession, events: list[Event[service.Signals]]) -> None:
    await service.record_signals(session=session, events=events)
    settings = current_settings(LifecycleSettings)
    newest = {event.customer_id: event for event in events}  # each customer once, named by its newest signal
    for event in newest.values():
        await sweeps.evaluate_now(session, settings, event)


# The stage changes' durable consumer, `lifecycle-stage-changes`: others act on them, so they
# are applied and published in micro-batches of their own, with a short linger
# (LifecycleSettings), not after the service's other specs have worked through the same
# events. Its rows are locked as they are read (repository.stages_of), as a merge step's,
# a signal's and a sweep's are. The merge step (in `lifecycle-events`) may now run before
# this consumer sees a merged customer's earlier purchase: the purchase then goes to the
# survivor, as a redelivered one always did, and the survivor ends in the same stage with
# the same count (both only go up); only the merged customer's own move is not recorded.
STAGE_CHANGES = "stage-changes"

STAGES = ConsumerSpec(
    purpose="stages",
    group=STAGE_CHANGES,
    batch_handler=on_customer_events,
    subjects=("crm.identify.customer.created", "crm.identify.transaction.recorded", "crm.identify.transaction.voided"),
    description="Moves each customer through the lifecycle stages as customers are created and buy (prospect, "
    "new, active; renewed buying brings an at-risk customer back to active and a churned one to won_back); a "
    "voided purchase lowers the purchase count but never moves a stage back.",
)

SIGNALS = ConsumerSpec(
    purpose="stage-signals",
    batch_handler=on_signals,
    subjects=("crm.engage.feedback.received", "crm.lifecycle.ticket.escalated"),
    description="Keeps each customer's newest detractor answer (NPS 0-6), high-effort answer (effort 4-5, CES "
    "1-2) and escalated tickets, and evaluates the customer's stage rules and churn risk at once (once a first "
    "sweep has finished); sweeps count them too.",
)
