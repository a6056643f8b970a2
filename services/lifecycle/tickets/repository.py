"""Tickets' queries: tickets, comments, history, SLA policies, calendars, employees."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.lifecycle.models import CustomerStage, aliases, profiles
from services.lifecycle.tickets.models import (
    BusinessCalendar,
    Employee,
    SlaPolicy,
    Ticket,
    TicketChange,
    TicketComment,
)
from shared.db.database import insert_ignoring
from shared.events.customer_profiles import kinds_of

# --- customers and employees ----------------------------------------------------------------


async def requester(session: AsyncSession, customer_id: str) -> dict[str, Any] | None:
    """One query for a new ticket's customer: None when lifecycle has no stage for it (unknown, or
    merged away); else its kinds (identify's, from the profiles) and the survivor when merged."""

    stages, profile, alias = CustomerStage.__table__, profiles.table, aliases.table
    query = (
        select(stages.c.customer_id, profile.c.kinds, alias.c.survivor_id)
        .select_from(
            stages.outerjoin(profile, profile.c.customer_id == stages.c.customer_id).outerjoin(
                alias, alias.c.merged_id == stages.c.customer_id
            )
        )
        .where(stages.c.customer_id == customer_id)
    )
    row = (await session.execute(query)).first()
    return None if row is None else {"kinds": kinds_of(row.kinds), "survivor_id": row.survivor_id}


async def add_employees(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert_ignoring(session, Employee.__table__, ["id"]), rows)


async def is_employee(session: AsyncSession, stakeholder_id: str) -> bool:
    return await session.get(Employee, stakeholder_id) is not None


# --- tickets --------------------------------------------------------------------------------


async def ticket(session: AsyncSession, ticket_id: str) -> Ticket | None:
    return await session.get(Ticket, ticket_id)


async def tickets(
    session: AsyncSession,
    *,
    after_id: str | None,
    limit: int,
    customer_id: str | None = None,
    status: str | None = None,
    assignee_id: str | None = None,
    queue: str | None = None,
) -> list[Ticket]:
    """In id order (ids are uuid7: creation order)."""

    query = select(Ticket).order_by(Ticket.id).limit(limit)
    for column, value in (
        (Ticket.customer_id, customer_id),
        (Ticket.status, status),
        (Ticket.assignee_id, assignee_id),
        (Ticket.queue, queue),
    ):
        if value is not None:
            query = query.where(column == value)
    if after_id is not None:
        query = query.where(Ticket.id > after_id)
    return list((await session.scalars(query)).all())


async def overdue(session: AsyncSession, now: datetime, limit: int) -> list[Ticket]:
    """Running tickets whose next due time has passed, the most overdue first."""

    query = select(Ticket).where(Ticket.next_due_at <= now).order_by(Ticket.next_due_at, Ticket.id).limit(limit)
    return list((await session.scalars(query)).all())


async def comments(session: AsyncSession, ticket_id: str, *, after_id: str | None, limit: int) -> list[TicketComment]:
    query = select(TicketComment).where(TicketComment.ticket_id == ticket_id).order_by(TicketComment.id).limit(limit)
    if after_id is not None:
        query = query.where(TicketComment.id > after_id)
    return list((await session.scalars(query)).all())


async def history(session: AsyncSession, ticket_id: str, *, after_seq: int | None, limit: int) -> list[TicketChange]:
    query = select(TicketChange).where(TicketChange.ticket_id == ticket_id).order_by(TicketChange.seq).limit(limit)
    if after_seq is not None:
        query = query.where(TicketChange.seq > after_seq)
    return list((await session.scalars(query)).all())


async def move_to_survivor(session: AsyncSession, *, merged_ids: list[str], survivor_id: str) -> None:
    for table in (Ticket.__table__, TicketComment.__table__, TicketChange.__table__):
        await session.execute(update(table).where(table.c.customer_id.in_(merged_ids)).values(customer_id=survivor_id))


# --- policies and calendars -------------------------------------------------------------------


async def policy(session: AsyncSession, policy_id: str) -> SlaPolicy | None:
    return await session.get(SlaPolicy, policy_id)


async def policy_and_calendar(
    session: AsyncSession, policy_id: str | None
) -> tuple[SlaPolicy | None, BusinessCalendar | None]:
    """A policy (the default one when `policy_id` is None) with its calendar, in one query."""

    query = select(SlaPolicy, BusinessCalendar).outerjoin(
        BusinessCalendar, BusinessCalendar.id == SlaPolicy.calendar_id
    )
    query = query.where(SlaPolicy.is_default.is_(True)) if policy_id is None else query.where(SlaPolicy.id == policy_id)
    row = (await session.execute(query.limit(1))).first()
    return (row[0], row[1]) if row is not None else (None, None)


async def insert_ticket(session: AsyncSession, ticket: Ticket, change: dict[str, Any]) -> None:
    """A new ticket and its first history row, as two plain INSERTs (no unit of work: ticket
    creation is measured against POST /v1/interactions, bench/ticket_bench.py)."""

    table = Ticket.__table__
    await session.execute(table.insert(), {column.key: getattr(ticket, column.key) for column in table.columns})
    await session.execute(TicketChange.__table__.insert(), change)


async def clear_default(session: AsyncSession) -> None:
    await session.execute(update(SlaPolicy.__table__).values(is_default=False))


async def policies(session: AsyncSession, *, after_id: str | None, limit: int) -> list[SlaPolicy]:
    query = select(SlaPolicy).order_by(SlaPolicy.id).limit(limit)
    if after_id is not None:
        query = query.where(SlaPolicy.id > after_id)
    return list((await session.scalars(query)).all())


async def calendar(session: AsyncSession, calendar_id: str) -> BusinessCalendar | None:
    return await session.get(BusinessCalendar, calendar_id)


async def calendars(session: AsyncSession, *, after_id: str | None, limit: int) -> list[BusinessCalendar]:
    query = select(BusinessCalendar).order_by(BusinessCalendar.id).limit(limit)
    if after_id is not None:
        query = query.where(BusinessCalendar.id > after_id)
    return list((await session.scalars(query)).all())
