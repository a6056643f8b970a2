"""The value map's rules: value's lists of attributes and competitors, the ratings that reach
it (engage's surveys, bulk entry), and the map computed from them (valuemap.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.value.models import aliases
from services.value.perceived import repository
from services.value.perceived.models import KEY_MAX
from services.value.perceived.schemas import (
    AttributeCreate,
    AttributeUpdate,
    CompetitorCreate,
    CompetitorUpdate,
    RatingIn,
)
from services.value.perceived.valuemap import US, Attribute, Cell, Subject, value_map
from shared.db.database import utcnow
from shared.db.ids import uuid7, uuid7_many
from shared.events.contracts import FeedbackReceived
from shared.events.customer_aliases import Merge
from shared.events.customer_profiles import RFM_SEGMENTS
from shared.events.envelope import Event
from shared.http.errors import Conflict, InvalidRequest, MergedCustomer, NotFound, field_error

SCORES = range(1, 11)
UNMAPPED_NAMES_SHOWN = 20


def key_of(name: str) -> str:
    """How a name is matched: its words, case-folded (`  ACME  Corp` is `acme corp`)."""

    return " ".join(name.split()).casefold()[:KEY_MAX]


# --- value's two lists: attributes and competitors ---------------------------------------


ATTRIBUTES = repository.ATTRIBUTES
COMPETITORS = repository.COMPETITORS


async def listed(session: AsyncSession, named: repository.NamedList, *, after_id: str | None, limit: int) -> list[Any]:
    return await named.page(session, after_id=after_id, limit=limit)


async def get(session: AsyncSession, named: repository.NamedList, row_id: str):
    row = await named.get(session, row_id)
    if row is None:
        raise NotFound(f"no {named.noun} with id {row_id}")
    return row


async def delete(session: AsyncSession, named: repository.NamedList, row_id: str) -> None:
    """Its ratings stay, counted as unmapped until one of that name exists again. (To leave
    an attribute out of the map and keep it, set its weight to 0.)"""

    await get(session, named, row_id)
    await named.delete(session, row_id)


async def _refuse_taken(session: AsyncSession, named: repository.NamedList, key: str, row_id: str | None) -> None:
    taken = await named.by_key(session, key)
    if taken is not None and taken["id"] != row_id:
        raise Conflict(f"the {named.noun} {taken['name']!r} has that name (id {taken['id']})", error="duplicate_name")


async def _written(named: repository.NamedList, write: Awaitable[None]) -> None:
    """A write the checks above let through, and a concurrent one won (PostgreSQL: two
    transactions at once; SQLite's one writer cannot race): 409, not a 500."""

    try:
        await write
    except IntegrityError:
        raise Conflict(
            f"another {named.noun} took this name (or the price mark) at the same moment", error="duplicate_name"
        ) from None


async def _rename(session: AsyncSession, named: repository.NamedList, row: Any, key: str) -> None:
    await _refuse_taken(session, named, key, row["id"])
    if key != row["key"]:
        await named.rekey_ratings(session, row["key"], key)


async def _refuse_second_price(session: AsyncSession, attribute_id: str | None = None) -> None:
    price = await repository.price_attribute(session)
    if price is not None and price["id"] != attribute_id:
        raise Conflict(
            f"{price['name']!r} (id {price['id']}) is the price attribute; there is one: unmark it first",
            error="price_attribute_exists",
        )


async def create_attribute(session: AsyncSession, *, data: AttributeCreate):
    key = key_of(data.name)
    await _refuse_taken(session, ATTRIBUTES, key, None)
    if data.price:
        await _refuse_second_price(session)
    now = utcnow()
    row = {
        "id": uuid7(),
        "name": data.name,
        "key": key,
        "weight": data.weight,
        "price": data.price,
        "created_at": now,
        "updated_at": now,
    }
    await _written(ATTRIBUTES, ATTRIBUTES.insert(session, row))
    return row


async def update_attribute(session: AsyncSession, *, attribute_id: str, data: AttributeUpdate):
    row = await get(session, ATTRIBUTES, attribute_id)
    changes: dict[str, Any] = data.model_dump(exclude_unset=True)
    for name, value in changes.items():
        if value is None:
            raise field_error(f"body.{name}", "must not be null: leave it out to keep it")
    if "name" in changes:
        changes["key"] = key_of(changes["name"])
        await _rename(session, ATTRIBUTES, row, changes["key"])
    if changes.get("price"):
        await _refuse_second_price(session, attribute_id)
    if changes:
        changes["updated_at"] = utcnow()
        await _written(ATTRIBUTES, ATTRIBUTES.update(session, attribute_id, changes))
    return {**row, **changes}


# --- competitors -------------------------------------------------------------------------


def _competitor_key(name: str) -> str:
    key = key_of(name)
    if key == US:
        raise field_error("body.name", f"{US!r} names ourselves in ratings; a competitor needs another name")
    return key


async def create_competitor(session: AsyncSession, *, data: CompetitorCreate):
    key = _competitor_key(data.name)
    await _refuse_taken(session, COMPETITORS, key, None)
    now = utcnow()
    row = {"id": uuid7(), "name": data.name, "key": key, "created_at": now, "updated_at": now}
    await _written(COMPETITORS, COMPETITORS.insert(session, row))
    return row


async def update_competitor(session: AsyncSession, *, competitor_id: str, data: CompetitorUpdate):
    row = await get(session, COMPETITORS, competitor_id)
    key = _competitor_key(data.name)
    await _rename(session, COMPETITORS, row, key)
    changes = {"name": data.name, "key": key, "updated_at": utcnow()}
    await _written(COMPETITORS, COMPETITORS.update(session, competitor_id, changes))
    return {**row, **changes}


# --- ratings -----------------------------------------------------------------------------


def _unknown_segment(segment: str) -> str:
    return f"unknown segment {segment!r}; one of: {', '.join(RFM_SEGMENTS)}"


async def record_batch(session: AsyncSession, *, items: list[RatingIn]) -> int:
    """All the ratings or none: an unknown attribute, competitor, segment or customer is 422
    naming each bad item's field, a merged customer 409 naming the survivor."""

    customer_ids = {item.customer_id for item in items}
    survivors = await aliases.survivors(session, customer_ids)
    if survivors:
        merged = next(item.customer_id for item in items if item.customer_id in survivors)
        raise MergedCustomer(merged, survivors[merged])
    known = await repository.known_among(session, customer_ids)
    attribute_keys = {a["key"] for a in await ATTRIBUTES.all(session)}
    subject_keys = {US} | {c["key"] for c in await COMPETITORS.all(session)}
    errors = []
    for i, item in enumerate(items):
        where = f"body.ratings.{i}"
        if item.customer_id not in known:
            errors.append(_error(f"{where}.customer_id", f"no customer with id {item.customer_id}"))
        if key_of(item.attribute) not in attribute_keys:
            errors.append(
                _error(f"{where}.attribute", f"unknown attribute {item.attribute!r} (GET /v1/value-map/attributes)")
            )
        if key_of(item.subject) not in subject_keys:
            errors.append(
                _error(
                    f"{where}.subject",
                    f"unknown competitor {item.subject!r}: `us` or a competitor's name (GET /v1/value-map/competitors)",
                )
            )
        if item.segment is not None and item.segment not in RFM_SEGMENTS:
            errors.append(_error(f"{where}.segment", _unknown_segment(item.segment)))
    if errors:
        raise InvalidRequest(errors)

    segments = await repository.segments_of(session, {i.customer_id for i in items if i.segment is None})
    now = utcnow()
    rows = [
        {
            "id": rating_id,
            "customer_id": item.customer_id,
            "attribute_key": key_of(item.attribute),
            "subject_key": key_of(item.subject),
            "score": item.score,
            "segment": item.segment if item.segment is not None else segments.get(item.customer_id),
            "rated_at": item.rated_at or now,
            "month": repository.month_of(item.rated_at or now),
            "source": "entered",
            "response_id": None,
        }
        for rating_id, item in zip(uuid7_many(len(items)), items, strict=True)
    ]
    await repository.insert_ratings(session, rows)
    return len(rows)


def _error(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message, "type": "value_error"}


async def record_feedback(session: AsyncSession, events: list[Event[FeedbackReceived]]) -> None:
    """engage's survey answers: each attribute rating is kept as the customer gave it (the
    segment it had then), mapped or not; the map counts what it cannot map."""

    rows = []
    for event in events:
        data = event.data
        for rating in data.ratings:
            rows.append(
                {
                    "customer_id": data.customer_id,
                    "attribute_key": key_of(rating.attribute),
                    "subject_key": key_of(rating.subject),
                    "score": rating.score,
                    "segment": data.segment[:50] if data.segment else None,
                    "rated_at": event.at,
                    "month": repository.month_of(event.at),
                    "source": "survey",
                    "response_id": data.response_id[:36],
                }
            )
    for row, rating_id in zip(rows, uuid7_many(len(rows)), strict=True):
        row["id"] = rating_id
    await repository.insert_ratings(session, rows)


async def ratings_of(session: AsyncSession, *, customer_id: str, before_id: str | None, limit: int) -> list[Any]:
    rows = await repository.ratings_of(session, customer_id, before_id=before_id, limit=limit)
    if not rows and before_id is None:
        survivor = await aliases.survivor_of(session, customer_id)
        if survivor:
            raise MergedCustomer(customer_id, survivor)
        if not await repository.known_among(session, {customer_id}):
            raise NotFound(f"no customer with id {customer_id}")
    return [
        {
            "id": row["id"],
            "customer_id": row["customer_id"],
            "attribute": row["attribute_key"],
            "subject": row["subject_key"],
            "score": row["score"],
            "segment": row["segment"],
            "rated_at": row["rated_at"],
            "source": row["source"],
        }
        for row in rows
    ]


async def follow_ratings_merge(session: AsyncSession, merge: Merge) -> None:
    """A merge step: the merged customers' ratings become the survivor's."""

    await repository.move_ratings(session, merged_ids=merge.merged_ids, survivor_id=merge.survivor_id)


# --- the map -------------------------------------------------------------------------------


def check_window(segment: str | None, since: date | None, until: date | None) -> None:
    if segment is not None and segment not in RFM_SEGMENTS:
        raise field_error("query.segment", _unknown_segment(segment))
    if since is not None and until is not None and until < since:
        raise field_error("query.to", f"{until} is before `from` ({since})")


async def the_value_map(
    session: AsyncSession, *, segment: str | None, since: date | None, until: date | None
) -> dict[str, Any]:
    """The value map of the ratings given from `since` to `until` (whole UTC days, both
    included) by customers in `segment` (their segment when they rated)."""

    check_window(segment, since, until)
    attribute_rows = await ATTRIBUTES.all(session)
    competitor_rows = await COMPETITORS.all(session)
    groups = await repository.rating_groups(
        session,
        since=datetime.combine(since, time(), UTC) if since else None,
        until=datetime.combine(until + timedelta(days=1), time(), UTC) if until else None,
        segment=segment,
    )
    attributes = [Attribute(a["key"], a["name"], a["weight"], a["price"]) for a in attribute_rows]
    subjects = [Subject(US, US, None)] + [Subject(c["key"], c["name"], c["id"]) for c in competitor_rows]
    attribute_keys = {a.key for a in attributes}
    subject_keys = {s.key for s in subjects}

    sums: dict[tuple[str, str, str], list[int]] = {}
    unmapped: Counter[str] = Counter()
    names: Counter[tuple[str, str]] = Counter()
    for g in groups:
        attribute, subject, n = g["attribute_key"], g["subject_key"], g["n"]
        if attribute not in attribute_keys:
            unmapped["unknown_attribute"] += n
            names["attribute", attribute] += n
        elif subject not in subject_keys:
            unmapped["unknown_subject"] += n
            names["subject", subject] += n
        elif g["score"] not in SCORES:
            unmapped["score_out_of_range"] += n
        else:
            cell = sums.setdefault((attribute, subject, g["month"]), [0, 0])
            cell[0] += n
            cell[1] += n * g["score"]
    cells = [Cell(a, s, m, n, float(total)) for (a, s, m), (n, total) in sums.items()]
    return {
        "segment": segment,
        "from_": since,
        "to": until,
        "ratings": sum(c.n for c in cells),
        **value_map(attributes, subjects, cells),
        "unmapped": {
            "ratings": sum(unmapped.values()),
            "unknown_attribute": unmapped["unknown_attribute"],
            "unknown_subject": unmapped["unknown_subject"],
            "score_out_of_range": unmapped["score_out_of_range"],
            "names": [
                {"kind": kind, "name": name, "ratings": n}
                for (kind, name), n in sorted(names.items(), key=lambda item: (-item[1], item[0]))[
                    :UNMAPPED_NAMES_SHOWN
                ]
            ],
        },
    }
