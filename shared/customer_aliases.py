"""Merged customer ids and their survivors (`crm.identify.customer.merged`), per service.

lifecycle, engage, network and value each keep this table in their own database.
A follower's consumers apply events in their own order, so an event about a
merged customer can arrive after the merge (a purchase recorded just before it,
read late by another consumer): such events are applied to the survivor by
looking their customer up here.
"""

from __future__ import annotations

from datetime import datetime, timezone

from typing import Awaitable, Callable

from sqlalchemy import Column, MetaData, String, Table, bindparam, select, update

from shared.consumer import ConsumerSpec
from shared.db import UTCDateTime, insert_ignoring
from shared.errors import Conflict, NotFound
from shared.events import CloudEvent


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

    async def record(self, session, event: CloudEvent) -> tuple[str, list[str]]:
        """Remember a merge; ids merged earlier into a now merged customer follow to the
        new survivor. Returns (survivor_id, merged_ids)."""

        data = event.data
        survivor, merged = data["survivor_id"], list(data["merged_ids"])
        at = datetime.fromisoformat(data["merged_at"]) if isinstance(data["merged_at"], str) else data["merged_at"]
        at = at if at.tzinfo is not None else at.replace(tzinfo=timezone.utc)
        await session.execute(
            update(self.table).where(self.table.c.survivor_id.in_(merged)).values(survivor_id=survivor)
        )
        await session.execute(
            insert_ignoring(session, self.table, ["merged_id"]),
            [{"merged_id": cid, "survivor_id": survivor, "merged_at": at} for cid in merged],
        )
        return survivor, merged

    async def survivors(self, session, customer_ids) -> dict[str, str]:
        """{merged id: survivor} for those of `customer_ids` that were merged (one query)."""

        ids = set(customer_ids)
        if not ids:
            return {}
        rows = await session.execute(
            select(self.table.c.merged_id, self.table.c.survivor_id).where(self.table.c.merged_id.in_(ids))
        )
        return {merged: survivor for merged, survivor in rows}

    async def survivor_of(self, session, customer_id: str) -> str | None:
        return (await session.execute(self._survivor_of, {"customer_id": customer_id})).scalar()

    async def not_found(self, session, customer_id: str) -> NotFound:
        """404 for a customer the service has nothing for, naming the survivor of a merged id."""

        survivor = await self.survivor_of(session, customer_id)
        if survivor:
            return NotFound(f"customer {customer_id} was merged into {survivor}", error="customer_merged")
        return NotFound(f"no customer with id {customer_id}")

    async def refuse_merged(self, session, customer_id: str) -> None:
        """409 naming the survivor when a request names a merged customer."""

        survivor = await self.survivor_of(session, customer_id)
        if survivor:
            raise Conflict(
                f"customer {customer_id} was merged into {survivor}; use {survivor} instead", error="customer_merged"
            )


MERGED = "crm.identify.customer.merged"


def merges_consumer(follow: Callable[..., Awaitable[None]], description: str) -> ConsumerSpec:
    """The `<service>-merges` consumer: `follow(session=, event=)` applies one merge."""

    async def on_customer_merged(session, event: CloudEvent) -> None:
        await follow(session=session, event=event)

    return ConsumerSpec(purpose="merges", handlers={MERGED: on_customer_merged}, description=description)
