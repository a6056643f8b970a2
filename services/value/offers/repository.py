"""Offer templates' queries, and the bulk insert of the offers issued from them."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.value.models import Offer
from services.value.offers.models import OfferTemplate
from shared.db.bulk import bulk_insert

_templates = OfferTemplate.__table__
_offers = Offer.__table__

OFFER_COLUMNS = tuple(c.name for c in _offers.columns)


async def insert_template(session: AsyncSession, row: dict[str, Any]) -> None:
    await session.execute(_templates.insert(), [row])


async def read_template(session: AsyncSession, template_id: str):
    return (await session.execute(select(_templates).where(_templates.c.id == template_id))).mappings().first()


async def list_templates(session: AsyncSession, *, before_id: str | None, limit: int):
    query = select(_templates).order_by(_templates.c.id.desc()).limit(limit)
    if before_id:
        query = query.where(_templates.c.id < before_id)
    return (await session.execute(query)).mappings().all()


async def take_budget(session: AsyncSession, template_id: str, n: int) -> bool:
    """Count n more offers issued, only if that stays within the budget: one conditional
    UPDATE, so two issues racing for the last offer cannot both get it."""

    t = _templates
    result = cast(
        "CursorResult[Any]",
        await session.execute(
            update(t)
            .where(t.c.id == template_id, or_(t.c.budget.is_(None), t.c.issued + n <= t.c.budget))
            .values(issued=t.c.issued + n)
        ),
    )
    return result.rowcount == 1


async def held_counts(session: AsyncSession, template_id: str, customer_ids: list[str] | None = None) -> dict[str, int]:
    """{customer: offers of this template it was issued}; all holders when customer_ids is None."""

    query = (
        select(_offers.c.customer_id, func.count())
        .where(_offers.c.template_id == template_id)
        .group_by(_offers.c.customer_id)
    )
    if customer_ids is not None:
        query = query.where(_offers.c.customer_id.in_(customer_ids))
    return {str(customer): int(count) for customer, count in (await session.execute(query)).all()}


async def insert_offer_rows(session: AsyncSession, rows: list[tuple[Any, ...]]) -> None:
    """Rows as tuples in OFFER_COLUMNS' order."""

    await bulk_insert(session, _offers, OFFER_COLUMNS, rows)
