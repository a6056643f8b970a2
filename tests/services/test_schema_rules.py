"""Rules the fuzz test (tests/contract) found the services breaking or the schema not stating."""

from __future__ import annotations


def _field(response) -> str:
    return response.json()["detail"][0]["field"]


async def test_a_number_is_not_a_date(suite):
    # pydantic read 0 as 1970-01-01T00:00:00Z and answered 201/202; the schema says text.
    identify = await suite.start("identify")
    engage = await suite.start("engage")
    value = await suite.start("value")
    customer = (await identify.client.post("/v1/customers", json={"email": "n@example.com"})).json()
    cases = [
        (
            identify.client,
            "/v1/transactions",
            {"customer_id": customer["id"], "amount": "1", "currency": "USD", "occurred_at": 0},
            "body.occurred_at",
        ),
        (identify.client, "/v1/portfolio/refits", {"calibration_end": 0}, "body.calibration_end"),
        (
            engage.client,
            "/v1/interactions",
            {
                "customer_id": customer["id"],
                "channel": "sms",
                "direction": "inbound",
                "summary": "hi",
                "occurred_at": 1.5,
            },
            "body.occurred_at",
        ),
        (
            value.client,
            "/v1/offers",
            {"customer_id": customer["id"], "kind": "welcome", "title": "Hi", "expires_at": 4102444800},
            "body.expires_at",
        ),
    ]
    for client, path, body, field in cases:
        response = await client.post(path, json=body)
        assert response.status_code == 422, (path, response.text)
        assert _field(response) == field
        assert "not a number" in response.json()["detail"][0]["message"]
    ok = await identify.client.post("/v1/portfolio/refits", json={"calibration_end": "2026-01-31"})
    assert ok.status_code == 202, ok.text


async def test_a_patch_that_leaves_neither_email_nor_external_id(suite):
    identify = await suite.start("identify")
    customer = (await identify.client.post("/v1/customers", json={"email": "only@example.com"})).json()
    # The body alone breaks the rule (and its schema says so): 422.
    both = await identify.client.patch(f"/v1/customers/{customer['id']}", json={"email": None, "external_id": None})
    assert both.status_code == 422 and _field(both) == "body"
    # A valid body that conflicts with what the customer has: 409, as for other state conflicts.
    one = await identify.client.patch(f"/v1/customers/{customer['id']}", json={"email": None})
    assert one.status_code == 409, one.text
    assert "neither" in one.json()["detail"]
    fine = await identify.client.patch(f"/v1/customers/{customer['id']}", json={"email": None, "external_id": "x1"})
    assert fine.status_code == 200 and fine.json()["email"] is None
