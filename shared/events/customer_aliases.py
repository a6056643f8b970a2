"""Merged customer ids and their survivors (`crm.identify.customer.merged`), per service.

lifecycle, engage, network and value each keep this table in their own database.
A follower's consumers apply events in their own order, so an event about a
merged customer can arrive after the merge (a purchase recorded just before it,
read late by another consumer): the consumer framework looks every customer an
event names up here and hands the handlers the survivor (`ConsumerSpec.survivors`).

`CustomerAliases.consumers` gives a service its consumers: each one following merges
through this table, plus the `<service>-merges` consumer. That one records each merge
here, then runs the service's merge steps in order, one per aggregate that keeps data
about customers (each moves its rows to the survivor).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import orjson
from sqlalchemy import Column, MetaData, String, Table, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.bulk import fetch_all, one_of
from shared.db.database import UTCDateTime, insert_ignoring
from shared.events.consumer import ConsumerSpec
from shared.events.contracts import CustomerMerged
from shared.events.envelope import Event
from shared.http.errors import MergedCustomer, NotFound

MERGED = "crm.identify.customer.merged"


@dataclass(frozen=True)
class Merge:
    """One merge as a merge step sees it (the alias table already records it)."""

    survivor_id: str
    merged_ids: list[str]
    at: datetime
    event: Event[CustomerMerged]


# Moves one aggregate's data of `merge.merged_ids` to `merge.survivor_id`.
MergeStep = Callable[[AsyncSession, Merge], Awaitable[None]]


class CustomerAliases:
    def __init__(self, metadata: MetaData):
        self.table = Table(
            "customer_aliases",
            metadata,
            Column("merged_id", String(36), primary_key=True),
            Column("survivor_id", String(36), nullable=False, index=True),
            Column("merged_at", UTCDateTime, nullable=False),
        )
        self._survivor_of = select(self.table.c.survivor_id).where(self.table.c.merged_id == bindparam("customer_id"))
        # Looked up for every micro-batch of every consumer: one parameter for all its ids
        # (an array on PostgreSQL, a JSON list on SQLite), half the CPU of an IN list of 500.
        pair = select(self.table.c.merged_id, self.table.c.survivor_id)
        json_ids = select(func.json_each(bindparam("ids")).table_valued("value").c.value)
        self._survivors = {
            "postgresql": pair.where(one_of(self.table.c.merged_id, "postgresql")),
            "sqlite": pair.where(self.table.c.merged_id.in_(json_ids)),
        }

    def consumers(
        self, specs: Sequence[ConsumerSpec], *, merge_steps: Sequence[MergeStep], merges_description: str
    ) -> list[ConsumerSpec]:
        """`specs` following merges through this table, and the `<service>-merges` consumer
        that records each merge and runs `merge_steps` (one per aggregate) in order."""

        async def on_customer_merged(session: AsyncSession, event: Event[CustomerMerged]) -> None:
            merge = await self.record(session, event)
            for step in merge_steps:
                await step(session, merge)

        merges = ConsumerSpec(purpose="merges", handlers={MERGED: on_customer_merged}, description=merges_description)
        following = [replace(spec, survivors=self.survivors) if spec.follows_merges else spec for spec in specs]
        return [*following, merges]

    async def record(self, session: AsyncSession, event: Event[CustomerMerged]) -> Merge:
        """Remember a merge; ids merged earlier into a now merged customer follow to the new survivor."""

        survivor, merged = event.data.survivor_id, list(event.data.merged_ids)
        await session.execute(
            update(self.table).where(self.table.c.survivor_id.in_(merged)).values(survivor_id=survivor)
        )
        await session.execute(
            insert_ignoring(session, self.table, ["merged_id"]),
            [{"merged_id": cid, "survivor_id": survivor, "merged_at": event.at} for cid in merged],
        )
        return Merge(survivor_id=survivor, merged_ids=merged, at=event.at, event=event)

    async def survivors(self, session: AsyncSession, customer_ids: Iterable[str]) -> dict[str, str]:
        """{merged id: survivor} for those of `customer_ids` that were merged (one query)."""

        ids = list(set(customer_ids))
        if not ids:
            return {}
        dialect = session.get_bind().dialect.name
        if dialect == "postgresql":  # on the driver: every micro-batch of every consumer asks
            rows: Iterable[Sequence[str]] = await fetch_all(session, self._survivors[dialect], {"ids": ids})
        else:
            rows = await session.execute(self._survivors["sqlite"], {"ids": orjson.dumps(ids).decode()})
        return {merged: survivor for merged, survivor in rows}  # noqa: C416 - dict(rows) takes a Result for a mapping

    async def survivor_of(self, session: AsyncSession, customer_id: str) -> str | None:
        survivor: str | None = (await session.execute(self._survivor_of, {"customer_id": customer_id})).scalar()
        return survivor

    async def not_found_or_merged(self, session: AsyncSession, customer_id: str) -> NotFound | MergedCustomer:
        """For a customer the service has nothing for: 404, or 409 `customer_merged` naming
        the survivor when the id was merged (as every write naming it gets)."""

        survivor = await self.survivor_of(session, customer_id)
        if survivor:
            return MergedCustomer(customer_id, survivor)
        return NotFound(f"no customer with id {customer_id}")

    async def refuse_merged(self, session: AsyncSession, customer_id: str) -> None:
        """409 naming the survivor when a request names a merged customer."""

        survivor = await self.survivor_of(session, customer_id)
        if survivor:
            raise MergedCustomer(customer_id, survivor)
