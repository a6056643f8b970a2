"""The outbox, inbox, dead-letter and lease tables every service keeps in its own database.

`emit()` writes an event into the outbox inside the caller's transaction: the state
change and its event commit together or not at all. Runs of events of one type go
into the outbox as bundles (see BUNDLE_EVENTS). Consumers record the ids of
the events they handled in the inbox in the same transaction as their effect.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from itertools import groupby
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Column,
    Executable,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    any_,
    bindparam,
    func,
    insert,
    null,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.bulk import bulk_insert, fetch_all
from shared.db.database import UTCDateTime, dialect_insert, dialect_name, utcnow
from shared.db.ids import uuid7_many
from shared.db.leases import lease_table
from shared.events.contracts import CATALOG, Contract
from shared.events.envelope import SPECVERSION, CloudEvent, make_event
from shared.observability import context
from shared.settings import DEFAULT_PUBLIC_BASE_URL

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT.
_Seq = BigInteger().with_variant(Integer(), "sqlite")


@dataclass(frozen=True)
class MessagingTables:
    outbox: Table
    inbox: Table
    dead_letters: Table
    leases: Table  # shared/db/leases.py: the relay, consumers and schedules one replica runs at a time


def messaging_tables(metadata: MetaData) -> MessagingTables:
    outbox = Table(
        "outbox",
        metadata,
        Column("seq", _Seq, primary_key=True, autoincrement=True),
        Column("event_id", String(36), nullable=False, unique=True),
        Column("subject", String(200), nullable=False),
        Column("body", LargeBinary, nullable=False),
        Column("created_at", UTCDateTime, nullable=False, default=utcnow),
        Column("published_at", UTCDateTime, nullable=True),
        Column("attempts", Integer, nullable=False, default=0),
    )
    # The relay's read: the rows not yet published, in seq order. Partial, so it holds just
    # those rows and gives their order without a sort. The index it replaces, on
    # (published_at, seq), held every row ever written (the outbox keeps them) and took a
    # new entry at every mark; on PostgreSQL the relay's read over it cost 97 µs against
    # 38 µs for this one in the latency bench (docs/benchmarks.md, stop 20).
    pending = outbox.c.published_at.is_(None)
    Index("ix_outbox_unpublished", outbox.c.seq, sqlite_where=pending, postgresql_where=pending)
    inbox = Table(
        "inbox",
        metadata,
        Column("consumer", String(100), primary_key=True),
        Column("event_id", String(36), primary_key=True),
        Column("handled_at", UTCDateTime, nullable=False, default=utcnow),
    )
    dead_letters = Table(
        "dead_letters",
        metadata,
        Column("id", _Seq, primary_key=True, autoincrement=True),
        Column("consumer", String(100), nullable=False),
        Column("event_id", String(100), nullable=True),
        Column("subject", String(200), nullable=True),
        Column("body", LargeBinary, nullable=False),
        Column("error", Text, nullable=False),
        Column("deliveries", Integer, nullable=False),
        Column("failed_at", UTCDateTime, nullable=False, default=utcnow),
    )
    return MessagingTables(outbox, inbox, dead_letters, lease_table(metadata))


def tables_of(session: AsyncSession) -> MessagingTables:
    tables: MessagingTables = session.info["messaging"]  # put there by start_runtime
    return tables


def emit(session: AsyncSession, type: str, data: dict[str, Any], *, subject: str | None = None) -> CloudEvent:
    """Validate `data` against the catalog and add the event to the session's transaction."""

    contract = CATALOG[type]
    payload = contract.model.model_validate(data).model_dump(mode="json")
    event = make_event(
        service=session.info["service"],
        type=type,
        data=payload,
        subject=subject,
        dataschema=dataschema(session, contract),
    )
    session.info.setdefault("pending_events", []).append(
        {"event_id": event.id, "subject": type, "body": _encode(event), "created_at": event.time}
    )
    return event


def dataschema(session: AsyncSession, contract: Contract[Any]) -> str:
    """The event's `dataschema`: its schema's URL under the public address the service was
    started with (`session.info["public_base_url"]`, set by start_runtime)."""

    return contract.dataschema_at(session.info.get("public_base_url", DEFAULT_PUBLIC_BASE_URL))


_ENVELOPE = tuple(CloudEvent.model_fields)


def _encode(event: CloudEvent) -> bytes:
    """`event.to_json()`, in a third of the time, for an event whose data is JSON-ready.

    emit() makes the data JSON-ready (the contract's JSON dump), so only the
    envelope needs encoding: orjson writes the UTC time with a "Z" as pydantic does.
    tests/shared/test_messaging.py holds the two equal.
    """

    fields = event.__dict__
    return orjson.dumps({name: fields[name] for name in _ENVELOPE if fields[name] is not None}, option=orjson.OPT_UTC_Z)


async def flush_events(session: AsyncSession) -> int:
    """Write the events emitted in this session to the outbox (called just before
    commit, and earlier where the writes of a `writes_together` block take them along);
    returns how many events this session's transaction has written so far."""

    events = session.info.pop("pending_events", None)
    if not events:
        return int(session.info.get("flushed_events", 0))
    session.info["flushed_events"] = session.info.get("flushed_events", 0) + len(events)
    rows: list[tuple[Any, ...]] = []
    for _, group in groupby(events, key=lambda event: event["subject"]):
        run = list(group)
        for start in range(0, len(run), BUNDLE_EVENTS):
            rows.append(_outbox_row(run[start : start + BUNDLE_EVENTS]))
    await bulk_insert(session, tables_of(session).outbox, _OUTBOX_COLUMNS, rows)
    return int(session.info["flushed_events"])


def take_pending(session: AsyncSession) -> list[dict[str, Any]]:
    """The events emitted in the session and not yet written, taken for the caller to write
    in a statement of its own (`outbox_write`); `written` counts them once they are."""

    events: list[dict[str, Any]] = session.info.pop("pending_events", [])
    return events


def written(session: AsyncSession, count: int) -> None:
    """`count` events taken with `take_pending` are in the outbox: the commit wakes the relay."""

    session.info["flushed_events"] = session.info.get("flushed_events", 0) + count


def outbox_write(
    session: AsyncSession, event: dict[str, Any], marker: bytes, value: str
) -> tuple[str, tuple[Any, ...]]:
    """The outbox INSERT of one taken event whose body holds `marker` once, the marker's
    bytes replaced by the text of `value`, an SQL expression of the statement the INSERT is
    a part of: a field only that statement can know (identify's purchase count). A NULL
    `value` breaks the body's NOT NULL, so the statement fails and keeps nothing."""

    head, found, tail = event["body"].partition(marker)
    if not found or marker in tail:
        raise ValueError("the event's body must hold the marker once")
    sql = (
        f"INSERT INTO {tables_of(session).outbox.name} (event_id, subject, body, created_at, attempts) VALUES"
        f" ($1::VARCHAR(36), $2::VARCHAR(200), $3::BYTEA || convert_to(({value})::text, 'UTF8') || $4::BYTEA,"
        " $5::TIMESTAMP WITH TIME ZONE, 0)"
    )
    return sql, (event["event_id"], event["subject"], head, tail, event["created_at"])


# An outbox row holds one event, its CloudEvent JSON as `body`, or a bundle of up to
# BUNDLE_EVENTS events of one type emitted one after another in the same transaction
# (an import's): `body` is their lines `<event id> <CloudEvent JSON>` joined by
# newlines, which compact JSON never contains, and `event_id` is the first event's.
# A bulk write stores and relays a fiftieth of the rows; the relay publishes each
# event of a bundle on its own, as if they had been rows.
BUNDLE_EVENTS = 50
_OUTBOX_COLUMNS = ("event_id", "subject", "body", "created_at", "attempts")


def _outbox_row(events: list[dict[str, Any]]) -> tuple[Any, ...]:
    first = events[0]
    if len(events) == 1:
        body = first["body"]
    else:
        body = b"\n".join(event["event_id"].encode() + b" " + event["body"] for event in events)
    return (first["event_id"], first["subject"], body, first["created_at"], 0)


def outbox_events(event_id: str, body: bytes) -> list[tuple[str, bytes]]:
    """(event id, CloudEvent JSON) of each event an outbox row holds."""

    if body[:1] == b"{":
        return [(event_id, body)]
    events = []
    for line in body.split(b"\n"):
        bundled_id, _, event = line.partition(b" ")
        events.append((bundled_id.decode(), event))
    return events


async def claim_handled(session: AsyncSession, pairs: list[tuple[str, str]], at: datetime) -> set[tuple[str, str]]:
    """Record (consumer, event id) pairs as handled, in the transaction of their effect, and
    return those that were not recorded already: the ones to apply. One statement: an
    INSERT … ON CONFLICT DO NOTHING RETURNING, rather than a query and an insert."""

    if not pairs:
        return set()
    inbox = tables_of(session).inbox
    dialect = dialect_name(session)
    if dialect == "postgresql":  # on the driver (fetch_all): every micro-batch of every consumer claims
        consumers, event_ids = zip(*pairs, strict=True)
        params = {"consumers": list(consumers), "event_ids": list(event_ids), "at": at}
        rows: Iterable[Sequence[Any]] = await fetch_all(session, _claim_statement(inbox, dialect), params)
    else:
        many = [{"consumer": consumer, "event_id": event_id, "handled_at": at} for consumer, event_id in pairs]
        rows = await session.execute(_claim_statement(inbox, dialect), many)
    return {(consumer, event_id) for consumer, event_id in rows}


@cache
def _claim_statement(inbox: Table, dialect: str) -> Executable:
    insert = dialect_insert(inbox, dialect)
    if dialect == "postgresql":
        # The pairs as two array parameters: one statement for any number of them. An
        # executemany with RETURNING is SQLAlchemy's "insertmanyvalues", a VALUES row per pair:
        # SQL of its own, prepared on each connection, for every size of batch.
        from sqlalchemy.dialects.postgresql import ARRAY

        pairs = (
            func.unnest(
                bindparam("consumers", type_=ARRAY(inbox.c.consumer.type)),
                bindparam("event_ids", type_=ARRAY(inbox.c.event_id.type)),
            )
            .table_valued("consumer", "event_id")
            .render_derived(name="pairs")
        )
        handled_at = bindparam("at", type_=inbox.c.handled_at.type)
        insert = insert.from_select(
            ["consumer", "event_id", "handled_at"], select(pairs.c.consumer, pairs.c.event_id, handled_at)
        )
    insert_ignoring = insert.on_conflict_do_nothing(index_elements=["consumer", "event_id"])
    return insert_ignoring.returning(inbox.c.consumer, inbox.c.event_id)


async def claim_events(
    session: AsyncSession,
    durable: str,
    pairs: list[tuple[str, str]],
    at: datetime,
    *,
    several: bool,
    alone: bool = False,
) -> set[tuple[str, str]]:
    """Claim a micro-batch's (spec, event id) pairs for the specs of `durable` that apply them
    in this transaction; return the pairs to apply. `several`: the durable has several specs
    (else its one spec's rows are the claim). `alone`: one spec of several applying events on
    its own, after a failed batch (a row of its own, so a retry skips it and runs only the
    specs that failed); otherwise every spec that takes each event, claimed in one row an
    event (`claim_whole`)."""

    if not several:
        return await claim_handled(session, pairs, at)
    if alone:
        done = await claimed_whole(session, durable, {event_id for _, event_id in pairs})
        return await claim_handled(session, [pair for pair in pairs if pair[1] not in done], at)
    takers: dict[str, list[str]] = {}
    for spec, event_id in pairs:
        takers.setdefault(event_id, []).append(spec)
    return await claim_whole(session, durable, takers, at)


def whole_claim(durable: str) -> str:
    """The inbox's consumer for an event applied by every spec of `durable` that takes it,
    in one transaction (`claim_whole`); a spec's own rows carry the spec's name."""

    return f"{durable}:all"


async def claim_whole(
    session: AsyncSession, durable: str, takers: Mapping[str, Sequence[str]], at: datetime
) -> set[tuple[str, str]]:
    """Claim a micro-batch's events (event id → the specs of `durable` that take it) for all
    their specs at once: one inbox row an event, `whole_claim(durable)`, rather than one per
    spec and event. Return the (spec, event id) pairs to apply: those of events not claimed
    before, less any spec that applied the event on its own before (`claim_handled`, after a
    failed batch: such a spec's row says so, and the whole row was never written).

    A purchase's events reached 36 spec claims across the suite, each a row and an index
    entry of the inbox, which nothing prunes; its whole claims are 19 (docs/benchmarks.md,
    "Stop 26")."""

    if not takers:
        return set()
    inbox = tables_of(session).inbox
    dialect = dialect_name(session)
    key, event_ids = whole_claim(durable), list(takers)
    specs = sorted({spec for names in takers.values() for spec in names})
    if dialect == "postgresql":  # one round trip: the claim, and the snapshot's spec rows
        rows = await fetch_all(
            session, _whole_claim_statement(inbox), {"key": key, "event_ids": event_ids, "at": at, "specs": specs}
        )
        claimed = {event_id for event_id, spec in rows if spec is None}
        alone = {(spec, event_id) for event_id, spec in rows if spec is not None}
    else:
        query = select(inbox.c.consumer, inbox.c.event_id).where(
            inbox.c.consumer.in_(specs), inbox.c.event_id.in_(event_ids)
        )
        alone = {(spec, event_id) for spec, event_id in await session.execute(query)}
        many = [{"consumer": key, "event_id": event_id, "handled_at": at} for event_id in event_ids]
        claimed = {event_id for _, event_id in await session.execute(_claim_statement(inbox, dialect), many)}
    return {(spec, event_id) for event_id in claimed for spec in takers[event_id] if (spec, event_id) not in alone}


async def claimed_whole(session: AsyncSession, durable: str, event_ids: Iterable[str]) -> set[str]:
    """Those of the events that `claim_whole` claimed for every spec of `durable`."""

    inbox = tables_of(session).inbox
    query = select(inbox.c.event_id).where(inbox.c.consumer == whole_claim(durable), inbox.c.event_id.in_(event_ids))
    return set((await session.execute(query)).scalars())


@cache
def _whole_claim_statement(inbox: Table) -> Executable:
    """PostgreSQL: the whole rows inserted (their event ids, with a NULL spec), then the spec
    rows of the batch's events as they stood before the statement (its snapshot)."""

    from sqlalchemy.dialects.postgresql import ARRAY
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    event_ids = (
        func.unnest(bindparam("event_ids", type_=ARRAY(inbox.c.event_id.type)))
        .table_valued("event_id")
        .render_derived(name="ids")
    )
    claimed = (
        pg_insert(inbox)
        .from_select(
            ["consumer", "event_id", "handled_at"],
            select(
                bindparam("key", type_=inbox.c.consumer.type),
                event_ids.c.event_id,
                bindparam("at", type_=inbox.c.handled_at.type),
            ),
        )
        .on_conflict_do_nothing(index_elements=["consumer", "event_id"])
        .returning(inbox.c.event_id)
        .cte("claimed")
    )
    alone = select(inbox.c.event_id, inbox.c.consumer).where(
        inbox.c.consumer == any_(bindparam("specs", type_=ARRAY(inbox.c.consumer.type))),
        inbox.c.event_id == any_(bindparam("event_ids", type_=ARRAY(inbox.c.event_id.type))),
    )
    return select(claimed.c.event_id, null().label("consumer")).union_all(alone)


async def record_handled(session: AsyncSession, handled: Iterable[tuple[str, str]], at: datetime) -> None:
    """Record (consumer, event id) pairs as handled, in the transaction of their effect."""

    rows = [{"consumer": consumer, "event_id": event_id, "handled_at": at} for consumer, event_id in handled]
    if rows:
        await session.execute(insert(tables_of(session).inbox), rows)


def payload_in_contract_order(type: str, values: dict[str, Any]) -> dict[str, Any]:
    """Every field of `type`'s contract in its order: `values`' where given, else the field's
    default (a required field not given is None, for the caller to set on each copy). Copies of
    it, their own fields set, go through emit_many without being rebuilt."""

    fields = CATALOG[type].model.model_fields
    unknown = set(values) - set(fields)
    if unknown:
        raise ValueError(f"{type}: no fields {sorted(unknown)}")
    return {
        name: values[name]
        if name in values
        else None
        if field.is_required()
        else field.get_default(call_default_factory=True)
        for name, field in fields.items()
    }


def emit_many(
    session: AsyncSession, type: str, payloads: list[dict[str, Any]], subjects: Sequence[str | None]
) -> list[str]:
    """emit() for a batch of events of one type: the same outbox rows, byte for byte,
    built in one pass with no pydantic model per event; returns the event ids.

    For the bulk paths (imports): each payload must already be JSON-ready in the
    contract's own types (datetimes, text, numbers) — unknown fields are refused,
    omitted optional ones get the contract's default as model_dump() would write
    them, and the first payload is validated against the contract to catch drift.
    The events share one time (the batch's) and take uuid7 ids made in one go.
    tests/shared/test_messaging.py holds the bodies equal to emit()'s.
    """

    if len(payloads) != len(subjects):
        raise ValueError("emit_many needs one subject per payload")
    if not payloads:
        return []
    contract = CATALOG[type]
    fields = contract.model.model_fields
    order = tuple(fields)
    names = frozenset(fields)
    defaults = {
        name: field.get_default(call_default_factory=True) for name, field in fields.items() if not field.is_required()
    }
    required = names - defaults.keys()
    contract.model.model_validate(payloads[0])
    ids = uuid7_many(len(payloads))
    now = datetime.now(UTC)
    correlation, causation = context.correlation_id.get(), context.causation_id.get()
    # make_event()'s envelope as orjson writes it (CloudEvent's field order, None
    # fields left out, as _encode()), spliced from parts: only the id, the subject
    # and the data differ from one event of the batch to the next.
    dumps, utc_z = orjson.dumps, orjson.OPT_UTC_Z
    start = b'{"specversion":' + dumps(SPECVERSION) + b',"id":"'
    source = dumps(f"/valuechain/{session.info['service']}")
    middle = b'","source":' + source + b',"type":' + dumps(type) + b',"time":' + dumps(now, option=utc_z)
    schema = b',"dataschema":' + dumps(dataschema(session, contract))
    after_subject = b',"datacontenttype":"application/json"' + schema + b',"correlationid":'
    correlated = None if correlation is None else dumps(correlation)
    caused = b"" if causation is None else b',"causationid":' + dumps(causation)
    pending = session.info.setdefault("pending_events", [])
    for event_id, payload, subject in zip(ids, payloads, subjects):
        if tuple(payload) == order:  # every field, in the contract's order (payload_in_contract_order)
            data = payload
        elif names.issuperset(payload) and required.issubset(payload):
            data = {name: payload[name] if name in payload else defaults[name] for name in fields}
        else:
            raise ValueError(f"{type}: fields {sorted(payload)} do not fit the contract's {sorted(names)}")
        encoded_id = event_id.encode()
        body = b"".join(
            (
                start,
                encoded_id,
                middle,
                b"" if subject is None else b',"subject":' + dumps(subject),
                after_subject,
                correlated or b'"' + encoded_id + b'"',
                caused,
                b',"data":',
                dumps(data, option=utc_z),
                b"}",
            )
        )
        pending.append({"event_id": event_id, "subject": type, "body": body, "created_at": now})
    return ids
