"""Purchase summaries and purchase days kept current as transactions arrive: out of
order, several on one day, margins given or not; and a rebuild equals the incremental
result."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import select

from services.identify.models import PurchaseDay, PurchaseSummary
from services.identify.portfolio.summaries import rebuild_summaries
from shared.db.uow import transaction


async def create_customer(client, external_id: str) -> str:
    response = await client.post("/v1/customers", json={"external_id": external_id})
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def record(client, *items: dict) -> list[dict]:
    response = await client.post("/v1/transactions:batch", json={"items": list(items)})
    assert response.status_code == 200 and response.json()["errors"] == 0, response.text
    return [item["transaction"] for item in response.json()["items"]]


def buy(customer_id: str, at: str, amount: str, **fields) -> dict:
    return {"customer_id": customer_id, "occurred_at": at, "amount": amount, "currency": "USD", **fields}


async def state_of(identify, customer_id: str) -> tuple[dict | None, list[tuple]]:
    async with identify.runtime.db.writer() as session:
        summary = (
            (await session.execute(select(PurchaseSummary.__table__).where(PurchaseSummary.customer_id == customer_id)))
            .mappings()
            .first()
        )
        days = (
            await session.execute(
                select(PurchaseDay.day, PurchaseDay.purchases, PurchaseDay.spend)
                .where(PurchaseDay.customer_id == customer_id)
                .order_by(PurchaseDay.day)
            )
        ).all()
    # Float columns (sums of discounted spend) depend on the order of addition: compared rounded.
    summary = (
        None
        if summary is None
        else {k: round(v, 6) if isinstance(v, float) else v for k, v in summary.items() if k != "updated_at"}
    )
    return summary, [tuple(day) for day in days]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


async def test_an_earlier_purchase_arriving_later_moves_the_first_purchase(suite):
    identify = await suite.start("identify")
    ada = await create_customer(identify.client, "ada")

    await record(identify.client, buy(ada, "2026-03-10T15:00:00Z", "20"))
    summary, days = await state_of(identify, ada)
    assert (summary["purchases"], summary["purchase_days"], summary["first_day_spend"]) == (1, 1, Decimal("20"))
    assert summary["total_margin"] is None and summary["total_cost"] is None

    # Same UTC day (another zone's evening is still 10 March in UTC): no new purchase day.
    await record(identify.client, buy(ada, "2026-03-10T22:30:00+01:00", "5.25", margin="1.5"))
    # Earlier, arriving later: moves the first purchase and the first day's spend.
    await record(identify.client, buy(ada, "2026-03-02T09:00:00Z", "7", cost="0.5"))
    await record(identify.client, buy(ada, "2026-03-20T09:00:00Z", "3", margin="0.25"))
    summary, days = await state_of(identify, ada)
    assert summary["first_purchase_at"] == utc("2026-03-02T09:00:00Z")
    assert summary["last_purchase_at"] == utc("2026-03-20T09:00:00Z")
    assert (summary["purchases"], summary["purchase_days"]) == (4, 3)
    assert summary["total_spend"] == Decimal("35.25")
    assert summary["first_day_spend"] == Decimal("7")
    assert (summary["total_margin"], summary["total_cost"]) == (Decimal("1.75"), Decimal("0.5"))
    assert [(day.isoformat(), n, spend) for day, n, spend in days] == [
        ("2026-03-02", 1, Decimal("7")),
        ("2026-03-10", 2, Decimal("25.25")),
        ("2026-03-20", 1, Decimal("3")),
    ]

    # A duplicate changes nothing, nor does another purchase under its external_id (409).
    await record(identify.client, buy(ada, "2026-03-02T09:00:00Z", "7", external_id="dup"))
    before = await state_of(identify, ada)
    response = await identify.client.post(
        "/v1/transactions", json=buy(ada, "2026-03-02T09:00:00Z", "7", external_id="dup", margin="1")
    )
    assert response.status_code == 200
    response = await identify.client.post(
        "/v1/transactions", json=buy(ada, "2026-03-01T09:00:00Z", "99", external_id="dup")
    )
    assert response.status_code == 409
    assert await state_of(identify, ada) == before


async def test_a_rebuild_equals_the_incremental_summaries(suite):
    identify = await suite.start("identify")
    customers = [await create_customer(identify.client, f"c{i}") for i in range(5)]
    rng = random.Random(7)
    purchases = []
    for customer in customers:
        for _ in range(rng.randint(1, 30)):
            extra = {}
            if rng.random() < 0.5:
                extra["margin"] = f"{rng.randint(0, 500) / 100}"
            if rng.random() < 0.3:
                extra["cost"] = f"{rng.randint(0, 300) / 100}"
            at = f"2026-0{rng.randint(1, 3)}-{rng.randint(1, 12):02d}T{rng.randint(0, 23):02d}:00:00Z"
            purchases.append(buy(customer, at, f"{rng.randint(500, 9000) / 100}", **extra))
    rng.shuffle(purchases)  # arrive in no particular order, in batches of all sizes
    recorded = []
    while purchases:
        size = rng.randint(1, 12)
        recorded += await record(identify.client, *purchases[:size])
        purchases = purchases[size:]
    # Money given back is a refund of its purchase (amounts are never negative).
    for bought in rng.sample(recorded, 10):
        refund = {"amount": str(Decimal(bought["amount"]) / 2), "reason": "returned half"}
        response = await identify.client.post(f"/v1/transactions/{bought['id']}/refund", json=refund)
        assert response.status_code == 201, response.text

    await assert_a_rebuild_changes_nothing(identify, customers)


async def test_purchases_through_the_api_one_at_a_time_equal_a_rebuild(suite):
    """A purchase through POST /v1/transactions writes its day and its summary in one
    statement on PostgreSQL (repository.add_to_summaries_with_their_day): the summary counts
    the day without reading it. Days new and known, before, on and after the first, in any
    order, end as a rebuild from the transactions has them."""
    identify = await suite.start("identify")
    customers = [await create_customer(identify.client, f"c{i}") for i in range(3)]
    rng = random.Random(11)
    purchases = [
        buy(
            customer,
            f"2026-02-{rng.randint(1, 9):02d}T{rng.randint(0, 23):02d}:30:00Z",
            f"{rng.randint(100, 5000) / 100}",
        )
        for customer in customers
        for _ in range(15)
    ]
    rng.shuffle(purchases)
    for purchase in purchases:
        response = await identify.client.post("/v1/transactions", json=purchase)
        assert response.status_code == 201, response.text
    await assert_a_rebuild_changes_nothing(identify, customers)


async def assert_a_rebuild_changes_nothing(identify, customers: list[str]) -> None:
    incremental = [await state_of(identify, customer) for customer in customers]
    async with transaction(identify.runtime.db.writer) as session:
        await rebuild_summaries(session, customers)
    rebuilt = [await state_of(identify, customer) for customer in customers]
    assert rebuilt == incremental
    assert all(summary is not None and summary["purchases"] >= 1 for summary, _ in rebuilt)
    for summary, days in rebuilt:
        assert summary["purchase_days"] == len(days)
        assert summary["purchases"] == sum(n for _, n, _ in days)
        assert summary["first_day_spend"] == days[0][2]
        assert summary["total_spend"] == sum(spend for _, _, spend in days)
