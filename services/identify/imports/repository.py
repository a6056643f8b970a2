"""The import jobs' queries."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any, cast

from sqlalchemy import CursorResult, String, Table, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.identify.customers import repository as customers
from services.identify.models import Customer, ImportJob, ImportRejection
from shared.db.bulk import bulk_insert, key_chunks, one_of
from shared.db.database import dialect_name
from shared.db.leases import live

_jobs = ImportJob.__table__
_rejections = ImportRejection.__table__
_customers = Customer.__table__

COUNTERS = ("rows_read", "recorded", "duplicates", "rejected", "customers_created")


async def add_job(session: AsyncSession, row: dict) -> None:
    await session.execute(insert(_jobs), row)


async def get_job(session: AsyncSession, job_id: str):
    return (await session.execute(select(_jobs).where(_jobs.c.id == job_id))).mappings().first()


async def list_jobs(session: AsyncSession, *, before_id: str | None, limit: int) -> list:
    query = select(_jobs).order_by(_jobs.c.id.desc()).limit(limit)
    if before_id:
        query = query.where(_jobs.c.id < before_id)
    return list((await session.execute(query)).mappings())


async def rejections(session: AsyncSession, job_id: str, *, after_line: int | None, limit: int) -> list:
    query = (
        select(_rejections.c.line, _rejections.c.reason, _rejections.c.raw)
        .where(_rejections.c.import_id == job_id)
        .order_by(_rejections.c.line)
        .limit(limit)
    )
    if after_line is not None:
        query = query.where(_rejections.c.line > after_line)
    return list((await session.execute(query)).mappings())


async def add_rejections(session: AsyncSession, rows: list[dict]) -> None:
    if rows:
        for row in rows:  # PostgreSQL stores no NUL in text: the operator sees U+FFFD
            if "\x00" in row["raw"]:
                row["raw"] = row["raw"].replace("\x00", "\ufffd")
        await session.execute(insert(_rejections), rows)


async def add_progress(session: AsyncSession, job_id: str, counts: dict[str, int]) -> None:
    await session.execute(
        update(_jobs).where(_jobs.c.id == job_id).values({name: _jobs.c[name] + counts[name] for name in COUNTERS})
    )


async def finish_job(
    session: AsyncSession, job_id: str, *, status: str, failure: str | None, at: datetime, if_running: bool = False
) -> None:
    query = update(_jobs).where(_jobs.c.id == job_id)
    if if_running:
        query = query.where(_jobs.c.status == "running")
    await session.execute(query.values(status=status, failure=failure, finished_at=at))


def job_lease(job_id: Any) -> Any:
    """The name of the lease its replica holds while a job runs (SQL when given a column)."""

    return literal("import:", String) + job_id if not isinstance(job_id, str) else f"import:{job_id}"


async def fail_running_jobs(session: AsyncSession, *, failure: str, at: datetime, leases: Table, grace_s: float) -> int:
    """Fail the jobs left `running` by a replica that is gone: nobody has held their lease for
    `grace_s`."""

    # An UPDATE's result is a CursorResult (it has rowcount); Session.execute is typed Result.
    result = cast(
        "CursorResult[*tuple[Any, ...]]",
        await session.execute(
            update(_jobs)
            .where(_jobs.c.status == "running", ~live(leases, job_lease(_jobs.c.id), at, grace_s))
            .values(status="failed", failure=failure, finished_at=at)
        ),
    )
    return result.rowcount


async def customers_by_external_id(session: AsyncSession, external_ids) -> dict[str, str]:
    found: dict[str, str] = {}
    dialect = dialect_name(session)
    for chunk in key_chunks(external_ids, dialect):
        result = await session.execute(_by_external_id(dialect), {"ids": chunk})
        found.update((row.external_id, row.id) for row in result)
    return found


@cache
def _by_external_id(dialect: str):
    return select(_customers.c.external_id, _customers.c.id).where(one_of(_customers.c.external_id, dialect))


CUSTOMER_COLUMNS = ("id", "external_id", "referral_code", "purchase_count", "created_at", "updated_at")


async def add_customers(session: AsyncSession, rows: list[tuple]) -> None:
    """Insert customers known only by external id (tuples of CUSTOMER_COLUMNS). One that
    another writer added meanwhile is an IntegrityError: the import retries its batch."""

    await bulk_insert(session, _customers, CUSTOMER_COLUMNS, rows)
    await customers.index_new_customers(session, [row[0] for row in rows])
