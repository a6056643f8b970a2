"""The consent rules every marketing send passes (decisions.md, issue 13 §2).

`record_many` (and `record`, one entry) appends ledger entries, moves the current state
where an entry is the newest, and emits one `crm.engage.consent.changed` per entry, in the
caller's transaction. `check_marketing` refuses a marketing message to a customer without
consent for its channel (409 `no_consent`) or past the channel's frequency cap (409
`frequency_cap`): staff's marketing mail and value's campaign messages both go through it
before a message is queued. It is one primary-key lookup and one index range counted up to
the cap, and caches nothing (another replica may have changed either a moment ago).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.engage.consent import repository
from services.engage.consent.models import ConsentState
from shared.db.ids import uuid7_many
from shared.events.messaging import emit, emit_many
from shared.http.errors import Conflict
from shared.settings import EngageSettings, current_settings

CHANGED = "crm.engage.consent.changed"
UNSUBSCRIBE_SOURCE = "unsubscribe_link"


@dataclass(frozen=True, slots=True)
class Change:
    """One ledger entry to record."""

    customer_id: str
    purpose: str
    channel: str
    granted: bool
    legal_basis: str
    source: str
    notice_version: str | None
    changed_at: datetime


async def record_many(session: AsyncSession, changes: Sequence[Change], *, now: datetime) -> list[dict[str, Any]]:
    """Append the entries (in order), move the states, emit their events; the entries' rows.

    An entry changes its (customer, purpose, channel) state when it is at least as new as
    the state's entry: a back-dated entry joins the history only."""

    if not changes:
        return []
    states = {
        (s.customer_id, s.purpose, s.channel): s
        for s in await repository.states_of(session, {c.customer_id for c in changes})
    }
    rows = [{"id": id, **asdict(change), "recorded_at": now} for id, change in zip(uuid7_many(len(changes)), changes)]
    for row in rows:
        key = (row["customer_id"], row["purpose"], row["channel"])
        state = states.get(key)
        if state is None:
            states[key] = state = ConsentState(
                customer_id=row["customer_id"],
                purpose=row["purpose"],
                channel=row["channel"],
                granted=row["granted"],
                entry_id=row["id"],
                changed_at=row["changed_at"],
            )
            session.add(state)
        elif row["changed_at"] >= state.changed_at:
            state.granted, state.entry_id, state.changed_at = row["granted"], row["id"], row["changed_at"]
    await repository.add_entries(session, rows)
    await session.flush()
    payloads = [{name: value for name, value in row.items() if name != "recorded_at"} for row in rows]
    if len(payloads) == 1:
        emit(session, CHANGED, payloads[0], subject=payloads[0]["customer_id"])
    else:  # a batch: its events built in one pass
        emit_many(session, CHANGED, payloads, [p["customer_id"] for p in payloads])
    return rows


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
) -> dict[str, Any]:
    """One entry (see `record_many`): its row."""

    change = Change(customer_id, purpose, channel, granted, legal_basis, source, notice_version, changed_at)
    (row,) = await record_many(session, [change], now=now)
    return row


async def unsubscribe(session: AsyncSession, *, customer_id: str, channel: str, now: datetime) -> bool:
    """Withdraw marketing consent on `channel` (an unsubscribe link); False when it was
    withdrawn already (nothing is recorded twice)."""

    state = await session.get(ConsentState, (customer_id, "marketing", channel))
    if state is not None and not state.granted:
        return False
    # A withdrawal takes effect even over a grant dated a little ahead (a client clock's skew).
    changed_at = max(now, state.changed_at) if state is not None else now
    await record(
        session,
        customer_id=customer_id,
        purpose="marketing",
        channel=channel,
        granted=False,
        legal_basis="consent",
        source=UNSUBSCRIBE_SOURCE,
        notice_version=None,
        changed_at=changed_at,
        now=now,
    )
    return True


async def check_marketing(session: AsyncSession, *, customer_id: str, channel: str, now: datetime) -> None:
    """Raise 409 `no_consent` or `frequency_cap` unless a marketing message may go out now."""

    limit, days = frequency_cap(channel)
    gate = await repository.marketing_gate(
        session, customer_id=customer_id, channel=channel, since=now - timedelta(days=days), cap=limit
    )
    if gate is None or not gate[0]:
        raise Conflict(
            f"customer {customer_id} has not consented to marketing on {channel}",
            error="no_consent",
        )
    if gate[1] >= limit:
        raise Conflict(
            f"customer {customer_id} already got {gate[1]} marketing messages on {channel} in the last "
            f"{days} days (the cap is {limit})",
            error="frequency_cap",
        )


def frequency_cap(channel: str) -> tuple[int, int]:
    """(messages, days) for marketing on `channel` (VALUECHAIN_ENGAGE_FREQUENCY_CAPS)."""

    caps = current_settings(EngageSettings).frequency_caps
    return caps.get(channel, caps["default"])
