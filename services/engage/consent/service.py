"""engage's consent API rules: record one entry or a batch, answer a customer's consent,
unsubscribe through a signed link, and follow merges.

The rules a send passes (the ledger's writes, `check_marketing`) are in rules.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from services.engage.consent import repository, rules
from services.engage.consent.links import read_unsubscribe
from services.engage.consent.models import ConsentState
from services.engage.consent.schemas import ConsentBatchItem, ConsentCreate, ConsentEntryOut
from services.engage.models import aliases, erased_customers, known_customers
from shared.events.contracts import MessageChannel
from shared.events.customer_aliases import Merge
from shared.http.errors import MergedCustomer, NotFound, field_error, item_errors
from shared.signed_links import BadLink, SignedLinks

CHANNELS: frozenset[str] = frozenset(MessageChannel.__args__)  # type: ignore[attr-defined]


def _change(customer_id: str, data: ConsentCreate, *, source: str, now: datetime) -> rules.Change:
    return rules.Change(
        customer_id=customer_id,
        purpose=data.purpose,
        channel=data.channel,
        granted=data.granted,
        legal_basis=data.legal_basis,
        source=data.source or source,
        notice_version=data.notice_version,
        changed_at=data.changed_at or now,
    )


async def record_one(*, session: AsyncSession, customer_id: str, data: ConsentCreate, now: datetime) -> dict:
    """One entry for a customer engage knows; 404 unknown, 409 `customer_merged`."""

    await aliases.refuse_merged(session, customer_id)
    if not await known_customers.contains(session, customer_id):
        raise NotFound(f"no customer with id {customer_id}")
    (row,) = await rules.record_many(session, [_change(customer_id, data, source="api", now=now)], now=now)
    return row


async def record_batch(*, session: AsyncSession, items: Sequence[Any], now: datetime) -> list[dict]:
    """Validate and record a batch item by item, all in the caller's transaction:
    [{index, status, entry, error}]. A bad item (invalid, unknown or merged customer) gets
    its own error naming its index and field; the good ones are recorded."""

    answers: list[dict] = [{"index": index, "entry": None, "error": None} for index in range(len(items))]
    valid: list[tuple[int, ConsentBatchItem]] = []
    for index, raw in enumerate(items):
        try:
            valid.append((index, ConsentBatchItem.model_validate(raw)))
        except ValidationError as exc:
            answers[index].update(status="error", error=item_errors(exc.errors(), "body", "items", index))
    ids = {item.customer_id for _, item in valid}
    survivors = await aliases.survivors(session, ids)
    known = await repository.known_among(session, ids)
    good: list[tuple[int, rules.Change]] = []
    for index, item in valid:
        if item.customer_id in survivors:
            error = MergedCustomer(item.customer_id, survivors[item.customer_id]).body()
        elif item.customer_id not in known:
            error = field_error(f"body.items.{index}.customer_id", f"no customer with id {item.customer_id}").body()
        else:
            good.append((index, _change(item.customer_id, item, source="batch", now=now)))
            continue
        answers[index].update(status="error", error=error)
    rows = await rules.record_many(session, [change for _, change in good], now=now)
    for (index, _), row in zip(good, rows):
        answers[index].update(status="recorded", entry=ConsentEntryOut.model_validate(row))
    return answers


async def consent_of(
    *, session: AsyncSession, customer_id: str, before: tuple[datetime, str] | None, limit: int
) -> tuple[list[dict], list[dict]]:
    """(the current state, a page of the ledger); 404 unknown, 409 `customer_merged`."""

    history = await repository.history(session, customer_id, before=before, limit=limit)
    if not history and before is None:  # a merged customer's entries moved to the survivor
        await aliases.refuse_merged(session, customer_id)
        if not await known_customers.contains(session, customer_id):
            raise NotFound(f"no customer with id {customer_id}")
    return await repository.current(session, customer_id), history


def unsubscribe_target(links: SignedLinks, token: str) -> tuple[str, str]:
    """(customer_id, channel) of an unsubscribe link's token; 400 `bad_token` otherwise."""

    customer_id, channel, _message_id = read_unsubscribe(links, token)
    if channel not in CHANNELS:
        raise BadLink("the link is not valid (tampered with, or not made for this)")
    return customer_id, channel


async def unsubscribe(*, session: AsyncSession, customer_id: str, channel: str, now: datetime) -> bool:
    """Withdraw marketing consent on `channel` (RFC 8058's one-click POST); False when nothing
    changed: withdrawn already, or the customer was erased or is unknown. A merged
    customer's link applies to the survivor."""

    customer_id = await aliases.survivor_of(session, customer_id) or customer_id
    if await erased_customers.among(session, {customer_id}):
        return False
    if not await known_customers.contains(session, customer_id):
        return False
    return await rules.unsubscribe(session, customer_id=customer_id, channel=channel, now=now)


async def follow_merge(session: AsyncSession, merge: Merge) -> None:
    """A merge step: the merged customers' ledger entries move to the survivor, whose state
    per purpose and channel is the newest of all of theirs (a withdrawal wins a tie)."""

    everyone = [merge.survivor_id, *merge.merged_ids]
    states = await repository.states_of(session, everyone)
    if not any(state.customer_id != merge.survivor_id for state in states):
        await repository.move_ledger(session, merged_ids=merge.merged_ids, survivor_id=merge.survivor_id)
        return
    newest: dict[tuple[str, str], tuple[datetime, bool, str]] = {}
    for state in states:
        key = (state.purpose, state.channel)
        candidate = (state.changed_at, not state.granted, state.entry_id)
        if key not in newest or candidate[:2] > newest[key][:2]:
            newest[key] = candidate
    survivors = {(s.purpose, s.channel): s for s in states if s.customer_id == merge.survivor_id}
    await repository.move_ledger(session, merged_ids=merge.merged_ids, survivor_id=merge.survivor_id)
    for state in states:
        if state.customer_id != merge.survivor_id:
            session.expunge(state)
    await repository.drop_states(session, merge.merged_ids)
    for (purpose, channel), (changed_at, withdrawn, entry_id) in newest.items():
        mine = survivors.get((purpose, channel))
        if mine is None:
            session.add(
                ConsentState(
                    customer_id=merge.survivor_id,
                    purpose=purpose,
                    channel=channel,
                    granted=not withdrawn,
                    entry_id=entry_id,
                    changed_at=changed_at,
                )
            )
        else:
            mine.granted, mine.entry_id, mine.changed_at = not withdrawn, entry_id, changed_at
    await session.flush()
