import json

import nats


async def test_customer_created_event_reaches_jetstream(suite):
    identify = await suite.start("identify")
    response = await identify.client.post("/v1/customers", json={"email": "Ada@Example.com", "name": "Ada"})
    assert response.status_code == 201, response.text
    customer = response.json()

    nc = await nats.connect(suite.nats.url)
    js = nc.jetstream()
    sub = await js.pull_subscribe("crm.identify.customer.created", durable="probe")
    msgs = await sub.fetch(1, timeout=5)
    event = json.loads(msgs[0].data)
    assert event["type"] == "crm.identify.customer.created"
    assert event["subject"] == customer["id"]
    assert event["data"]["email"] == "Ada@Example.com"
    assert msgs[0].headers["Nats-Msg-Id"] == event["id"]
    await nc.close()

    dup = await identify.client.post("/v1/customers", json={"email": "ada@example.COM"})
    assert dup.status_code == 409
    assert dup.json()["error"] == "conflict"


async def test_transactions_page_and_refuse_a_forged_cursor(suite):
    from shared.http.pagination import encode_cursor

    identify = await suite.start("identify")
    customer = (await identify.client.post("/v1/customers", json={"external_id": "pager"})).json()
    for day in (1, 2, 3):
        response = await identify.client.post(
            "/v1/transactions",
            json={
                "customer_id": customer["id"],
                "amount": "1.50",
                "currency": "usd",
                "occurred_at": f"2026-03-0{day}T00:00:00Z",
            },
        )
        assert response.status_code == 201
    first = (await identify.client.get(f"/v1/customers/{customer['id']}/transactions", params={"limit": 2})).json()
    assert [t["occurred_at"][:10] for t in first["items"]] == ["2026-03-03", "2026-03-02"]
    rest = (
        await identify.client.get(
            f"/v1/customers/{customer['id']}/transactions", params={"limit": 2, "cursor": first["next_cursor"]}
        )
    ).json()
    assert [t["occurred_at"][:10] for t in rest["items"]] == ["2026-03-01"] and rest["next_cursor"] is None
    for forged in (encode_cursor("not a date", "x"), "%%%", encode_cursor(1)):
        response = await identify.client.get(f"/v1/customers/{customer['id']}/transactions", params={"cursor": forged})
        assert response.status_code == 422, (forged, response.text)
        assert response.json()["detail"][0]["field"] == "query.cursor"
