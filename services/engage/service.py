"""engage's rules: interactions, and the customer timeline built from every event about a customer."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from services.engage import repository
from services.engage.models import Interaction, aliases, known_customers
from services.engage.schemas import InteractionCreate
from shared.contracts import CATALOG
from shared.db import utcnow
from shared.errors import NotFound, field_error
from shared.events import CloudEvent
from shared.ids import uuid7
from shared.messaging import emit

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


# --- known customers ------------------------------------------------------------------


async def remember_customers(*, session: AsyncSession, events: list[CloudEvent]) -> None:
    await known_customers.remember_created(session, events)


# --- the timeline ---------------------------------------------------------------------

SUMMARY_MAX = 300
QUOTE_MAX = 120


def _when(event: CloudEvent, field: str | None) -> datetime:
    """The event's business time (a payload field), or the CloudEvent time."""

    raw = event.data.get(field) if field else None
    if raw is None:
        value = event.time
    elif isinstance(raw, datetime):
        value = raw
    else:
        value = datetime.fromisoformat(raw)
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _money(amount: str, currency: str) -> str:
    try:
        value = abs(Decimal(amount))
    except InvalidOperation:
        return f"{amount} {currency}"
    cents = value.quantize(Decimal("0.01"))
    return f"{format(cents if cents == value else value, 'f')} {currency}"


def _customer_created(data: dict) -> str:
    who = data.get("name") or data.get("email") or data.get("external_id")
    return f"Customer created: {who}" if who else "Customer created"


def _customer_updated(data: dict) -> str:
    fields = sorted(data.get("changes") or {})
    return f"Updated {', '.join(fields)}" if fields else "Customer updated"


def _transaction(data: dict) -> str:
    # Older producers recorded a refund as a negative purchase; refunds now have their own event.
    kind = "Refund" if str(data["amount"]).startswith("-") else "Purchase"
    return f"{kind} of {_money(str(data['amount']), data['currency'])}"


def _refund(data: dict) -> str:
    return f"Refund of {_money(str(data['amount']), data['currency'])}: {_clip(data['reason'], QUOTE_MAX)}"


def _void(data: dict) -> str:
    return (f"Purchase of {_money(str(data['amount']), data['currency'])} voided: "
            f"{_clip(data['reason'], QUOTE_MAX)}")


def _stage(data: dict) -> str:
    if data.get("from_stage"):
        return f"Stage {data['from_stage']} → {data['to_stage']}"
    return f"Entered stage {data['to_stage']}"


def _interaction(data: dict) -> str:
    channel = str(data["channel"]).replace("_", " ")
    return f"{str(data['direction']).capitalize()} {channel}: {_clip(data['summary'], QUOTE_MAX)}"


def _offer_issued(data: dict) -> str:
    off = f" ({data['discount_percent']}% off)" if data.get("discount_percent") else ""
    return f"Offer issued: {data['title']}{off}"


def _offer_redeemed(data: dict) -> str:
    return f"Offer redeemed: {data['kind']}"


# subject -> (payload field holding the customer, payload field holding the time, summary)
_SINGLE: dict[str, tuple[str, str | None, Callable[[dict], str]]] = {
    "crm.identify.customer.created": ("id", "created_at", _customer_created),
    "crm.identify.customer.updated": ("id", "updated_at", _customer_updated),
    "crm.identify.transaction.recorded": ("customer_id", "occurred_at", _transaction),
    "crm.identify.transaction.refunded": ("customer_id", "occurred_at", _refund),
    "crm.identify.transaction.voided": ("customer_id", "voided_at", _void),
    "crm.lifecycle.stage.changed": ("customer_id", "at", _stage),
    "crm.engage.interaction.logged": ("customer_id", "occurred_at", _interaction),
    "crm.value.offer.issued": ("customer_id", "issued_at", _offer_issued),
    "crm.value.offer.redeemed": ("customer_id", "redeemed_at", _offer_redeemed),
}
REFERRAL = "crm.network.referral.recorded"

# Every catalog subject that carries a customer.
TIMELINE_SUBJECTS: tuple[str, ...] = (*_SINGLE, REFERRAL)
_unknown = set(TIMELINE_SUBJECTS) - set(CATALOG)
assert not _unknown, f"timeline subjects missing from the catalog: {_unknown}"


def timeline_entries(event: CloudEvent) -> list[dict[str, Any]]:
    """The timeline rows one event makes: one per customer it is about (a referral: two)."""

    data = event.data
    if event.type == REFERRAL:
        time = _when(event, "recorded_at")
        return [
            _row(data["referrer_id"], event, time, f"Referred customer {data['referred_id']}"),
            _row(data["referred_id"], event, time, f"Referred by customer {data['referrer_id']}"),
        ]
    customer_field, time_field, summary = _SINGLE[event.type]
    customer_id = data.get(customer_field) or event.subject
    if not customer_id:
        return []
    return [_row(customer_id, event, _when(event, time_field), summary(data))]


def _row(customer_id: str, event: CloudEvent, time: datetime, summary: str) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "event_id": event.id,
        "type": event.type,
        "time": time,
        "summary": _clip(summary, SUMMARY_MAX),
    }


async def record_in_timeline(*, session: AsyncSession, events: list[CloudEvent]) -> None:
    """One INSERT per micro-batch and one indexed read: this runs for every event about a customer.

    An event naming a merged customer (read after the merge) goes on the survivor's timeline.
    """

    rows = [row for event in events for row in timeline_entries(event)]
    survivors = await aliases.survivors(session, {row["customer_id"] for row in rows})
    for row in rows:
        row["customer_id"] = survivors.get(row["customer_id"], row["customer_id"])
    await repository.add_timeline_entries(session, rows)


MERGED = "crm.identify.customer.merged"


async def follow_merge(*, session: AsyncSession, event: CloudEvent) -> None:
    """The survivor takes the merged customers' interactions and timeline, and the merge goes on it."""

    survivor, merged = await aliases.record(session, event)
    at = _when(event, "merged_at")
    await known_customers.add(session, [{"id": survivor, "created_at": at}])
    await repository.move_to_survivor(session, merged_ids=merged, survivor_id=survivor)
    summary = f"Merged customer{'s' if len(merged) > 1 else ''} {', '.join(merged)} into this one"
    await repository.add_timeline_entries(session, [_row(survivor, event, at, summary)])


async def timeline(*, session: AsyncSession, customer_id: str, before: tuple[datetime, str] | None, limit: int):
    rows = await repository.timeline_page(session, customer_id=customer_id, before=before, limit=limit)
    if rows:
        return rows
    if await aliases.survivor_of(session, customer_id) or not (
        await known_customers.contains(session, customer_id) or await repository.has_timeline(session, customer_id)
    ):
        raise await aliases.not_found(session, customer_id)
    return rows
