"""Next best offer against a real value fed by crafted events on the real bus: each factor
checked against arithmetic done by hand (Beta–Binomial with the template's overall rate as
the weak prior's mean)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.services.test_engage import catalog_event, start
from tests.services.test_value_campaigns import _consent, _created, _id, _known, _publish_all, _template
from tests.support import wait_until


def _scored(cid, segment, spend=None):
    data = {
        "customer_id": cid,
        "model_version": 1,
        "segment": segment,
        "kinds": [],
        "predicted_clv": 100.0,
        "probability_alive": 0.7,
        "expected_spend": spend,
        "scored_at": "2026-06-01T00:00:00Z",
    }
    return catalog_event("identify", "crm.identify.customer.scored", data, cid)


async def _issue(value, template_id, customer_id) -> dict:
    response = await value.client.post(f"/v1/offer-templates/{template_id}/offers", json={"customer_id": customer_id})
    assert response.status_code == 201, response.text
    return response.json()


async def _redeem(value, offer) -> None:
    assert (await value.client.post(f"/v1/offers/{offer['id']}/redeem")).status_code == 200


async def test_offers_are_ranked_by_expected_value_with_every_factor_shown(suite):
    value = await start(suite, "value")
    target, quiet = _id(100), _id(101)
    champions = [_id(n) for n in range(1, 11)]
    hibernating = [_id(n) for n in range(11, 16)]
    everyone = [target, quiet, *champions, *hibernating]
    events = [_created(c) for c in everyone]
    events += [_scored(c, "champions") for c in champions] + [_scored(c, "hibernating") for c in hibernating]
    events += [_scored(target, "champions", spend=80.0), _consent(target), _scored(quiet, "champions", spend=50.0)]
    await _publish_all(suite.nats.url, events)
    await _known(value, everyone)

    async def scored():
        answer = (await value.client.get(f"/v1/customers/{target}/next-best-offer")).json()
        return answer if answer.get("expected_order_value") and answer["consented_channels"] == ["email"] else None

    await wait_until(scored, what="the target's score and consent")

    ten_off = await _template(value, title="10% off", cost="5.00")
    points = await _template(value, kind="points", title="100 points", percent_off=None, points=100, cost="1.00")
    scarce = await _template(value, title="Last one", budget=1, cost="0")
    mine = await _template(value, title="Already held", cost="0")
    # Results: 10% off redeemed by 4 of 10 champions and 0 of 5 hibernating; the points by 1 of 10 champions.
    for n, customer in enumerate(champions):
        offer = await _issue(value, ten_off["id"], customer)
        if n < 4:
            await _redeem(value, offer)
        offer = await _issue(value, points["id"], customer)
        if n == 0:
            await _redeem(value, offer)
    for customer in hibernating:
        await _issue(value, ten_off["id"], customer)
    await _issue(value, scarce["id"], champions[0])
    await _issue(value, mine["id"], target)

    answer = (await value.client.get(f"/v1/customers/{target}/next-best-offer")).json()
    assert answer["segment"] == "champions"
    assert answer["expected_order_value"] == {"amount": "80.00", "source": "identify_expected_spend"}
    assert [o["template_id"] for o in answer["offers"]] == [ten_off["id"], points["id"]]
    first, second = answer["offers"]
    # 10% off: over every segment 4 of 15, prior Beta(0.05·2, 0.95·2) = Beta(0.1, 1.9): mean (0.1+4)/(2+15) = 4.1/17.
    # In champions 4 of 10, prior Beta(2·4.1/17, 2·12.9/17): mean (8.2/17 + 4)/(2 + 10) = 76.2/204 = 0.3735294...
    assert first["prior_rate"] == pytest.approx(4.1 / 17, abs=1e-6)
    assert first["response_probability"] == pytest.approx(76.2 / 204, abs=1e-6)
    assert (first["issued_in_segment"], first["redeemed_in_segment"]) == (10, 4)
    # EV = 0.3735294 × 80 − 5 = 24.88
    assert (first["expected_order_value"], first["cost"], first["expected_value"]) == ("80.00", "5.00", "24.88")
    low, high = first["response_interval"]
    assert low < first["response_probability"] < high
    # Points: 1 of 10 everywhere: prior mean 1.1/12; posterior (2·1.1/12 + 1)/12 = 0.0986111; EV = 7.8889 − 1 = 6.89.
    assert second["response_probability"] == pytest.approx((2.2 / 12 + 1) / 12, abs=1e-6)
    assert second["expected_value"] == "6.89"
    assert {(x["template_id"], x["reason"]) for x in answer["excluded"]} == {
        (scarce["id"], "budget_exhausted"),
        (mine["id"], "held"),
    }
    assert Decimal(first["expected_value"]) > Decimal(second["expected_value"])

    # No consent on the channel asked for, or none at all: no offers, each template left out saying so.
    by_sms = (await value.client.get(f"/v1/customers/{target}/next-best-offer?channel=sms")).json()
    assert by_sms["offers"] == [] and {x["reason"] for x in by_sms["excluded"]} == {"no_consent"}
    silent = (await value.client.get(f"/v1/customers/{quiet}/next-best-offer")).json()
    assert silent["offers"] == [] and "not consented" in silent["note"]

    assert (await value.client.get(f"/v1/customers/{_id(999)}/next-best-offer")).status_code == 404
    odd = await value.client.get(f"/v1/customers/{target}/next-best-offer?segment=x")
    assert odd.status_code == 422
    assert (await value.client.get(f"/v1/customers/{target}/next-best-offer?limit=0")).status_code == 422
