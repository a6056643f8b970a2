"""A reused external_id: the same purchase again is a duplicate answering the first one;
another purchase under it is a 409 idempotency_conflict naming the first, never lost
silently (customer A's 5,000 USD purchase answered with customer B's 49.90 EUR one)."""

from __future__ import annotations

from sqlalchemy import update

from services.identify.models import Customer
from tests.services.identify.test_batch import create_customer
from tests.services.identify.test_imports import run_import

FIRST = {"amount": "49.90", "currency": "EUR", "occurred_at": "2026-03-01T10:00:00Z", "external_id": "order-7"}
EUR_RATE = [{"currency": "EUR", "date": "2026-01-01", "rate": "1.1"}]  # the reporting currency is USD


async def _with_eur_rate(client) -> None:
    assert (await client.put("/v1/fx-rates", json=EUR_RATE)).status_code == 200


async def test_the_same_purchase_is_a_duplicate_and_any_other_a_conflict_naming_the_first(suite):
    identify = await suite.start("identify")
    client = identify.client
    await _with_eur_rate(client)
    ada, bob = await create_customer(client, "ada"), await create_customer(client, "bob")
    first = await client.post("/v1/transactions", json={"customer_id": bob, **FIRST, "margin": "10"})
    assert first.status_code == 201, first.text
    first_id = first.json()["id"]

    # The same purchase written differently, or with another margin or cost: a duplicate.
    for same in (
        {"amount": "49.9000"},
        {"amount": 49.9},
        {"currency": "eur"},
        {"occurred_at": "2026-03-01T11:00:00+01:00"},
        {"margin": "12", "cost": "3"},
    ):
        again = await client.post("/v1/transactions", json={"customer_id": bob, **FIRST, **same})
        assert again.status_code == 200, (same, again.text)
        assert again.json()["id"] == first_id and again.json()["margin"] == "10"

    # Another customer, amount, currency or time under the same external_id: a conflict.
    for other in (
        {"customer_id": ada, "amount": "5000", "currency": "USD"},
        {"amount": "49.91"},
        {"currency": "USD"},
        {"occurred_at": "2026-03-01T10:00:01Z"},
    ):
        response = await client.post("/v1/transactions", json={"customer_id": bob, **FIRST, **other})
        assert response.status_code == 409, (other, response.text)
        body = response.json()
        assert body["error"] == "idempotency_conflict"
        (error,) = body["detail"]
        assert error["field"] == "body.external_id" and first_id in error["message"]
    assert "(another customer_id, amount, currency)" in body_of_conflict(
        await client.post("/v1/transactions", json={**FIRST, "customer_id": ada, "amount": "5000", "currency": "USD"})
    )
    assert (await client.get(f"/v1/customers/{ada}")).json()["purchase_count"] == 0  # none was lost silently
    # 18 digits, which SQLite keeps as a float: the same amount still.
    big = {**FIRST, "customer_id": ada, "amount": "99999999999999.9999", "currency": "USD", "external_id": "big"}
    assert (await client.post("/v1/transactions", json=big)).status_code == 201
    assert (await client.post("/v1/transactions", json=big)).status_code == 200
    assert (await client.get(f"/v1/customers/{bob}")).json()["purchase_count"] == 1

    # The earlier transaction moved to the survivor of a merge: its old customer id is still it.
    async with identify.runtime.db.writer() as session, session.begin():
        await session.execute(update(Customer).where(Customer.id == ada).values(merged_into=bob))
    response = await client.post("/v1/transactions", json={"customer_id": ada, **FIRST})
    assert response.status_code == 200 and response.json()["id"] == first_id


def body_of_conflict(response) -> str:
    assert response.status_code == 409, response.text
    return response.json()["detail"][0]["message"]


async def test_a_batch_answers_a_conflict_per_item(suite):
    identify = await suite.start("identify")
    client = identify.client
    await _with_eur_rate(client)
    ada, bob = await create_customer(client, "ada"), await create_customer(client, "bob")
    first = (await client.post("/v1/transactions", json={"customer_id": bob, **FIRST})).json()
    items = [
        {"customer_id": ada, **FIRST, "amount": "5000", "currency": "USD"},  # 0 conflict with the earlier one
        {"customer_id": bob, **FIRST, "cost": "1"},  # 1 duplicate
        {"customer_id": ada, **FIRST, "external_id": "new-1"},  # 2 created
        {"customer_id": ada, **FIRST, "external_id": "new-1", "amount": "1"},  # 3 conflict with item 2
        {"customer_id": ada, **FIRST, "external_id": "new-1", "amount": "49.9"},  # 4 duplicate of item 2
    ]
    response = await client.post("/v1/transactions:batch", json={"items": items})
    assert response.status_code == 200, response.text
    answers = response.json()["items"]
    assert [a["status"] for a in answers] == ["error", "duplicate", "created", "error", "duplicate"]
    created_id = answers[2]["transaction"]["id"]
    for index, existing in ((0, first["id"]), (3, created_id)):
        error = answers[index]["error"]
        assert error["error"] == "idempotency_conflict" and answers[index]["transaction"] is None
        assert error["detail"][0]["field"] == f"body.items.{index}.external_id"
        assert existing in error["detail"][0]["message"]
    assert answers[1]["transaction"]["id"] == first["id"] and answers[4]["transaction"]["id"] == created_id


async def test_an_import_rejects_a_conflicting_row_naming_the_transaction_and_counts_duplicates(suite):
    identify = await suite.start("identify")
    client = identify.client
    await _with_eur_rate(client)
    bob = await create_customer(client, "bob")
    first = (await client.post("/v1/transactions", json={"customer_id": bob, **FIRST})).json()
    content = (
        "customer_external_id,occurred_at,amount,currency,external_id,margin\n"
        "bob,2026-03-01T10:00:00Z,49.9,EUR,order-7,5\n"  # the same purchase: a duplicate
        "ada,2026-03-01T10:00:00Z,5000,USD,order-7,\n"  # another under its id: rejected
        "ada,2026-03-02,20,USD,order-8,\n"
    )
    job = await run_import(client, content, create_customers=True)
    assert job["status"] == "done", job
    assert (job["recorded"], job["duplicates"], job["rejected"]) == (1, 1, 1)
    (error,) = job["errors"]
    assert error["line"] == 3 and first["id"] in error["reason"] and "order-7" in error["reason"]
