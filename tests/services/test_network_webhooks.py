"""network's webhooks against a real nats-server, real databases and a real HTTP receiver
in the test process: subscriptions, signatures (every delivery verified with the
standardwebhooks library), retries, disabling, isolation, the breaker, the log, retry,
replay, SSRF and restarts."""

from __future__ import annotations

import asyncio

import pytest

from tests.services.webhook_support import Receiver, verified
from tests.support import wait_until

ALLOW = {"webhook_allow_hosts": ("127.0.0.1",)}
PARTNER = {"x-valuechain-actor": "key_acme", "x-valuechain-role": "partner", "x-valuechain-partner": "acme"}
PII = {"x-valuechain-pii": "1"}


async def start_network(suite, **overrides):
    network = await suite.start("network", **{**ALLOW, **overrides})
    assert (await network.client.get("/readyz")).status_code == 200
    return network


async def subscribe(network, url: str, types=("crm.identify.customer.*",), headers=None, **extra) -> dict:
    response = await network.client.post(
        "/v1/webhooks", json={"url": url, "event_types": list(types), **extra}, headers=headers or {}
    )
    assert response.status_code == 201, response.text
    return response.json()


async def customer(identify, external_id: str, **fields) -> dict:
    response = await identify.client.post("/v1/customers", json={"external_id": external_id, **fields})
    assert response.status_code == 201, response.text
    return response.json()


async def test_a_subscription_receives_signed_public_events_of_its_types(suite):
    identify = await suite.start("identify")
    network = await start_network(suite)
    async with Receiver() as receiver:
        made = await subscribe(network, receiver.url("/hook"), headers=PII, description="CRM sync")
        assert made["secret"].startswith("whsec_") and made["pii"] is True and made["enabled"] is True
        shown = (await network.client.get(f"/v1/webhooks/{made['id']}")).json()
        assert "secret" not in shown and shown["event_types"] == ["crm.identify.customer.*"]

        ada = await customer(identify, "ada", email="ada@example.com", name="Ada")
        [call] = await receiver.wait_for("/hook", 1)
        event = verified(made["secret"], call)
        assert event["type"] == "crm.identify.customer.created" and event["data"]["id"] == ada["id"]
        assert event["data"]["email"] == "ada@example.com"  # its creator held pii:read
        assert call.headers["webhook-id"] == event["id"]

        log = await wait_until(
            lambda: _deliveries(network, made["id"]), what="the attempt in the delivery log"
        )
        assert [(d["outcome"], d["status_code"], d["attempt"], d["response_body"]) for d in log] == [
            ("delivered", 200, 1, "thanks")
        ]


async def _deliveries(network, webhook_id: str, **params) -> list[dict]:
    response = await network.client.get(f"/v1/webhooks/{webhook_id}/deliveries", params=params)
    assert response.status_code == 200, response.text
    return response.json()["items"]
