"""Each customer's purchase summary and purchase days, kept current as transactions arrive.

The new transactions of a write are folded into the tables with set-based upserts
(one statement per table per write, never a rescan of the customer's transactions):
first/last purchase move only when the new ones are earlier/later, counts and sums
add up, and a purchase day is one row per customer and UTC day, so a second purchase
on the same day adds to that day instead of adding a purchase day (the same-day
convention of the BG/NBD papers). A customer's `purchase_days` and `first_day_spend`
(the spend of the earliest purchase day) come from the write itself when its summary
is new, and are read back from purchase_days when it exists, so an earlier purchase
arriving late moves them too. A write of one purchase day on PostgreSQL (a purchase
through the API) sends its day and its summary in one statement: the summary reads the
customer's other days and counts this one with them (one round trip less per purchase).

Only money in the reporting currency is summed (services/identify/money/fx.py): a
transaction's spend is its `reporting_amount` less what was refunded of it, its margin
and cost are converted at its rate (the margin shrinks with the share refunded), and a
voided transaction is left out (rebuild_summaries reads only recorded ones). A
transaction with no reporting amount (recorded in another currency before rates
existed) counts as a purchase with no revenue.

`rebuild_summaries` recomputes both tables for some customers from their transactions,
e.g. after a merge moved transactions to the survivor.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from services.identify.money.fx import CENT_OF_CENT, ONE, convert
from services.identify.portfolio import repository
from services.identify.portfolio.repository import REFERENCE_DAY
from services.identify.settings import portfolio_settings
from shared.db.database import utcnow
from shared.db.driver import send_gathered, waits_together

ZERO = Decimal(0)


def discount_factor(day: date, annual_rate: float) -> float:
    """(1 + rate)^((REFERENCE_DAY − day) / 365): a purchase's revenue compounded to the
    reference day (see PurchaseSummary.discounted_spend); infinite for a day so far
    back that the float overflows (scores then hold null, never an OverflowError)."""

    try:
        return (1.0 + annual_rate) ** ((REFERENCE_DAY - day).days / 365.0)
    except OverflowError:
        return math.inf


def _day_of(occurred_at):
    if occurred_at.tzinfo is not None:
        occurred_at = occurred_at.astimezone(UTC)
    return occurred_at.date()


def revenue(row: Mapping) -> tuple[Decimal, Decimal | None, Decimal | None]:
    """(spend, margin, cost) of a transaction in the reporting currency, net of its refunds."""

    spend, rate = row["reporting_amount"], row["fx_rate"]
    margin, cost = row["margin"], row["cost"]
    refunded = row.get("refunded_amount")
    if rate is ONE and not refunded:  # a new purchase in the reporting currency: as it is
        return spend, margin, cost
    if spend is None:
        return ZERO, None, None
    if refunded:
        spend -= row["refunded_reporting_amount"]
        if margin is not None:
            margin = margin * (row["amount"] - refunded) / row["amount"]
    if rate != 1:
        margin = None if margin is None else convert(margin, rate)
        cost = None if cost is None else convert(cost, rate)
    elif refunded and margin is not None:
        margin = margin.quantize(CENT_OF_CENT)
    return spend, margin, cost


def _add(total: Decimal | None, value: Decimal | None) -> Decimal | None:
    if value is None:
        return total
    return value if total is None else total + value


async def add_transactions(session: AsyncSession, rows: Iterable[Mapping]) -> None:
    """Fold new transactions (mappings with customer_id, occurred_at, amount, margin, cost,
    reporting_amount, fx_rate and optionally refunded_amount and refunded_reporting_amount)
    into purchase_days and purchase_summaries."""

    days: dict[tuple, dict] = {}
    customers: dict[str, dict] = {}
    now = utcnow()
    rate = portfolio_settings().discount_rate
    # Bulk writes repeat a few times and days many times: each is worked out once.
    day_of: dict[datetime, date] = {}
    factor_of: dict[date, float] = {}
    for row in rows:
        customer_id, at = row["customer_id"], row["occurred_at"]
        amount, margin, cost = revenue(row)
        if (day_ := day_of.get(at)) is None:
            day_ = day_of[at] = _day_of(at)
        if (factor := factor_of.get(day_)) is None:
            factor = factor_of[day_] = discount_factor(day_, rate)
        key = (customer_id, day_)
        discounted = float(amount) * factor
        day = days.get(key)
        if day is None:
            days[key] = {"customer_id": customer_id, "day": key[1], "purchases": 1, "spend": amount}
        else:
            day["purchases"] += 1
            day["spend"] += amount
        summary = customers.get(customer_id)
        if summary is None:
            customers[customer_id] = {
                "customer_id": customer_id,
                "first_purchase_at": at,
                "last_purchase_at": at,
                "purchases": 1,
                "purchase_days": 0,  # both counted from this write's days below
                "first_day_spend": 0,
                "total_spend": amount,
                "total_margin": margin,
                "total_cost": cost,
                "discounted_spend": discounted,
                "discount_rate": rate,
                "updated_at": now,
            }
        else:
            if at < summary["first_purchase_at"]:
                summary["first_purchase_at"] = at
            if at > summary["last_purchase_at"]:
                summary["last_purchase_at"] = at
            summary["purchases"] += 1
            summary["total_spend"] += amount
            summary["total_margin"] = _add(summary["total_margin"], margin)
            summary["total_cost"] = _add(summary["total_cost"], cost)
            summary["discounted_spend"] += discounted
    # Sorted: concurrent writers on PostgreSQL take the row locks in one order.
    ordered = [days[key] for key in sorted(days)]
    for day in ordered:  # each customer's days in order: exact for a customer new to the summaries
        summary = customers[day["customer_id"]]
        if not summary["purchase_days"]:
            summary["first_day_spend"] = day["spend"]
        summary["purchase_days"] += 1
    await repository.add_purchase_days(session, ordered)
    if len(ordered) == 1 and waits_together(session, "purchase_days"):  # one round trip for both
        await repository.add_to_summaries_with_their_day(session, list(customers.values()))
        return
    await send_gathered(session)  # a summary already there reads the customer's days
    await repository.add_to_summaries(session, [customers[key] for key in sorted(customers)])


async def rebuild_summaries(session: AsyncSession, customer_ids: Iterable[str]) -> None:
    """Recompute purchase_days and purchase_summaries of these customers from their
    transactions (a customer left with none has no summary)."""

    customer_ids = sorted(set(customer_ids))
    await repository.delete_summaries(session, customer_ids)
    await add_transactions(session, await repository.transactions_for_summaries(session, customer_ids))
