"""GET /v1/transactions: transactions across customers, filtered and cursor-paginated."""

from __future__ import annotations


async def _customer(client, external_id: str) -> str:
    return (await client.post("/v1/customers", json={"external_id": external_id})).json()["id"]


async def _buy(client, customer_id: str, occurred_at: str, amount: str = "10") -> str:
    response = await client.post(
        "/v1/transactions",
        json={"customer_id": customer_id, "amount": amount, "currency": "USD", "occurred_at": occurred_at},
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def _all_pages(client, params: dict) -> list[dict]:
    items, cursor = [], None
    while True:
        page = await client.get("/v1/transactions", params={**params, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        body = page.json()
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items


async def test_transactions_across_customers_by_period_and_customer(suite):
    identify = await suite.start("identify")
    client = identify.client
    ada, bob = await _customer(client, "ada"), await _customer(client, "bob")
    same_time = "2026-03-02T00:00:00Z"
    ids = {
        "ada-1": await _buy(client, ada, "2026-03-01T00:00:00Z"),
        "bob-2a": await _buy(client, bob, same_time),
        "ada-2b": await _buy(client, ada, same_time),
        "bob-3": await _buy(client, bob, "2026-03-03T00:00:00+02:00"),  # 2026-03-02T22:00Z
        "ada-4": await _buy(client, ada, "2026-03-04T00:00:00Z"),
    }

    everyone = await _all_pages(client, {"limit": 2})
    # newest first; equal times by id, descending: the order the per-customer list uses
    tied = sorted([ids["bob-2a"], ids["ada-2b"]], reverse=True)
    assert [t["id"] for t in everyone] == [ids["ada-4"], ids["bob-3"], *tied, ids["ada-1"]]

    # from inclusive, to exclusive; an offset is the same instant in UTC
    period = await _all_pages(client, {"from": same_time, "to": "2026-03-04T00:00:00Z", "limit": 1})
    assert {t["id"] for t in period} == {ids["bob-2a"], ids["ada-2b"], ids["bob-3"]}
    offset = await _all_pages(client, {"from": "2026-03-02T23:00:00+01:00", "to": "2026-03-02T22:00:00Z"})
    assert offset == []  # from == to: nothing is at or after it and before it

    only_ada = await _all_pages(client, {"customer_id": ada, "from": same_time, "limit": 1})
    assert [t["id"] for t in only_ada] == [ids["ada-4"], ids["ada-2b"]]
    # the same order and items as the customer's own list
    own = (await client.get(f"/v1/customers/{ada}/transactions")).json()["items"]
    assert [t["id"] for t in await _all_pages(client, {"customer_id": ada})] == [t["id"] for t in own]


async def test_transaction_filters_are_checked(suite):
    identify = await suite.start("identify")
    client = identify.client

    backwards = await client.get(
        "/v1/transactions", params={"from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"}
    )
    assert backwards.status_code == 422
    assert backwards.json()["detail"][0]["field"] == "query.from"

    naive = await client.get("/v1/transactions", params={"from": "2026-03-02T00:00:00"})
    assert naive.status_code == 422
    assert naive.json()["detail"][0]["field"] == "query.from"

    nobody = await client.get("/v1/transactions", params={"customer_id": "no-such-customer"})
    assert nobody.status_code == 404
    assert nobody.json() == {
        "error": "not_found",
        "detail": [
            {"field": "query.customer_id", "message": "no customer with id no-such-customer", "type": "value_error"}
        ],
    }

    forged = await client.get("/v1/transactions", params={"cursor": "bm9wZQ"})
    assert forged.status_code == 422 and forged.json()["detail"][0]["field"] == "query.cursor"

    assert (await client.get("/v1/transactions", params={"customer": "x"})).status_code == 422
