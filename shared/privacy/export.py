"""What a service holds about a customer (GDPR Art. 15/20), read from the classification marks.

Every table tied to customers (`about_customers`) answers with its rows of the customer
and of the customers merged into it, the purpose it is kept for, and which columns are
personal. A new table or column is exported with no code here. Each service serves this
at `GET /internal/customers/{id}/personal-data`, outside the gateway's route table: the
gateway's export job (gateway/exports.py) gathers it over internal HTTP, so no personal
data goes on the bus for an export.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from fastapi import APIRouter
from sqlalchemy import MetaData, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.http.deps import ReadSession
from shared.http.errors import NotFound
from shared.privacy.classification import customer_link, personal_columns
from shared.privacy.erasure import customer_rows

PATH = "/internal/customers/{customer_id}/personal-data"

# The customers merged into one (identify reads its customers, the others their alias table).
MergedIds = Callable[[AsyncSession, str], Awaitable[list[str]]]
# Whether the service knows the customer at all (identify: 404 for an unknown id).
Known = Callable[[AsyncSession, str], Awaitable[bool]]


def _json_ready(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, bytes):
        return None
    return value


async def aliases_merged_into(metadata: MetaData, session: AsyncSession, customer_id: str) -> list[str]:
    """The ids merged into `customer_id`, from the service's alias table (none without one)."""

    aliases = metadata.tables.get("customer_aliases")
    if aliases is None:
        return []
    rows = await session.execute(select(aliases.c.merged_id).where(aliases.c.survivor_id == customer_id))
    return sorted(rows.scalars())


async def customer_data(session: AsyncSession, metadata: MetaData, ids: list[str]) -> list[dict[str, Any]]:
    """Per table tied to customers: why it is kept, its personal columns, the customer's rows."""

    tables = []
    for table in metadata.sorted_tables:
        link = customer_link(table)
        where = customer_rows(table, ids)
        if link is None or where is None:
            continue
        rows = (await session.execute(select(table).where(where))).mappings().all()
        tables.append(
            {
                "table": table.name,
                "purpose": link.purpose,
                "personal": personal_columns(table),
                "rows": [{key: _json_ready(value) for key, value in row.items()} for row in rows],
            }
        )
    return tables


def export_router(metadata: MetaData, *, merged_ids: MergedIds | None = None, known: Known | None = None) -> APIRouter:
    """The service's internal `GET /internal/customers/{id}/personal-data` (not in the public API)."""

    router = APIRouter()

    @router.get(PATH, include_in_schema=False)
    async def personal_data(customer_id: str, session: ReadSession) -> dict[str, Any]:
        if known is not None and not await known(session, customer_id):
            raise NotFound(f"no customer with id {customer_id}")
        if merged_ids is not None:
            merged = await merged_ids(session, customer_id)
        else:
            merged = await aliases_merged_into(metadata, session, customer_id)
        ids = [customer_id, *merged]
        return {
            "service": session.info["service"],
            "customer_id": customer_id,
            "customer_ids": ids,
            "tables": await customer_data(session, metadata, ids),
        }

    return router
