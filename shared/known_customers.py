"""The customers a service has heard identify announce (`crm.identify.customer.created`).

engage, network and value each keep this table in their own database, so they
can refuse a request naming a customer that does not exist (422 or 404) without
asking identify.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import Column, MetaData, String, Table, bindparam, exists, select

from shared.db import UTCDateTime, insert_ignoring
from shared.events import CloudEvent


def _aware(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


class KnownCustomers:
    def __init__(self, metadata: MetaData):
        self.table = Table(
            "known_customers",
            metadata,
            Column("id", String(36), primary_key=True),
            Column("created_at", UTCDateTime, nullable=False),
        )
        self._exists = select(exists().where(self.table.c.id == bindparam("customer_id")))

    async def add(self, session, rows: list[dict]) -> None:
        """One statement for a batch of `{"id", "created_at"}`; a customer already known is left as it is."""

        if rows:
            await session.execute(insert_ignoring(session, self.table, ["id"]), rows)

    async def remember_created(self, session, events: list[CloudEvent]) -> None:
        """Remember the customers of a batch of `crm.identify.customer.created` events."""

        await self.add(session, [{"id": e.data["id"], "created_at": _aware(e.data["created_at"])} for e in events])

    async def contains(self, session, customer_id: str) -> bool:
        return bool((await session.execute(self._exists, {"customer_id": customer_id})).scalar())
