"""A tiny service used only by the backbone tests: it applies identify's
customer.created events to a table without a uniqueness guard, so applying an
event twice would show as two rows, and it fails on purpose for poison events."""

from __future__ import annotations

from sqlalchemy import Column, Integer, String, Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.app import ServiceDefinition
from shared.consumer import ConsumerSpec
from shared.contracts import CATALOG, CustomerCreated, DeadLetter, contract, dlq_subject
from shared.db import make_base
from shared.events import Event
from shared.messaging import messaging_tables

Base = make_base()
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


async def on_customer_created(session: AsyncSession, event: Event[CustomerCreated]) -> None:
    if event.data.name == "poison":
        raise RuntimeError("this event always fails")
    await session.execute(insert(applied).values(event_id=event.id, customer_id=event.data.id))


async def on_customers_created(session: AsyncSession, events: list[Event[CustomerCreated]]) -> None:
    if any(event.data.name == "poison" for event in events):
        raise RuntimeError("this event always fails")
    await session.execute(insert(applied), [{"event_id": e.id, "customer_id": e.data.id} for e in events])


BATCH_DEFINITION = ServiceDefinition(
    name="probe",
    description="backbone test probe, applying micro-batches at once",
    metadata=Base.metadata,
    messaging=messaging,
    consumers=[
        ConsumerSpec("apply", batch_handler=on_customers_created, subjects=("crm.identify.customer.created",))
    ],
)

DEFINITION = ServiceDefinition(
    name="probe",
    description="backbone test probe",
    metadata=Base.metadata,
    messaging=messaging,
    consumers=[ConsumerSpec("apply", {"crm.identify.customer.created": on_customer_created})],
)


async def applied_count(handle, event_id: str | None = None) -> int:
    async with handle.runtime.db.reader() as session:
        query = select(func.count()).select_from(applied)
        if event_id:
            query = query.where(applied.c.event_id == event_id)
        return (await session.execute(query)).scalar_one()
