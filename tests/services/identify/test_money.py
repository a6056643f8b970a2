"""Money: ISO 4217 currencies, amounts that are never negative, the reporting currency
with its dated exchange rates (PUT/GET /v1/fx-rates), and refunds and voids that correct
a purchase (and what they do to counts, summaries and events)."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select

from services.identify.models import Customer, PurchaseDay, PurchaseSummary
from tests.services.identify.test_batch import create_customer
from tests.support import events_of


def buy(customer_id: str, amount: str = "100", currency: str = "USD", at: str = "2026-02-15T10:00:00Z", **fields):
    return {"customer_id": customer_id, "amount": amount, "currency": currency, "occurred_at": at, **fields}


def fields_of(response) -> list[str]:
    return [error["field"] for error in response.json()["detail"]]


async def summary_of(identify, customer_id: str) -> dict | None:
    async with identify.runtime.db.writer() as session:
        row = (
            (await session.execute(select(PurchaseSummary.__table__).where(PurchaseSummary.customer_id == customer_id)))
            .mappings()
            .first()
        )
        count = (await session.execute(select(Customer.purchase_count).where(Customer.id == customer_id))).scalar()
        days = (
            await session.execute(
                select(PurchaseDay.day, PurchaseDay.purchases, PurchaseDay.spend).where(
                    PurchaseDay.customer_id == customer_id
                )
            )
        ).all()
    return None if row is None else {**row, "purchase_count": count, "days": [tuple(day) for day in days]}


async def test_currencies_are_iso_4217_everywhere_they_enter(suite):
    identify = await suite.start("identify")
    client = identify.client
    ada = await create_customer(client, "ada")
    for code in ("XXX", "ZZZ", "xts", "EURO", "12A"):
        response = await client.post("/v1/transactions", json=buy(ada, currency=code))
        assert response.status_code == 422 and fields_of(response) == ["body.currency"], (code, response.text)
    batch = await client.post("/v1/transactions:batch", json={"items": [buy(ada, currency="XXX"), buy(ada)]})
    answers = batch.json()["items"]
    assert [a["status"] for a in answers] == ["error", "created"]
    assert [e["field"] for e in answers[0]["error"]["detail"]] == ["body.items.0.currency"]
    lower = await client.post("/v1/transactions", json=buy(ada, currency="usd"))
    assert lower.status_code == 201 and lower.json()["currency"] == "USD"
    rate = await client.put("/v1/fx-rates", json=[{"currency": "XXX", "date": "2026-01-01", "rate": "1"}])
    assert rate.status_code == 422 and fields_of(rate) == ["body.0.currency"]


async def test_negative_money_and_a_margin_above_the_amount_are_refused(suite):
    identify = await suite.start("identify")
    client = identify.client
    ada = await create_customer(client, "ada")
    for fields, field in (
        ({"amount": "-10"}, "body.amount"),
        ({"margin": "-1"}, "body.margin"),
        ({"cost": "-0.01"}, "body.cost"),
        ({"amount": "10", "margin": "10.01"}, "body.margin"),
    ):
        response = await client.post("/v1/transactions", json={**buy(ada), **fields})
        assert response.status_code == 422 and fields_of(response) == [field], (fields, response.text)
    assert "refund" in (await client.post("/v1/transactions", json=buy(ada, amount="-3"))).text
    edge = await client.post("/v1/transactions", json=buy(ada, amount="10", margin="10", cost="0"))
    assert edge.status_code == 201, edge.text
    assert await summary_of(identify, ada) is not None


async def test_fx_rates_are_loaded_all_or_nothing_and_listed_by_cursor(suite):
    identify = await suite.start("identify")
    client = identify.client
    rates = [
        {"currency": "eur", "date": "2026-01-01", "rate": "1.1"},
        {"currency": "EUR", "date": "2026-03-01", "rate": 1.2},
        {"currency": "GBP", "date": "2026-01-01", "rate": "1.25"},
    ]
    stored = await client.put("/v1/fx-rates", json=rates)
    assert stored.status_code == 200 and stored.json() == {"stored": 3, "reporting_currency": "USD"}
    replaced = await client.put("/v1/fx-rates", json=[{"currency": "GBP", "date": "2026-01-01", "rate": "1.3"}])
    assert replaced.json()["stored"] == 1

    seen, cursor = [], None
    while True:
        page = (await client.get("/v1/fx-rates", params={"limit": 2, **({"cursor": cursor} if cursor else {})})).json()
        seen += [(r["currency"], r["date"], r["rate"], r["reporting_currency"]) for r in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert seen == [
        ("EUR", "2026-03-01", "1.2", "USD"),
        ("EUR", "2026-01-01", "1.1", "USD"),
        ("GBP", "2026-01-01", "1.3", "USD"),
    ]
    only = (await client.get("/v1/fx-rates", params={"currency": "gbp"})).json()["items"]
    assert [r["currency"] for r in only] == ["GBP"]

    for bad, field in (
        ({"currency": "JPY", "date": "2026-01-01", "rate": "0"}, "body.1.rate"),
        ({"currency": "JPY", "date": "2026-01-01", "rate": "-1"}, "body.1.rate"),
        ({"currency": "JPY", "date": "2026-01-01", "rate": "NaN"}, "body.1.rate"),
        ({"currency": "JPY", "date": "2026-01-01", "rate": "Infinity"}, "body.1.rate"),
        ({"currency": "JPY", "date": "1969-12-31", "rate": "0.0067"}, "body.1.date"),
        ({"currency": "JPY", "date": "9999-12-31", "rate": "0.0067"}, "body.1.date"),
        ({"currency": "JPY", "date": 20000, "rate": "0.0067"}, "body.1.date"),  # a number is no date
        ({"currency": "USD", "date": "2026-01-01", "rate": "1"}, "body.1.currency"),  # the reporting currency
        ({"currency": "JPY", "date": "2026-01-01", "rate": "1", "source": "ECB"}, "body.1.source"),
    ):
        good = {"currency": "CHF", "date": "2026-01-01", "rate": "1.13"}
        response = await client.put("/v1/fx-rates", json=[good, bad])
        assert response.status_code == 422 and fields_of(response) == [field], (bad, response.text)
    assert (await client.get("/v1/fx-rates", params={"currency": "CHF"})).json()["items"] == []  # nothing stored
    assert (await client.put("/v1/fx-rates", json=[])).status_code == 422
    forged = await client.get("/v1/fx-rates", params={"cursor": "bm9wZQ"})
    assert forged.status_code == 422 and forged.json()["detail"][0]["field"] == "query.cursor"


async def test_purchases_convert_at_the_latest_rate_of_their_day_or_are_refused(suite):
    identify = await suite.start("identify")
    client = identify.client
    ada = await create_customer(client, "ada")

    refused = await client.post("/v1/transactions", json=buy(ada, currency="EUR"))
    assert refused.status_code == 422 and fields_of(refused) == ["body.currency"]
    message = refused.json()["detail"][0]["message"]
    assert "EUR" in message and "2026-02-15" in message and "PUT /v1/fx-rates" in message
    assert await summary_of(identify, ada) is None

    await client.put(
        "/v1/fx-rates",
        json=[
            {"currency": "EUR", "date": "2026-01-01", "rate": "1.1"},
            {"currency": "EUR", "date": "2026-03-01", "rate": "1.2"},
        ],
    )
    batch = await client.post(
        "/v1/transactions:batch",
        json={
            "items": [
                buy(ada, "100", "EUR", "2026-02-28T23:59:59Z", margin="10", cost="5"),  # the January rate
                buy(ada, "100", "eur", "2026-03-01T00:00:00Z"),  # the March rate, from its first day
                buy(ada, "100", "EUR", "2025-12-31T23:00:00Z"),  # before any rate
                buy(ada, "5", "USD", "2026-03-02T00:00:00Z"),  # the reporting currency needs none
            ]
        },
    )
    answers = batch.json()["items"]
    assert [a["status"] for a in answers] == ["created", "created", "error", "created"]
    assert [e["field"] for e in answers[2]["error"]["detail"]] == ["body.items.2.currency"]
    assert [
        (a["transaction"]["reporting_amount"], a["transaction"]["reporting_currency"])
        for a in answers
        if a["transaction"]
    ] == [("110", "USD"), ("120", "USD"), ("5", "USD")]

    summary = await summary_of(identify, ada)
    # Only reporting amounts are added: 110 + 120 + 5 USD, never 100 EUR + 5 USD.
    assert summary["total_spend"] == Decimal("235")
    assert (summary["total_margin"], summary["total_cost"]) == (Decimal("11"), Decimal("5.5"))
    events = await events_of(suite.nats.url, "crm.identify.transaction.recorded", 3, "money-recorded")
    assert [
        (e["data"]["amount"], e["data"]["currency"], e["data"]["reporting_amount"], e["data"]["reporting_currency"])
        for e in events
    ] == [("100", "EUR", "110", "USD"), ("100", "EUR", "120", "USD"), ("5", "USD", "5", "USD")]


async def test_imports_refuse_rows_without_a_rate_line_by_line(suite):
    from tests.services.identify.test_imports import run_import

    identify = await suite.start("identify")
    client = identify.client
    await client.put("/v1/fx-rates", json=[{"currency": "EUR", "date": "2026-02-01", "rate": "1.1"}])
    content = (
        "customer_external_id,occurred_at,amount,currency\n"
        "c-1,2026-02-02,10,EUR\n"
        "c-1,2026-01-15,10,EUR\n"
        "c-1,2026-01-15,10,XXX\n"
        "c-1,2026-01-15,10,USD\n"
        "c-1,2026-01-16,-10,USD\n"
    )
    job = await run_import(client, content, filename="rows.csv", create_customers=True)
    assert (job["recorded"], job["rejected"]) == (2, 3)
    reasons = {error["line"]: error["reason"] for error in job["errors"]}
    assert "no EUR → USD exchange rate" in reasons[3] and "PUT /v1/fx-rates" in reasons[3]
    assert "currency" in reasons[4] and "amount" in reasons[6]


async def test_a_refund_lowers_revenue_not_the_purchase_count(suite):
    identify = await suite.start("identify")
    client = identify.client
    ada = await create_customer(client, "ada")
    await client.put("/v1/fx-rates", json=[{"currency": "EUR", "date": "2026-01-01", "rate": "1.1"}])
    bought = (await client.post("/v1/transactions", json=buy(ada, "100", "EUR", margin="40", cost="2"))).json()
    url = f"/v1/transactions/{bought['id']}/refund"

    refund = await client.post(url, json={"amount": "30", "reason": "one item returned", "external_id": "rf-1"})
    assert refund.status_code == 201, refund.text
    body = refund.json()
    assert (body["amount"], body["currency"], body["reporting_amount"], body["reporting_currency"]) == (
        "30",
        "EUR",
        "33",
        "USD",
    )
    assert body["transaction"]["refunded_amount"] == "30" and body["transaction"]["status"] == "recorded"
    again = await client.post(url, json={"amount": "30", "reason": "one item returned", "external_id": "rf-1"})
    assert again.status_code == 200 and again.json()["id"] == body["id"]

    summary = await summary_of(identify, ada)
    assert (summary["purchases"], summary["purchase_count"]) == (1, 1)
    # 110 USD less 33 USD; the margin shrinks with the share refunded (40 EUR · 70% = 28 EUR = 30.8 USD).
    assert summary["total_spend"] == Decimal("77") and summary["days"][0][2] == Decimal("77")
    assert (summary["total_margin"], summary["total_cost"]) == (Decimal("30.8"), Decimal("2.2"))

    for payload, status, field in (
        ({"amount": "70.01", "reason": "too much"}, 422, "body.amount"),
        ({"amount": "0", "reason": "nothing"}, 422, "body.amount"),
        ({"amount": "-5", "reason": "negative"}, 422, "body.amount"),
        ({"amount": "5"}, 422, "body.reason"),
        ({"amount": "5", "reason": "  "}, 422, "body.reason"),
        ({"amount": "5", "reason": "early", "occurred_at": "2026-02-14T10:00:00Z"}, 422, "body.occurred_at"),
        ({"amount": "5", "reason": "a number", "occurred_at": 1771200000}, 422, "body.occurred_at"),
        ({"amount": "5", "reason": "other", "external_id": "rf-1"}, 200, None),  # the key's refund, unchanged
    ):
        response = await client.post(url, json=payload)
        assert response.status_code == status, (payload, response.text)
        if field:
            assert fields_of(response) == [field], (payload, response.text)
    assert (await client.post("/v1/transactions/nope/refund", json={"amount": "1", "reason": "x"})).status_code == 404

    rest = await client.post(url, json={"amount": "70", "reason": "the rest", "occurred_at": "2026-02-16T00:00:00Z"})
    assert rest.status_code == 201 and rest.json()["reporting_amount"] == "77"
    summary = await summary_of(identify, ada)
    assert (summary["total_spend"], summary["total_margin"], summary["purchases"]) == (0, 0, 1)
    listed = (await client.get(f"/v1/transactions/{bought['id']}/refunds", params={"limit": 1})).json()
    second = (
        await client.get(f"/v1/transactions/{bought['id']}/refunds", params={"cursor": listed["next_cursor"]})
    ).json()
    assert [r["amount"] for r in listed["items"] + second["items"]] == ["70", "30"]  # by when given back
    assert (await client.get("/v1/transactions/nope/refunds")).status_code == 404

    events = await events_of(suite.nats.url, "crm.identify.transaction.refunded", 2, "money-refunded")
    first = events[0]["data"]
    assert first == {
        "refund_id": body["id"],
        "transaction_id": bought["id"],
        "customer_id": ada,
        "amount": "30",
        "currency": "EUR",
        "reporting_amount": "33",
        "reporting_currency": "USD",
        "refunded_amount": "30",
        "reason": "one item returned",
        "occurred_at": first["occurred_at"],
        "external_id": "rf-1",
    }
    assert events[1]["data"]["refunded_amount"] == "100" and events[0]["subject"] == ada


async def test_a_void_removes_the_purchase_from_counts_and_summaries(suite):
    identify = await suite.start("identify")
    client = identify.client
    ada = await create_customer(client, "ada")
    kept = (await client.post("/v1/transactions", json=buy(ada, "20", at="2026-02-01T10:00:00Z"))).json()
    wrong = (await client.post("/v1/transactions", json=buy(ada, "500", at="2026-02-03T10:00:00Z"))).json()

    voided = await client.post(f"/v1/transactions/{wrong['id']}/void", json={"reason": "typed 500 for 5"})
    assert voided.status_code == 200, voided.text
    assert (voided.json()["status"], voided.json()["void_reason"]) == ("voided", "typed 500 for 5")
    assert voided.json()["voided_at"]
    summary = await summary_of(identify, ada)
    assert (summary["purchases"], summary["purchase_days"], summary["purchase_count"]) == (1, 1, 1)
    assert summary["total_spend"] == Decimal("20") and summary["last_purchase_at"].day == 1
    assert (await client.get(f"/v1/customers/{ada}")).json()["purchase_count"] == 1

    twice = await client.post(f"/v1/transactions/{wrong['id']}/void", json={"reason": "again"})
    assert twice.status_code == 409 and twice.json()["error"] == "transaction_voided"
    refund = await client.post(f"/v1/transactions/{wrong['id']}/refund", json={"amount": "1", "reason": "x"})
    assert refund.status_code == 409
    assert (await client.post(f"/v1/transactions/{kept['id']}/void", json={})).status_code == 422
    assert (await client.post("/v1/transactions/nope/void", json={"reason": "x"})).status_code == 404
    listed = (await client.get(f"/v1/customers/{ada}/transactions")).json()["items"]
    assert {(t["id"], t["status"]) for t in listed} == {(kept["id"], "recorded"), (wrong["id"], "voided")}

    # Voiding the last purchase leaves the customer with no summary, as before buying.
    await client.post(f"/v1/transactions/{kept['id']}/void", json={"reason": "test order"})
    assert await summary_of(identify, ada) is None
    events = await events_of(suite.nats.url, "crm.identify.transaction.voided", 2, "money-voided")
    assert [(e["data"]["transaction_id"], e["data"]["purchase_count"], e["data"]["reason"]) for e in events] == [
        (wrong["id"], 1, "typed 500 for 5"),
        (kept["id"], 0, "test order"),
    ]
