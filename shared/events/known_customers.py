"""The customers a service has heard identify announce (`crm.identify.customer.created`).

engage, network and value each keep this table in their own database, so they
can refuse a request naming a customer that does not exist (422 or 404) without
asking identify. `consumer` is the `<service>-customers` consumer that fills it;
`follow_merge` is the merge step that knows a merge's survivor.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, MetaData, String, Table, bindparam, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.database import UTCDateTime, insert_ignoring
from shared.events.consumer import ConsumerSpec
from shared.events.contracts import CustomerCreated
from shared.events.customer_aliases import Merge
from shared.events.envelope import Event

CREATED = "crm.identify.customer.created"


class KnownCustomers:
    def __init__(self, metadata: MetaData):
        self.table = Table(
            "known_customers",
            metadata,
            Column("id", String(36), primary_key=True),
            Column("created_at", UTCDateTime, nullable=False),
        )
        self._exists = select(exists().where(self.table.c.id == bindparam("customer_id")))

    def consumer(self, description: str) -> ConsumerSpec:
        """The `<service>-customers` consumer: remembers every customer identify creates,
        a whole micro-batch in one INSERT. It keeps the ids as identify announced them, so
        it needs no survivors (saving a lookup per batch): `follow_merge` knows the survivor."""

        async def on_customers_created(session: AsyncSession, events: list[Event[CustomerCreated]]) -> None:
            await self.remember_created(session, events)

        return ConsumerSpec(
            purpose="customers",
            batch_handler=on_customers_created,
            subjects=(CREATED,),
            description=description,
            follows_merges=False,
        )

    async def add(self, session: AsyncSession, rows: list[dict[str, Any]]) -> None:
        """One statement for a batch of `{"id", "created_at"}`; a customer already known is left as it is."""

        if rows:
            await session.execute(insert_ignoring(session, self.table, ["id"]), rows)

    async def remember_created(self, session: AsyncSession, events: list[Event[CustomerCreated]]) -> None:
        """Remember the customers of a batch of `crm.identify.customer.created` events."""

        await self.add(session, [{"id": e.data.id, "created_at": e.at} for e in events])

    async def follow_merge(self, session: AsyncSession, merge: Merge) -> None:
        """A merge step: the survivor is a known customer (since the merge, if it was not before)."""

        await self.add(session, [{"id": merge.survivor_id, "created_at": merge.at}])

    async def contains(self, session: AsyncSession, customer_id: str) -> bool:
        return bool((await session.execute(self._exists, {"customer_id": customer_id})).scalar())
