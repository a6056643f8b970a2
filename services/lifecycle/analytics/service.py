"""Retention analytics: cohorts by month of first purchase, survival to `churned`, and the
funnel of stage transitions (issue 15 §5, docs/lifecycle.md).

The purchase months come from identify's purchases (`crm.identify.transaction.recorded`);
a void (`crm.identify.transaction.voided`, recorded in error) takes its purchase out of the
month it names (`purchased_at`; a void from an older producer without it is skipped), and
a customer whose first month empties moves to the next cohort. A refund changes nothing:
the purchase still happened (shared/decisions.md). Merges fold the merged customers' months
into the survivor's. Survival and the funnel read lifecycle's own stage history.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from typing import Any, get_args

from sqlalchemy.ext.asyncio import AsyncSession

from services.lifecycle.analytics import repository
from services.lifecycle.analytics.survival import kaplan_meier, median
from shared.events.contracts import Stage, TransactionRecorded, TransactionVoided
from shared.events.customer_aliases import Merge
from shared.events.envelope import Event

STAGES: tuple[str, ...] = get_args(Stage)
CONFIDENCE = 0.95
DAY = timedelta(days=1)

Purchases = TransactionRecorded | TransactionVoided


def month_of(at: datetime) -> int:
    return at.year * 12 + at.month - 1


def month_text(month: int) -> str:
    return f"{month // 12:04d}-{month % 12 + 1:02d}"


def parse_month(text: str) -> int:
    year, month = text.split("-")
    return int(year) * 12 + int(month) - 1


# --- the read model ---------------------------------------------------------------------------


async def apply_purchases(*, session: AsyncSession, events: list[Event[Purchases]]) -> None:
    """A micro-batch of purchases and voids: each customer's months, read once and rewritten once."""

    customer_ids = list(dict.fromkeys(event.customer_id for event in events if event.customer_id))
    held: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for row in await repository.months_of(session, customer_ids):
        held[row["customer_id"]][row["month"]] = row
    changed: set[str] = set()
    for event in events:
        cid, data = event.customer_id, event.data
        assert cid is not None  # both contracts name their customer
        months = held[cid]
        if isinstance(data, TransactionRecorded):
            _add(months, cid, month_of(data.occurred_at), 1, data.occurred_at)
        elif data.purchased_at is not None and (voided := months.get(month_of(data.purchased_at))) is not None:
            voided["purchases"] -= 1
            if voided["purchases"] <= 0:
                del months[voided["month"]]
        else:
            continue  # a void of a month never seen, or from an older producer that does not name it
        changed.add(cid)
    ids = sorted(changed)
    await repository.replace_months(session, ids, [row for cid in ids for row in _with_cohort(held[cid])])


async def follow_merge(session: AsyncSession, merge: Merge) -> None:
    """A merge step: the survivor's months are everyone's, its cohort the earliest of them."""

    ids = [merge.survivor_id, *merge.merged_ids]
    months: dict[int, dict[str, Any]] = {}
    for row in await repository.months_of(session, ids):
        _add(months, merge.survivor_id, row["month"], row["purchases"], row["first_at"])
    if months:
        await repository.replace_months(session, ids, _with_cohort(months))


def _add(months: dict[int, dict[str, Any]], cid: str, month: int, purchases: int, at: datetime) -> None:
    row = months.get(month)
    if row is None:
        months[month] = {"customer_id": cid, "month": month, "cohort": month, "purchases": purchases, "first_at": at}
    else:
        row["purchases"] += purchases
        row["first_at"] = min(row["first_at"], at)


def _with_cohort(months: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    cohort = min(months, default=0)
    return [{**row, "cohort": cohort} for row in months.values()]


# --- the reports ------------------------------------------------------------------------------


async def cohorts(*, session: AsyncSession, first: int | None, last: int | None) -> list[dict[str, Any]]:
    """Each cohort (customers by month of first purchase) with its size, and for month k = 0, 1, …
    up to the last month any of them bought in, how many of them bought then and their share."""

    counts: dict[int, dict[int, int]] = defaultdict(dict)
    for cohort, month, customers in await repository.cohort_counts(session, first=first, last=last):
        counts[cohort][month] = customers
    latest = max((max(months) for months in counts.values()), default=0)
    matrix = []
    for cohort, months in sorted(counts.items()):
        size = months.get(cohort, 0)  # every customer has a row in its cohort's month
        matrix.append(
            {
                "cohort": month_text(cohort),
                "size": size,
                "months": [
                    {
                        "k": k,
                        "month": month_text(cohort + k),
                        "customers": months.get(cohort + k, 0),
                        "share": months.get(cohort + k, 0) / size if size else 0.0,
                    }
                    for k in range(latest - cohort + 1)
                ],
            }
        )
    return matrix


async def survival(*, session: AsyncSession, as_of: datetime) -> dict[str, Any]:
    """Kaplan–Meier from each customer's first purchase to its first `churned` after it, in
    whole days; a customer not churned by `as_of` is censored there."""

    churns: dict[str, list[datetime]] = defaultdict(list)
    for customer_id, at in await repository.entries_into(session, "churned", until=as_of):
        churns[customer_id].append(at)
    events: Counter[int] = Counter()
    censored: Counter[int] = Counter()
    for customer_id, first_at in await repository.first_purchases(session, until=as_of):
        churned = next((at for at in churns.get(customer_id, ()) if at >= first_at), None)
        if churned is None:
            censored[(as_of - first_at) // DAY] += 1
        else:
            events[(churned - first_at) // DAY] += 1
    points = kaplan_meier(events, censored, CONFIDENCE)
    return {
        "as_of": as_of,
        "customers": events.total() + censored.total(),
        "churned": events.total(),
        "censored": censored.total(),
        "median_days": median(points),
        "confidence": CONFIDENCE,
        "points": points,
    }


async def funnel(*, session: AsyncSession, start: datetime | None, end: datetime) -> dict[str, Any]:
    """Over the transitions in [start, end): how many entered each stage (and how many customers
    are in it at `end`), and for each move from one stage to the next, how many of those who
    entered the first went on to the second within the window (conversion) and the median time
    they spent in the first."""

    entered: Counter[str] = Counter()
    customers: dict[str, set[str]] = defaultdict(set)
    moves: dict[tuple[str, str], list[float]] = defaultdict(list)
    previous = None
    for row in await repository.transitions_between(session, start=start, end=end):
        entered[row.to_stage] += 1
        customers[row.to_stage].add(row.customer_id)
        if previous is not None and previous.customer_id == row.customer_id and previous.to_stage == row.from_stage:
            moves[(row.from_stage, row.to_stage)].append((row.at - previous.at) / DAY)
        previous = row
    in_stage = await repository.stages_at(session, end)
    order = {stage: n for n, stage in enumerate((*STAGES, *sorted((set(entered) | set(in_stage)) - set(STAGES))))}
    return {
        "from": start,
        "to": end,
        "stages": [
            {
                "stage": stage,
                "entered": entered[stage],
                "customers": len(customers[stage]),
                "in_stage": in_stage.get(stage, 0),
            }
            for stage in sorted(order, key=order.__getitem__)
        ],
        "moves": [
            {
                "from": a,
                "to": b,
                "moved": len(days),
                "conversion": len(days) / entered[a],
                "median_days": statistics.median(days),
            }
            for (a, b), days in sorted(moves.items(), key=lambda item: (order[item[0][0]], order[item[0][1]]))
        ],
    }
