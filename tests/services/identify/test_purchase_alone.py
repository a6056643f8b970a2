"""A purchase through the API on PostgreSQL is one statement in autocommit (the customer's
lock, the writes and the event's outbox row), its event's purchase_count put in by that
statement; whatever stops the statement leaves nothing and the purchase takes the locked
path (services/identify/transactions/service.py `_record_alone`). On SQLite every purchase
takes the locked path: the tests through the API hold on both databases."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import pytest
from sqlalchemy import select, text

from services.identify.models import Customer, PurchaseSummary
from services.identify.money import fx
from services.identify.transactions import service
from services.identify.transactions.schemas import TransactionCreate
from shared.events.messaging import tables_of
from tests.services.identify.test_batch import create_customer
from tests.services.identify.test_batch import purchase as _purchase


async def _recorded_events(identify) -> list[dict]:
    """The transaction.recorded events in identify's outbox, oldest first."""

    async with identify.runtime.db.writer() as session:
        outbox = tables_of(session).outbox
        query = select(outbox.c.body).where(outbox.c.subject == service.RECORDED).order_by(outbox.c.seq)
        return [json.loads(body) for body in (await session.execute(query)).scalars()]


async def _on_postgres(identify) -> bool:
    return bool(identify.runtime.db.writer_engine.dialect.name == "postgresql")


async def test_purchases_count_in_their_events_and_summaries_on_either_path(suite):
    identify = await suite.start("identify")
    client = identify.client
    ada = await create_customer(identify.client, "ada")
    days = (3, 1, 3, 2)  # a repeat day and an earlier one: the summary's days and first day
    for n, day in enumerate(days):
        response = await client.post("/v1/transactions", json=_purchase(ada, day, external_id=f"p-{n}"))
        assert response.status_code == 201, response.text

    events = await _recorded_events(identify)
    assert [event["data"]["purchase_count"] for event in events] == [1, 2, 3, 4]
    assert [event["data"]["external_id"] for event in events] == ["p-0", "p-1", "p-2", "p-3"]
    assert all(event["subject"] == ada for event in events)
    async with identify.runtime.db.writer() as session:
        customer = await session.get(Customer, ada)
        assert customer is not None and customer.purchase_count == 4
        summary = await session.get(PurchaseSummary, ada)
        assert summary is not None
        assert (summary.purchases, summary.purchase_days) == (4, 3)
        assert summary.total_spend == Decimal("42.00")
        assert summary.first_day_spend == Decimal("10.50")  # March 1st's one purchase
        assert summary.first_purchase_at.day == 1 and summary.last_purchase_at.day == 3


async def test_what_stops_the_statement_is_answered_as_before(suite):
    identify = await suite.start("identify")
    client = identify.client
    ada = await create_customer(client, "ada")

    unknown = await client.post("/v1/transactions", json=_purchase("0" * 36))
    assert unknown.status_code == 422, unknown.text
    assert "no customer with id" in unknown.text

    first = await client.post("/v1/transactions", json=_purchase(ada, external_id="x-1"))
    assert first.status_code == 201, first.text
    again = await client.post("/v1/transactions", json=_purchase(ada, external_id="x-1"))
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"], again.text
    other = await client.post("/v1/transactions", json=_purchase(ada, 2, external_id="x-1"))
    assert other.status_code == 409 and other.json()["error"] == "idempotency_conflict", other.text

    # Nothing of a stopped statement is kept: one event and one purchase.
    assert [event["data"]["purchase_count"] for event in await _recorded_events(identify)] == [1]
    async with identify.runtime.db.writer() as session:
        customer = await session.get(Customer, ada)
        assert customer is not None and customer.purchase_count == 1


async def test_a_customer_locked_by_another_write_is_waited_for_on_the_locked_path(suite):
    identify = await suite.start("identify")
    if not await _on_postgres(identify):
        pytest.skip("row locks are PostgreSQL's; SQLite's one writer waits for the other")
    ada = await create_customer(identify.client, "ada")
    db = identify.runtime.db
    item = TransactionCreate.model_validate(_purchase(ada))

    async with db.writer() as holder, holder.begin():
        await holder.execute(text("SELECT 1 FROM customers WHERE id = :id FOR UPDATE"), {"id": ada})
        # The one statement does not wait for the lock; it stops and keeps nothing.
        async with db.writer() as session, session.begin():
            assert await service._record_alone(session, item, fx.Rates("USD", {})) is None
        waiting = asyncio.create_task(identify.client.post("/v1/transactions", json=_purchase(ada)))
        await asyncio.sleep(0.3)
        assert not waiting.done()  # the locked path waits for the holder
    response = await waiting
    assert response.status_code == 201, response.text
    assert [event["data"]["purchase_count"] for event in await _recorded_events(identify)] == [1]


async def test_on_postgres_a_purchase_is_one_statement_and_a_merged_customer_stops_it(suite):
    identify = await suite.start("identify")
    client = identify.client
    db = identify.runtime.db
    survivor, merged = await create_customer(client, "s"), await create_customer(client, "m")
    assert (await client.post(f"/v1/customers/{survivor}/merge", json={"merge": [merged]})).status_code == 200
    rates = fx.Rates("USD", {})

    async with db.writer() as session, session.begin():
        outcome = await service._record_alone(session, TransactionCreate.model_validate(_purchase(survivor)), rates)
    if not await _on_postgres(identify):
        assert outcome is None  # SQLite: always the locked path
        return
    assert outcome is not None and outcome.status == "created"
    async with db.writer() as session, session.begin():
        assert await service._record_alone(session, TransactionCreate.model_validate(_purchase(merged)), rates) is None
        # A session that has sent a statement is in a transaction: the locked path.
        await session.execute(text("SELECT 1"))
        assert (
            await service._record_alone(session, TransactionCreate.model_validate(_purchase(survivor)), rates) is None
        )
    (event,) = await _recorded_events(identify)
    assert outcome.transaction is not None and event["data"]["id"] == outcome.transaction["id"]
    assert event["data"]["purchase_count"] == 1

    refused = await client.post("/v1/transactions", json=_purchase(merged))
    assert refused.status_code == 409 and refused.json()["error"] == "customer_merged", refused.text
