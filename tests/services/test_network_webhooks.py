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


async def test_a_partner_manages_only_its_own_subscriptions_and_gets_no_personal_fields_without_pii(suite):
    identify = await suite.start("identify")
    network = await start_network(suite)
    other = {**PARTNER, "x-valuechain-partner": "bolt"}
    async with Receiver() as receiver:
        mine = await subscribe(network, receiver.url("/acme"), headers=PARTNER)
        theirs = await subscribe(network, receiver.url("/bolt"), headers=other)
        assert mine["partner_id"] == "acme" and mine["pii"] is False

        listed = (await network.client.get("/v1/webhooks", headers=PARTNER)).json()["items"]
        assert [w["id"] for w in listed] == [mine["id"]]
        everyone = (await network.client.get("/v1/webhooks")).json()["items"]  # staff: all
        assert {w["id"] for w in everyone} == {mine["id"], theirs["id"]}
        for method, path in [
            ("GET", ""),
            ("PATCH", ""),
            ("DELETE", ""),
            ("POST", "/rotate-secret"),
            ("GET", "/deliveries"),
            ("POST", "/replay"),
            ("POST", "/deliveries/x/retry"),
        ]:
            body = {"PATCH": {"description": "mine now"}, "POST": {"after": "0"}}.get(method)
            if path in ("/rotate-secret", "/deliveries/x/retry"):
                body = None
            response = await network.client.request(
                method, f"/v1/webhooks/{theirs['id']}{path}", json=body, headers=PARTNER
            )
            assert response.status_code == 404, (method, path, response.text)
            assert response.json() == {"error": "not_found", "detail": f"no webhook subscription with id {theirs['id']}"}

        grace = await customer(identify, "grace", email="grace@example.com", name="Grace")
        [call] = await receiver.wait_for("/acme", 1)
        event = verified(mine["secret"], call)
        assert event["data"]["id"] == grace["id"]
        assert event["data"]["email"] is None and event["data"]["name"] is None  # no pii:read


@pytest.mark.parametrize(
    ("body", "field", "error"),
    [
        ({"event_types": ["crm.identify.customer.created", "crm.identify.customer.exploded"]}, "body.event_types.1", "validation_error"),
        ({"event_types": ["crm.nothing.*"]}, "body.event_types.0", "validation_error"),
        ({"event_types": ["crm.dlq.identify"]}, "body.event_types.0", "validation_error"),
        ({"event_types": ["crm.>.customer"]}, "body.event_types.0", "validation_error"),
        ({"url": "ftp://127.0.0.1/hook"}, "body.url", "validation_error"),
        ({"url": "not a url"}, "body.url", "validation_error"),
        ({"url": "https://192.168.1.10/hook"}, "body.url", "url_not_allowed"),
        ({"url": "https://169.254.169.254/latest/meta-data"}, "body.url", "url_not_allowed"),
        ({"url": "https://[::1]/hook"}, "body.url", "url_not_allowed"),
        ({"url": "https://[::ffff:10.0.0.1]/hook"}, "body.url", "url_not_allowed"),
        ({"url": "http://93.184.215.14/hook"}, "body.url", "url_not_allowed"),  # public, but http://
    ],
)
async def test_a_refused_subscription_answers_422_naming_the_field_and_writes_nothing(suite, body, field, error):
    import nats

    network = await start_network(suite)
    request = {"url": "https://127.0.0.1:9/hook", "event_types": ["crm.identify.customer.*"], **body}
    response = await network.client.post("/v1/webhooks", json=request)
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["error"] == error and answer["detail"][0]["field"] == field, answer
    assert (await network.client.get("/v1/webhooks")).json()["items"] == []
    nc = await nats.connect(suite.nats.url)
    try:
        names = [c.name for c in await nc.jetstream().consumers_info("CRM")]
    finally:
        await nc.close()
    assert not [name for name in names if name.startswith("network-webhook-")]
