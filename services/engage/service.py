"""engage's rules: interactions, and the customer timeline built from every event about a customer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.engage import repository
from services.engage.models import Interaction, aliases, erased_customers, known_customers
from services.engage.schemas import InteractionCreate
from shared.db.database import utcnow
from shared.db.ids import uuid7
from shared.events.contracts import CATALOG, clip
from shared.events.customer_aliases import Merge
from shared.events.envelope import Event
from shared.events.messaging import emit
from shared.http.errors import NotFound, field_error
from shared.privacy.scrub import scrub_typed

# --- interactions ------------------------------------------------------------------


async def log_interaction(*, session: AsyncSession, data: InteractionCreate) -> Interaction:
    """Log an interaction with a customer engage knows (from identify's customer.created)."""

    await aliases.refuse_merged(session, data.customer_id)
    if not await known_customers.contains(session, data.customer_id):
        raise field_error("body.customer_id", f"no customer with id {data.customer_id}")
    now = utcnow()
    interaction = Interaction(
        id=uuid7(),
        customer_id=data.customer_id,
        channel=data.channel,
        direction=data.direction,
        summary=data.summary,
        occurred_at=data.occurred_at or now,
        logged_at=now,
    )
    session.add(interaction)
    await session.flush()
    emit(
        session,
        "crm.engage.interaction.logged",
        {
            "id": interaction.id,
            "customer_id": interaction.customer_id,
            "channel": interaction.channel,
            "direction": interaction.direction,
            "summary": interaction.summary,
            "occurred_at": interaction.occurred_at,
        },
        subject=interaction.customer_id,
    )
    return interaction


async def get_interaction(*, session: AsyncSession, interaction_id: str):
    interaction = await repository.read_interaction(session, interaction_id)
    if interaction is None:
        raise NotFound(f"no interaction with id {interaction_id}")
    return interaction


async def list_interactions(*, session: AsyncSession, customer_id: str, before, limit: int):
    rows = await repository.list_interactions(session, customer_id=customer_id, before=before, limit=limit)
    if not rows and not await known_customers.contains(session, customer_id):
        raise NotFound(f"no customer with id {customer_id}")
    return rows


# --- the timeline ---------------------------------------------------------------------

SUMMARY_MAX = 300

# Every catalog event whose contract declares its timeline summary (shared/events/contracts.py).
TIMELINE_SUBJECTS: tuple[str, ...] = tuple(sorted(s for s, contract in CATALOG.items() if contract.on_timeline))


def timeline_entries(event: Event[Any]) -> list[dict[str, Any]]:
    """The timeline rows one event makes: one per customer it names (a referral: two)."""

    return [_row(cid, event, event.at, event.data.timeline_summary(cid)) for cid in event.customer_ids()]


def _row(customer_id: str, event: Event[Any], time: datetime, summary: str) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "event_id": event.id,
        "type": event.type,
        "time": time,
        "summary": clip(summary, SUMMARY_MAX),
    }


async def record_in_timeline(*, session: AsyncSession, events: list[Event[Any]]) -> None:
    """One INSERT per micro-batch: this runs for every event about a customer.

    An event naming a merged customer (read after the merge) arrives naming the survivor.
    One about an erased customer, read after engage erased its data (another service's,
    published before that service's erasure), goes on with its personal fields nulled.
    """

    erased = await erased_customers.among(session, {cid for event in events for cid in event.customer_ids()})
    if erased:
        events = [scrub_typed(e) if erased.intersection(e.customer_ids()) else e for e in events]
    await repository.add_timeline_entries(session, [row for event in events for row in timeline_entries(event)])


async def follow_merge(session: AsyncSession, merge: Merge) -> None:
    """A merge step: the survivor takes the merged customers' interactions and timeline, and the merge goes on it."""

    merged = merge.merged_ids
    await repository.move_to_survivor(session, merged_ids=merged, survivor_id=merge.survivor_id)
    summary = f"Merged customer{'s' if len(merged) > 1 else ''} {', '.join(merged)} into this one"
    await repository.add_timeline_entries(session, [_row(merge.survivor_id, merge.event, merge.at, summary)])


async def timeline(*, session: AsyncSession, customer_id: str, before: tuple[datetime, str] | None, limit: int):
    rows = await repository.timeline_page(session, customer_id=customer_id, before=before, limit=limit)
    if rows:
        return rows
    if await aliases.survivor_of(session, customer_id) or not (
        await known_customers.contains(session, customer_id) or await repository.has_timeline(session, customer_id)
    ):
        raise await aliases.not_found_or_merged(session, customer_id)
    return rows
