"""Cost to serve in CLV: identify subtracts the service costs of a customer's tickets
(crm.lifecycle.service_cost.recorded, as lifecycle emits them), each compounded from its day."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from tests.services.identify.test_portfolio import SMALL_PORTFOLIO_END, refit, small_portfolio
from tests.services.test_engage import catalog_event, publish
from tests.support import wait_until


def _cost(cost_id: str, customer_id: str, amount: str, at: datetime, currency: str = "USD"):
    return catalog_event(
        "lifecycle",
        "crm.lifecycle.service_cost.recorded",
        {
            "cost_id": cost_id,
            "customer_id": customer_id,
            "ticket_id": "ticket-1",
            "minutes": 20.0,
            "reporting_amount": amount,
            "reporting_currency": currency,
            "recorded_at": at.isoformat(),
        },
        customer_id,
    )


async def test_a_customers_clv_drops_by_the_discounted_cost_of_their_tickets(suite):
    identify = await suite.start("identify")
    client = identify.client
    ids = await small_portfolio(client)
    await refit(client, calibration_end=SMALL_PORTFOLIO_END, time_unit="week")
    as_of = datetime.combine(
        datetime.fromisoformat((await client.get("/v1/portfolio/model")).json()["as_of"]), time(12), tzinfo=UTC
    )
    before = (await client.get(f"/v1/customers/{ids[3]}")).json()["scores"]["historic_clv"]
    other_before = (await client.get(f"/v1/customers/{ids[4]}")).json()["scores"]["historic_clv"]

    # 10.00 on the as-of day counts as 10.00; 20.00 a year before it is compounded a year at the
    # default 10 % a year (VALUECHAIN_IDENTIFY_DISCOUNT_RATE): 22.00. One in another currency is skipped.
    events = [
        _cost("cost-1", ids[3], "10.00", as_of),
        _cost("cost-2", ids[3], "20.00", as_of - timedelta(days=365)),
        _cost("cost-3", ids[3], "99.00", as_of, currency="EUR"),
    ]
    for event in events:
        await publish(suite.nats.url, event, event.id)
    await publish(suite.nats.url, events[0], "cost-1-again")  # a redelivered cost counts once

    async def costs_arrived():
        costs = (await client.get(f"/v1/customers/{ids[3]}/costs")).json()
        return costs if costs["service_tickets"] == "30" else None

    costs = await wait_until(costs_arrived, what="identify to keep the service costs")
    assert costs["service"] == "0"  # the configured service cost is untouched

    async def rescored():
        clv = (await client.get(f"/v1/customers/{ids[3]}")).json()["scores"]["historic_clv"]
        return clv if clv != before else None

    after = await wait_until(rescored, what="the customer re-scored")
    assert abs((before - after) - 32.0) < 1e-6, (before, after)
    assert (await client.get(f"/v1/customers/{ids[4]}")).json()["scores"]["historic_clv"] == other_before
