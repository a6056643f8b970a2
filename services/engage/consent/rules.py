"""The consent rules every marketing send passes (decisions.md, issue 13 §2).

`record` appends one ledger entry, moves the current state when the entry is the newest,
and emits `crm.engage.consent.changed`, in the caller's transaction. `check_marketing`
refuses a marketing message to a customer without consent for its channel (409
`no_consent`) or past the channel's frequency cap (409 `frequency_cap`): staff's marketing
mail and value's campaign messages both go through it before a message is queued.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.engage.consent.models import ConsentEntry, ConsentState
from services.engage.conversations.models import Message
from shared.db.ids import uuid7
from shared.events.messaging import emit
from shared.http.errors import Conflict
from shared.settings import EngageSettings, current_settings

# Messages that count against a cap: on their way, or gone.
COUNTED = ("queued", "sent")


async def record(
    session: AsyncSession,
    *,
    customer_id: str,
    purpose: str,
    channel: str,
    granted: bool,
    legal_basis: str,
    source: str,
    notice_version: str | None,
    changed_at: datetime,
    now: datetime,
) -> ConsentEntry:
    entry = ConsentEntry(
        id=uuid7(),
        customer_id=customer_id,
        purpose=purpose,
        channel=channel,
        granted=granted,
        legal_basis=legal_basis,
        source=source,
        notice_version=notice_version,
        changed_at=changed_at,
        recorded_at=now,
    )
    session.add(entry)
    state = await session.get(ConsentState, (customer_id, purpose, channel))
    if state is None:
        session.add(
            ConsentState(
                customer_id=customer_id,
                purpose=purpose,
                channel=channel,
                granted=granted,
                entry_id=entry.id,
                changed_at=changed_at,
            )
        )
    elif changed_at >= state.changed_at:  # a back-dated entry joins the history, not the state
        state.granted, state.entry_id, state.changed_at = granted, entry.id, changed_at
    await session.flush()
    emit(
        session,
        "crm.engage.consent.changed",
        {
            "id": entry.id,
            "customer_id": customer_id,
            "purpose": purpose,
            "channel": channel,
            "granted": granted,
            "legal_basis": legal_basis,
            "source": source,
            "notice_version": notice_version,
            "changed_at": changed_at,
        },
        subject=customer_id,
    )
    return entry


async def has_consent(session: AsyncSession, *, customer_id: str, purpose: str, channel: str) -> bool:
    state = await session.get(ConsentState, (customer_id, purpose, channel))
    return bool(state is not None and state.granted)


async def check_marketing(session: AsyncSession, *, customer_id: str, channel: str, now: datetime) -> None:
    """Raise 409 `no_consent` or `frequency_cap` unless a marketing message may go out now."""

    if not await has_consent(session, customer_id=customer_id, purpose="marketing", channel=channel):
        raise Conflict(
            f"customer {customer_id} has not consented to marketing on {channel}",
            error="no_consent",
        )
    limit, days = frequency_cap(channel)
    since = now - timedelta(days=days)
    sent = await session.scalar(
        select(func.count())
        .select_from(Message)
        .where(
            Message.customer_id == customer_id,
            Message.channel == channel,
            Message.purpose == "marketing",
            Message.status.in_(COUNTED),
            Message.created_at > since,
        )
    )
    if (sent or 0) >= limit:
        raise Conflict(
            f"customer {customer_id} already got {sent} marketing messages on {channel} in the last "
            f"{days} days (the cap is {limit})",
            error="frequency_cap",
        )


def frequency_cap(channel: str) -> tuple[int, int]:
    """(messages, days) for marketing on `channel` (VALUECHAIN_ENGAGE_FREQUENCY_CAPS)."""

    caps = current_settings(EngageSettings).frequency_caps
    return caps.get(channel, caps["default"])
