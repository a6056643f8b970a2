"""End to end: the value map through the gateway (`valuechain run`), with its scopes."""

from __future__ import annotations

import httpx

from tests.e2e.harness import unique, unique_email
from tests.support import wait_until

# The ratings' day: the map is read over it alone, which no other test in the shared suite rates on.
RATED_ON = "2001-02-03"


async def test_the_value_map_through_the_gateway(running_suite):
    async with running_suite.client() as gw:
        customer = (await gw.post("/v1/customers", json={"email": unique_email("rater")})).json()

        async def known():
            response = await gw.get(f"/v1/customers/{customer['id']}/value-ratings")
            return response.status_code == 200

        await wait_until(known, what="value knows the customer")
        competitor = unique("Acme")
        acme = await gw.post("/v1/value-map/competitors", json={"name": competitor})
        assert acme.status_code == 201, acme.text
        ratings = [
            {
                "customer_id": customer["id"],
                "attribute": attribute,
                "subject": subject,
                "score": score,
                "rated_at": f"{RATED_ON}T12:00:00Z",
            }
            for attribute, subject, score in (("quality", "us", 8), ("price", "us", 7), ("quality", competitor, 6))
        ]
        entered = await gw.post("/v1/value-map/ratings:batch", json={"ratings": ratings})
        assert entered.status_code == 201 and entered.json() == {"recorded": 3}, entered.text
        unknown = await gw.post("/v1/value-map/ratings:batch", json={"ratings": [{**ratings[0], "subject": "Globex"}]})
        assert unknown.status_code == 422 and unknown.json()["detail"][0]["field"] == "body.ratings.0.subject"

        body = (await gw.get("/v1/value-map", params={"from": RATED_ON, "to": RATED_ON})).json()
        us = next(s for s in body["subjects"] if s["subject"] == "us")
        assert us["perceived_quality"] == {"value": 8.0, "ratings": 1}
        assert us["perceived_price"] == {"value": 4.0, "ratings": 1}  # a price score of 7 is 11 − 7 = 4 "expensive"
        assert body["ratings"] == 3

        # An analyst reads the map and writes nothing to it.
        made = await gw.post("/v1/api-keys", json={"name": "analyst", "role": "analyst"})
        assert made.status_code == 201, made.text
        async with httpx.AsyncClient(
            base_url=running_suite.gateway_url, headers={"Authorization": f"Bearer {made.json()['key']}"}, timeout=10
        ) as analyst:
            assert (await analyst.get("/v1/value-map", params={"segment": "champions"})).status_code == 200
            refused = await analyst.post("/v1/value-map/competitors", json={"name": "Initech"})
            assert refused.status_code == 403, refused.text
