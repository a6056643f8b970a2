"""A tiny service used only by the backbone tests: it applies identify's
customer.created events to a table without a uniqueness guard, so applying an
event twice would show as two rows, and it fails on purpose for poison events."""

from __future__ import annotations

from collections import Counter
from typing import ClassVar

from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase

from shared.db.database import NAMING_CONVENTION
from shared.events.consumer import ConsumerSpec
from shared.events.contracts import CATALOG, CustomerCreated, DeadLetter, ReferralRecorded, contract, dlq_subject
from shared.events.customer_aliases import CustomerAliases, Merge
from shared.events.envelope import CloudEvent, Event
from shared.events.messaging import messaging_tables
from shared.service.runtime import ServiceDefinition


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)  # the service's own
    __table__: ClassVar[Table]  # every model maps one table (SQLAlchemy types it a FromClause)


messaging = messaging_tables(Base.metadata)
applied = Table(
    "applied",
    Base.metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False),
    Column("customer_id", String(36), nullable=False),
)

if dlq_subject("probe") not in CATALOG:
    contract(dlq_subject("probe"), "probe", "dead letters of the test probe")(DeadLetter)


flaky_attempts: Counter[str] = Counter()  # event id → attempts at a `flaky` event


async def on_customer_created(session: AsyncSession, event: Event[CustomerCreated]) -> None:
    if event.data.name == "poison":
        raise RuntimeError("this event always fails")
    if event.data.name == "flaky":
        # Fails every attempt of its first delivery (the batch, the event alone, the spec
        # alone), then succeeds.
        flaky_attempts[event.id] += 1
        if flaky_attempts[event.id] <= 3:
            raise RuntimeError("this event fails at its first delivery")
    await session.execute(insert(applied).values(event_id=event.id, customer_id=event.data.id))


batch_sizes: list[int] = []  # how many events each call of the batch handler got


async def on_customers_created(session: AsyncSession, events: list[Event[CustomerCreated]]) -> None:
    if any(event.data.name == "poison" for event in events):
        raise RuntimeError("this event always fails")
    batch_sizes.append(len(events))
    await session.execute(insert(applied), [{"event_id": e.id, "customer_id": e.data.id} for e in events])


BATCH_DEFINITION = ServiceDefinition(
    name="probe",
    description="backbone test probe, applying micro-batches at once",
    metadata=Base.metadata,
    messaging=messaging,
    consumers=[
        ConsumerSpec(
            "apply", batch_handler=on_customers_created, subjects=("crm.identify.customer.created",), group="apply"
        )
    ],
)

DEFINITION = ServiceDefinition(
    name="probe",
    description="backbone test probe",
    metadata=Base.metadata,
    messaging=messaging,
    consumers=[ConsumerSpec("apply", {"crm.identify.customer.created": on_customer_created}, group="apply")],
)


async def on_customer_created_kept(session: AsyncSession, event: Event[CustomerCreated]) -> None:
    """A second spec on the same events that never fails: its rows are marked `kept`."""
    await session.execute(insert(applied).values(event_id=event.id, customer_id=f"kept:{event.data.id}"))


# Two specs sharing a durable consumer, one of them failing poison events (and flaky ones at first).
TWO_SPECS_DEFINITION = ServiceDefinition(
    name="probe",
    description="backbone test probe: two specs on one durable, one of them failing",
    metadata=Base.metadata,
    messaging=messaging,
    consumers=[
        ConsumerSpec("apply", {"crm.identify.customer.created": on_customer_created}, group="apply"),
        ConsumerSpec("keep", {"crm.identify.customer.created": on_customer_created_kept}, group="apply"),
    ],
)


async def inbox_rows(handle) -> list[tuple[str, str]]:
    async with handle.runtime.db.reader() as session:
        query = select(messaging.inbox.c.consumer, messaging.inbox.c.event_id)
        return sorted((consumer, event_id) for consumer, event_id in await session.execute(query))


# --- a probe following merges -------------------------------------------------------------

aliases = CustomerAliases(Base.metadata)
merge_steps_run = Table(
    "merge_steps_run",
    Base.metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("step", String(20), nullable=False),
    Column("survivor_id", String(36), nullable=False),
    Column("merged_ids", String(200), nullable=False),
)
referrals_seen = Table(
    "referrals_seen",
    Base.metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("referrer_id", String(36), nullable=False),
    Column("referred_id", String(36), nullable=False),
)


def _merge_step(name: str):
    async def step(session: AsyncSession, merge: Merge) -> None:
        await session.execute(
            insert(merge_steps_run).values(
                step=name, survivor_id=merge.survivor_id, merged_ids=",".join(merge.merged_ids)
            )
        )

    return step


async def on_referral(session: AsyncSession, event: Event[ReferralRecorded]) -> None:
    await session.execute(
        insert(referrals_seen).values(referrer_id=event.data.referrer_id, referred_id=event.data.referred_id)
    )


MERGING_DEFINITION = ServiceDefinition(
    name="probe",
    description="backbone test probe following merges with two aggregates",
    metadata=Base.metadata,
    messaging=messaging,
    consumers=aliases.consumers(
        [ConsumerSpec("apply", {"crm.network.referral.recorded": on_referral}, group="apply")],
        merge_steps=[_merge_step("first"), _merge_step("second")],
        merges_description="probe merges",
    ),
)


# Two specs following merges through the one alias table, sharing a durable consumer: a
# micro-batch looks its customers up once for both.
TWO_FOLLOWING_DEFINITION = ServiceDefinition(
    name="probe",
    description="backbone test probe: two specs following merges",
    metadata=Base.metadata,
    messaging=messaging,
    consumers=aliases.consumers(
        [
            ConsumerSpec("apply", {"crm.network.referral.recorded": on_referral}, group="apply"),
            ConsumerSpec("apply-again", {"crm.network.referral.recorded": on_referral}, group="apply"),
        ],
        merge_steps=[],
        merges_description="probe merges",
    ),
)


def read(raw: bytes) -> Event:
    """A stored message as the consumer hands it to a handler."""

    envelope = CloudEvent.from_json(raw)
    return CATALOG[envelope.type].read(envelope)


async def applied_count(handle, event_id: str | None = None) -> int:
    async with handle.runtime.db.reader() as session:
        query = select(func.count()).select_from(applied)
        if event_id:
            query = query.where(applied.c.event_id == event_id)
        return (await session.execute(query)).scalar_one()
