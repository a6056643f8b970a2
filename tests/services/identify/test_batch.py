"""POST /v1/transactions:batch: item-by-item answers, duplicates, limits; and the single
POST /v1/transactions on the same recording path."""

from __future__ import annotations

from sqlalchemy import update

from services.identify.models import Customer
from tests.support import events_of


async def create_customer(client, external_id: str) -> str:
    response = await client.post("/v1/customers", json={"external_id": external_id})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def purchase(customer_id: str, day: int = 1, **fields) -> dict:
    return {
        "customer_id": customer_id,
        "amount": "10.50",
        "currency": "usd",
        "occurred_at": f"2026-03-{day:02d}T10:00:00Z",
        **fields,
    }


async def test_a_batch_answers_item_by_item(suite):
    identify = await suite.start("identify")
    client = identify.client
    ada = await create_customer(client, "ada")
    bob = await create_customer(client, "bob")
    gone = await create_customer(client, "gone")
    # A merged customer takes no new data (merges set merged_into; see resolution).
    async with identify.runtime.db.writer() as session, session.begin():
        await session.execute(update(Customer).where(Customer.id == gone).values(merged_into=ada))
    earlier = await client.post("/v1/transactions", json=purchase(ada, external_id="order-0"))
    assert earlier.status_code == 201, earlier.text

    items = [
        purchase(ada, 2, external_id="order-1", margin="2.5", cost="1"),  # 0 created
        purchase(bob, 3),  # 1 created (no external id)
        purchase(ada, 2, external_id="order-1", margin="9"),  # 2 duplicate of item 0, same batch
        purchase(ada, 1, external_id="order-0"),  # 3 duplicate of the earlier one
        purchase(ada, 6, amount="12.345678"),  # 4 bad field
        purchase("no-such-customer", 7),  # 5 unknown customer
        purchase(gone, 8),  # 6 merged customer
        "not an object",  # 7
        purchase(bob, 9, external_id="order-2"),  # 8 created: the errors stopped nothing
    ]
    response = await client.post("/v1/transactions:batch", json={"items": items})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [item["index"] for item in body["items"]] == list(range(len(items)))
    assert [item["status"] for item in body["items"]] == [
        "created",
        "created",
        "duplicate",
        "duplicate",
        "error",
        "error",
        "error",
        "error",
        "created",
    ]
    assert (body["created"], body["duplicates"], body["errors"]) == (3, 2, 4)

    answers = body["items"]
    first = answers[0]["transaction"]
    assert (first["amount"], first["currency"], first["margin"], first["cost"]) == ("10.5", "USD", "2.5", "1")
    assert answers[2]["transaction"]["id"] == first["id"]
    assert answers[2]["transaction"]["margin"] == "2.5"  # the first one is returned, not item 2
    assert answers[3]["transaction"]["id"] == earlier.json()["id"]
    for index in (4, 5, 7):
        assert answers[index]["transaction"] is None and answers[index]["error"]["error"] == "validation_error"
    # A merged customer: the one merged-customer error, as every write naming one gets it.
    assert answers[6]["transaction"] is None and answers[6]["error"]["error"] == "customer_merged"
    assert answers[4]["error"]["detail"][0]["field"] == "body.items.4.amount"
    assert answers[5]["error"]["detail"] == [
        {"field": "body.items.5.customer_id", "message": "no customer with id no-such-customer", "type": "value_error"}
    ]
    assert "merged into " + ada in answers[6]["error"]["detail"]
    assert answers[7]["error"]["detail"][0]["field"] == "body.items.7"
    assert all(answers[i]["error"] is None for i in (0, 1, 2, 3, 8))

    ada_now = (await client.get(f"/v1/customers/{ada}")).json()
    bob_now = (await client.get(f"/v1/customers/{bob}")).json()
    assert (ada_now["purchase_count"], bob_now["purchase_count"]) == (2, 2)
    listed = (await client.get(f"/v1/customers/{bob}/transactions")).json()["items"]
    assert sorted(t["occurred_at"][:10] for t in listed) == ["2026-03-03", "2026-03-09"]

    # One event per recorded transaction, each with the customer's count so far.
    events = await events_of(suite.nats.url, "crm.identify.transaction.recorded", 4, "batch-probe")
    by_customer = {}
    for event in events:
        by_customer.setdefault(event["data"]["customer_id"], []).append(event["data"]["purchase_count"])
    assert by_customer == {ada: [1, 2], bob: [1, 2]}
    assert next(e for e in events if e["data"]["external_id"] == "order-1")["data"]["margin"] == "2.5"


async def test_batch_limits(suite):
    identify = await suite.start("identify")
    client = identify.client
    ada = await create_customer(client, "ada")

    for body in ({"items": []}, {"items": [purchase(ada)] * 1001}, {}, {"items": [purchase(ada)], "extra": 1}):
        response = await client.post("/v1/transactions:batch", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "validation_error"
    malformed = await client.post(
        "/v1/transactions:batch", content=b'{"items": [', headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 400 and malformed.json()["error"] == "malformed_json"

    full = [purchase(ada, 1 + i % 28, external_id=f"o-{i}") for i in range(1000)]
    response = await client.post("/v1/transactions:batch", json={"items": full})
    assert response.status_code == 200, response.text
    assert (response.json()["created"], response.json()["errors"]) == (1000, 0)
    again = await client.post("/v1/transactions:batch", json={"items": full})
    assert (again.json()["created"], again.json()["duplicates"]) == (0, 1000)
    assert (await client.get(f"/v1/customers/{ada}")).json()["purchase_count"] == 1000


async def test_the_single_post_keeps_its_contract(suite):
    identify = await suite.start("identify")
    client = identify.client
    ada = await create_customer(client, "ada")

    created = await client.post("/v1/transactions", json=purchase(ada, external_id="x-1", margin="3.10"))
    assert created.status_code == 201, created.text
    assert created.json()["margin"] == "3.1" and created.json()["cost"] is None
    again = await client.post("/v1/transactions", json=purchase(ada, external_id="x-1"))
    assert again.status_code == 200 and again.json()["id"] == created.json()["id"]
    unknown = await client.post("/v1/transactions", json=purchase("nobody"))
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["field"] == "body.customer_id"
    bad = await client.post("/v1/transactions", json=purchase(ada, margin="NaN"))
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "body.margin"
