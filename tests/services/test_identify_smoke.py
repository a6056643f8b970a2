import json

import nats

from tests.support import wait_until


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
