"""Identity resolution's queries: candidates by match key, and the statements of a merge."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.identify.models import (
    Customer,
    CustomerCosts,
    CustomerKind,
    CustomerNameToken,
    CustomerScore,
    ReferralSeen,
    ServiceCostSeen,
    ShippedIdeaSeen,
    Transaction,
)

# Bounds the work of one duplicates request, however common a key or token is.
CANDIDATE_LIMIT = 200


def _active_others(customer_id: str):
    return (Customer.id != customer_id, Customer.merged_into.is_(None))


async def customers_sharing_a_key(
    session: AsyncSession,
    *,
    customer_id: str,
    email_match_key: str | None,
    phone_key: str | None,
    name_key: str | None,
) -> list[Customer]:
    """Active customers equal to this one on at least one match key (each an indexed lookup)."""

    keys = [
        column == value
        for column, value in (
            (Customer.email_match_key, email_match_key),
            (Customer.phone_key, phone_key),
            (Customer.name_key, name_key),
        )
        if value
    ]
    if not keys:
        return []
    query = select(Customer).where(or_(*keys), *_active_others(customer_id)).order_by(Customer.id)
    return list((await session.execute(query.limit(CANDIDATE_LIMIT))).scalars())


async def customers_sharing_a_name_token(
    session: AsyncSession, *, customer_id: str, tokens: set[str]
) -> list[Customer]:
    """Active customers whose name holds one of `tokens` (the fuzzy-name candidate set)."""

    if not tokens:
        return []
    holders = (
        select(CustomerNameToken.customer_id)
        .where(CustomerNameToken.token.in_(sorted(tokens)), CustomerNameToken.customer_id != customer_id)
        .limit(CANDIDATE_LIMIT)
    )
    query = select(Customer).where(Customer.id.in_(holders), *_active_others(customer_id)).order_by(Customer.id)
    return list((await session.execute(query)).scalars())


# --- merging ------------------------------------------------------------------------


async def lock_customers(session: AsyncSession, customer_ids: list[str]) -> list[Customer]:
    """The customers, locked for the merge (PostgreSQL; SQLite's writer is already alone),
    in id order so two merges never wait on each other in a circle."""

    query = select(Customer).where(Customer.id.in_(customer_ids)).order_by(Customer.id).with_for_update()
    return list((await session.execute(query)).scalars())


async def move_transactions(session: AsyncSession, *, from_ids: list[str], to_id: str) -> None:
    await session.execute(update(Transaction).where(Transaction.customer_id.in_(from_ids)).values(customer_id=to_id))


async def repoint_customers(session: AsyncSession, *, from_ids: list[str], to_id: str) -> None:
    """Customers referred by a merged customer now count as referred by the survivor,
    and customers merged earlier into a merged customer now point at the survivor."""

    await session.execute(
        update(Customer).where(Customer.referred_by.in_(from_ids), Customer.id != to_id).values(referred_by=to_id)
    )
    await session.execute(update(Customer).where(Customer.merged_into.in_(from_ids)).values(merged_into=to_id))


async def repoint_referrals_seen(session: AsyncSession, *, from_ids: list[str], to_id: str) -> None:
    await session.execute(update(ReferralSeen).where(ReferralSeen.referrer_id.in_(from_ids)).values(referrer_id=to_id))
    await session.execute(update(ReferralSeen).where(ReferralSeen.referred_id.in_(from_ids)).values(referred_id=to_id))
    await session.execute(delete(ReferralSeen).where(ReferralSeen.referrer_id == ReferralSeen.referred_id))


async def repoint_shipped_ideas(session: AsyncSession, *, from_ids: list[str], to_id: str) -> None:
    """The merged customers' shipped ideas (inspiration evidence) become the survivor's."""

    await session.execute(
        update(ShippedIdeaSeen).where(ShippedIdeaSeen.customer_id.in_(from_ids)).values(customer_id=to_id)
    )


async def repoint_service_costs(session: AsyncSession, *, from_ids: list[str], to_id: str) -> None:
    """The merged customers' service costs (lifecycle's tickets) become the survivor's."""

    await session.execute(
        update(ServiceCostSeen).where(ServiceCostSeen.customer_id.in_(from_ids)).values(customer_id=to_id)
    )


async def drop_derived_rows(session: AsyncSession, customer_ids: list[str]) -> None:
    """Scores, kinds and name tokens of merged customers: they no longer stand on their own."""

    for table in (CustomerScore, CustomerKind, CustomerNameToken):
        await session.execute(delete(table).where(table.customer_id.in_(customer_ids)))


_COST_FIELDS = ("acquisition", "selling", "service")


async def add_up_costs(session: AsyncSession, *, from_ids: list[str], to_id: str, now) -> None:
    """The survivor's per-customer costs become the sum of the group's."""

    costs = CustomerCosts.__table__
    group = [to_id, *from_ids]
    rows = (await session.execute(select(costs).where(costs.c.customer_id.in_(group)))).mappings().all()
    if not any(row["customer_id"] in from_ids for row in rows):
        return
    totals = {field: sum((row[field] or Decimal(0) for row in rows), Decimal(0)) for field in _COST_FIELDS}
    await session.execute(delete(costs).where(costs.c.customer_id.in_(group)))
    await session.execute(costs.insert().values(customer_id=to_id, updated_at=now, **totals))
