"""Playbooks' queries."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.lifecycle.models import CustomerStage
from services.lifecycle.playbooks.models import AccountManager, Playbook, PlaybookEntry
from shared.db.bulk import one_of
from shared.db.database import dialect_name, insert_ignoring

_playbooks = Playbook.__table__
_entries = PlaybookEntry.__table__
_managers = AccountManager.__table__
# Built once: read for every micro-batch of stage changes.
_ENABLED = select(_playbooks).where(_playbooks.c.enabled.is_(True)).order_by(_playbooks.c.id)


async def insert_playbook(session: AsyncSession, row: dict[str, Any]) -> None:
    await session.execute(_playbooks.insert(), [row])


async def read_playbook(session: AsyncSession, playbook_id: str, *, for_update: bool = False) -> dict[str, Any] | None:
    query = select(_playbooks).where(_playbooks.c.id == playbook_id)
    if for_update:
        query = query.with_for_update()
    row = (await session.execute(query)).mappings().first()
    return dict(row) if row is not None else None


async def update_playbook(session: AsyncSession, playbook_id: str, values: dict[str, Any]) -> None:
    await session.execute(update(_playbooks).where(_playbooks.c.id == playbook_id).values(**values))


async def playbooks_page(session: AsyncSession, *, after_id: str | None, limit: int) -> list[dict[str, Any]]:
    query = select(_playbooks).order_by(_playbooks.c.id).limit(limit)
    if after_id is not None:
        query = query.where(_playbooks.c.id > after_id)
    return [dict(row) for row in (await session.execute(query)).mappings()]


async def enabled_playbooks(session: AsyncSession) -> list[dict[str, Any]]:
    """Every enabled playbook (a handful: read once per micro-batch of stage changes)."""

    return [dict(row) for row in (await session.execute(_ENABLED)).mappings()]


async def insert_entries(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """New entries; one that names a transition already entered (a replay) is left out."""

    if rows:
        await session.execute(insert_ignoring(session, _entries, ["stage_event_id", "playbook_id"]), rows)


async def entered_transitions(session: AsyncSession, stage_event_ids: list[str]) -> set[tuple[str, str]]:
    """(playbook id, stage event id) of the entries these transitions already made."""

    if not stage_event_ids:
        return set()
    e = _entries.c
    query = select(e.playbook_id, e.stage_event_id).where(one_of(e.stage_event_id, dialect_name(session)))
    return {(row[0], row[1]) for row in await session.execute(query, {"ids": stage_event_ids})}


async def entries_page(
    session: AsyncSession, *, playbook_id: str, group: str | None, after_id: str | None, limit: int
) -> list[dict[str, Any]]:
    e = _entries.c
    query = select(_entries).where(e.playbook_id == playbook_id).order_by(e.id).limit(limit)
    if group is not None:
        query = query.where(e.group == group)
    if after_id is not None:
        query = query.where(e.id > after_id)
    return [dict(row) for row in (await session.execute(query)).mappings()]


async def entries_of_customer(
    session: AsyncSession, *, customer_id: str, before_id: str | None, limit: int
) -> list[dict[str, Any]]:
    """The customer's entries, newest first."""

    e = _entries.c
    query = select(_entries).where(e.customer_id == customer_id).order_by(e.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(e.id < before_id)
    return [dict(row) for row in (await session.execute(query)).mappings()]


async def has_stage(session: AsyncSession, customer_id: str) -> bool:
    """lifecycle knows the customer: every customer identify created has a stage row."""

    stages = CustomerStage.__table__
    query = select(stages.c.customer_id).where(stages.c.customer_id == customer_id)
    return (await session.execute(query)).first() is not None


async def move_entries(session: AsyncSession, *, merged_ids: list[str], survivor_id: str) -> None:
    await session.execute(
        update(_entries).where(_entries.c.customer_id.in_(merged_ids)).values(customer_id=survivor_id)
    )


# --- account managers (network's relations) ---------------------------------------------------


async def add_account_managers(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """`rows`: {relation_id, customer_id, stakeholder_id, started_at}; one known already is left."""

    if rows:
        await session.execute(insert_ignoring(session, _managers, ["relation_id"]), rows)


async def drop_account_managers(session: AsyncSession, relation_ids: list[str]) -> None:
    if relation_ids:
        mine = one_of(_managers.c.relation_id, dialect_name(session))
        await session.execute(delete(_managers).where(mine), {"ids": relation_ids})


async def account_managers(session: AsyncSession, customer_ids: list[str]) -> dict[str, str]:
    """{customer id: its account manager's stakeholder id}: the newest started of its current ones."""

    if not customer_ids:
        return {}
    m = _managers.c
    query = (
        select(m.customer_id, m.stakeholder_id)
        .where(one_of(m.customer_id, dialect_name(session)))
        .order_by(m.started_at, m.relation_id)
    )
    rows = await session.execute(query, {"ids": list(set(customer_ids))})
    return {cid: sid for cid, sid in rows}  # noqa: C416 - the last (newest) of each customer wins


async def move_account_managers(session: AsyncSession, *, merged_ids: list[str], survivor_id: str) -> None:
    await session.execute(
        update(_managers).where(_managers.c.customer_id.in_(merged_ids)).values(customer_id=survivor_id)
    )
