"""Authenticated internal traffic (issue 12, section 3), against a real nats-server with the
suite's users and services running with their own: a forged event is refused by the
server whatever credentials it comes with, no service user can change the stream or the
consumers, and a service answers only requests carrying the gateway's internal secret."""

from __future__ import annotations

import importlib
import json

import httpx
import nats
import pytest
from nats.js.api import ConsumerConfig, StreamConfig, SubjectTransform
from nats.js.errors import NotFoundError

from shared.events.envelope import make_event
from shared.settings import SERVICES, service_settings
from tests.support import wait_until

FORGED = "crm.identify.transaction.recorded"


def _forged_purchase(customer_id: str):
    return make_event(
        service="identify",
        type=FORGED,
        data={
            "id": "forged-1",
            "customer_id": customer_id,
            "amount": "999.00",
            "currency": "USD",
            "occurred_at": "2026-01-01T00:00:00Z",
            "purchase_count": 1,
        },
        subject=customer_id,
    )


async def _connect_as(suite, user: str, errors: list[Exception]):
    async def collect(exc: Exception) -> None:
        errors.append(exc)

    return await nats.connect(
        suite.nats.address,
        allow_reconnect=False,
        error_cb=collect,
        **suite.nats.credentials(user).connect_options(),
    )


async def _stage(client, customer_id: str, stage: str):
    response = await client.get(f"/v1/customers/{customer_id}/lifecycle")
    return response.json() if response.status_code == 200 and response.json()["stage"] == stage else None


async def test_a_forged_event_is_refused_without_credentials_and_with_another_services(suite):
    identify = await suite.start("identify")
    lifecycle = await suite.start("lifecycle")
    engage = await suite.start("engage")
    customer = (await identify.client.post("/v1/customers", json={"external_id": "victim"})).json()
    await wait_until(lambda: _stage(lifecycle.client, customer["id"], "prospect"), what="lifecycle knows the customer")
    forged = _forged_purchase(customer["id"])

    # Without credentials the server does not even let the connection in.
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(suite.nats.address, allow_reconnect=False, max_reconnect_attempts=1)

    # With engage's credentials it is let in, and refuses the publish (no ack, a violation).
    errors: list[Exception] = []
    nc = await _connect_as(suite, "engage", errors)
    try:
        with pytest.raises(nats.errors.TimeoutError):
            await nc.jetstream(timeout=1).publish(FORGED, forged.to_json(), headers={"Nats-Msg-Id": forged.id})
        await nc.publish(FORGED, forged.to_json())  # a plain publish, no ack asked for
        await nc.flush()
        await wait_until(lambda: len(errors) >= 2, what="the server's permission violations")
    finally:
        await nc.close()
    assert all("permissions violation for publish" in str(error) for error in errors), errors

    # A legitimate event after it is a barrier: each consumer handles the stream in order.
    other = (await identify.client.post("/v1/customers", json={"external_id": "barrier"})).json()
    await wait_until(lambda: _stage(lifecycle.client, other["id"], "prospect"), what="the barrier reached lifecycle")

    async def barrier_on_timeline():
        response = await engage.client.get(f"/v1/customers/{other['id']}/timeline")
        return response.status_code == 200 and response.json()["items"]

    await wait_until(barrier_on_timeline, what="the barrier reached engage")
    admin = await nats.connect(suite.nats.url)
    try:
        with pytest.raises(NotFoundError):  # the stream never stored it
            await admin.jetstream().get_last_msg("CRM", FORGED)
    finally:
        await admin.close()
    # ... and no consumer applied it: the stage and the timeline are as they were.
    assert await _stage(lifecycle.client, customer["id"], "prospect")
    timeline = (await engage.client.get(f"/v1/customers/{customer['id']}/timeline")).json()["items"]
    assert "crm.identify.customer.created" in [item["type"] for item in timeline]
    assert FORGED not in [item["type"] for item in timeline]


async def test_a_service_user_may_not_touch_the_stream_or_the_consumers(suite):
    await suite.start("identify")  # its consumer is provisioned; identify has the most rights of all
    errors: list[Exception] = []
    nc = await _connect_as(suite, "identify", errors)
    try:
        js = nc.jetstream(timeout=1)
        transformed = StreamConfig(
            name="CRM",
            subjects=["crm.>"],
            subject_transform=SubjectTransform(src="crm.engage.>", dest="crm.identify.>"),
        )
        with pytest.raises(nats.errors.TimeoutError):
            await js.update_stream(transformed)
        with pytest.raises(nats.errors.TimeoutError):
            await js.add_consumer("CRM", ConsumerConfig(durable_name="identify-mine", filter_subject="crm.>"))
        with pytest.raises(nats.errors.TimeoutError):
            await js.delete_consumer("CRM", "identify-events")
        with pytest.raises(nats.errors.TimeoutError):  # another service's consumer
            await js.consumer_info("CRM", "engage-events")
        await nc.subscribe("crm.>")  # listening to the bus directly
        await nc.subscribe("_INBOX.>")  # or to other users' replies
        await nc.flush()
        await wait_until(lambda: len(errors) >= 6, what="the server's permission violations")
    finally:
        await nc.close()
    assert sum("permissions violation for subscription" in str(error) for error in errors) == 2, errors

    admin = await nats.connect(suite.nats.url)
    try:
        js = admin.jetstream()
        info = await js.stream_info("CRM")
        assert info.config.subject_transform is None
        with pytest.raises(NotFoundError):
            await js.consumer_info("CRM", "identify-mine")
        assert (await js.consumer_info("CRM", "identify-events")).name == "identify-events"
    finally:
        await admin.close()


async def test_network_makes_consumers_of_its_own_but_touches_no_other_services(suite):
    """network makes a consumer per webhook subscription while it runs (shared/nats_auth.py
    `dynamic_consumer_rights`); the suite's provisioned durables stay out of its reach."""

    await suite.start("identify")
    await suite.start("network")
    errors: list[Exception] = []
    nc = await _connect_as(suite, "network", errors)
    try:
        js = nc.jetstream(timeout=1)
        mine = ConsumerConfig(name="network-webhook-test", durable_name="network-webhook-test", filter_subject="crm.>")
        await js.add_consumer("CRM", mine)
        assert (await js.consumer_info("CRM", "network-webhook-test")).name == "network-webhook-test"
        await js.delete_consumer("CRM", "network-webhook-test")
        with pytest.raises(nats.errors.TimeoutError):  # another service's consumer
            await js.delete_consumer("CRM", "identify-events")
        with pytest.raises(nats.errors.TimeoutError):
            await js.consumer_info("CRM", "identify-events")
        with pytest.raises(nats.errors.TimeoutError):  # its own provisioned ones: pull only
            await js.delete_consumer("CRM", "network-events")
        with pytest.raises(nats.errors.TimeoutError):
            await js.add_consumer("CRM", ConsumerConfig(name="engage-events", durable_name="engage-events"))
        with pytest.raises(nats.errors.TimeoutError):  # the stream itself
            await js.update_stream(StreamConfig(name="CRM", subjects=["crm.>", "other.>"]))
    finally:
        await nc.close()
    admin = await nats.connect(suite.nats.url)
    try:
        js = admin.jetstream()
        assert (await js.consumer_info("CRM", "identify-events")).name == "identify-events"
        assert (await js.consumer_info("CRM", "network-events")).name == "network-events"
        assert (await js.stream_info("CRM")).config.subjects == ["crm.>"]
    finally:
        await admin.close()


async def test_a_service_finds_a_missing_consumer_in_readiness_and_resumes_once_it_is_provisioned(suite):
    lifecycle = await suite.start("lifecycle")
    admin = await nats.connect(suite.nats.url)
    try:
        await admin.jetstream().delete_consumer("CRM", "lifecycle-events")
        runner = next(r for r in lifecycle.runtime.consumers if r.name == "lifecycle-events")
        runner._checked_generation = -1  # as after a reconnect: it looks again

        async def reported():
            response = await lifecycle.client.get("/readyz")
            check = response.json()["checks"]["consumer:lifecycle-events"]
            return response.status_code == 503 and check.startswith("missing: consumer lifecycle-events") and check

        assert "valuechain migrate" in await wait_until(reported, what="readiness names the missing consumer")
        await suite.provision(importlib.import_module("services.lifecycle.main").DEFINITION, lifecycle.settings)
        await wait_until(lambda: runner.problem is None, what="the consumer found again")
        assert (await lifecycle.client.get("/readyz")).status_code == 200
    finally:
        await admin.close()


async def test_a_partners_reader_pulls_its_consumer_and_nothing_else(suite):
    """docs/security.md's recipe: the operator makes the consumer, as the admin, and a
    read-only user on it (shared.nats_auth.reader_user)."""

    from shared.events.bus import consumer_config, provision
    from shared.nats_auth import reader_user

    identify = await suite.start("identify")
    admin = await nats.connect(suite.nats.url)
    try:
        config = consumer_config("partner-acme", ["crm.identify.customer.created"], max_ack_pending=100)
        await provision(admin.jetstream(), "CRM", [config])
    finally:
        await admin.close()
    await suite.nats.admit(reader_user("partner-acme", ["partner-acme"], "CRM"))
    created = (await identify.client.post("/v1/customers", json={"external_id": "for-acme"})).json()

    errors: list[Exception] = []
    nc = await _connect_as(suite, "partner-acme", errors)
    try:
        js = nc.jetstream(timeout=2)
        subscription = await js.pull_subscribe_bind("partner-acme", stream="CRM")
        messages = await subscription.fetch(1, timeout=5)
        assert json.loads(messages[0].data)["data"]["id"] == created["id"]
        await messages[0].ack_sync(timeout=2)
        with pytest.raises(nats.errors.TimeoutError):  # publishing anything
            await js.publish("crm.identify.customer.created", b"{}")
        with pytest.raises(nats.errors.TimeoutError):  # another consumer
            await js.consumer_info("CRM", "engage-events")
        with pytest.raises(nats.errors.TimeoutError):  # a consumer of its own
            await js.add_consumer("CRM", ConsumerConfig(durable_name="partner-acme-2"))
        await wait_until(lambda: len(errors) >= 3, what="the server's permission violations")
    finally:
        await nc.close()


# --- services answer only the gateway ----------------------------------------------------

SECRET = "the-gateways-internal-secret"


@pytest.mark.parametrize("name", SERVICES)
async def test_a_service_refuses_requests_without_the_internal_secret(name, tmp_path):
    """Refused before anything runs: the app need not even be started (no database, no NATS)."""

    settings = service_settings(
        name, database_url=f"sqlite+aiosqlite:///{tmp_path}/{name}.db", var_dir=tmp_path, internal_secret=SECRET
    )
    app = importlib.import_module(f"services.{name}.main").create_app(settings)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=f"http://{name}") as client:
        for path in ("/v1/ops/dead-letters", "/metrics", "/openapi.json", "/v1/customers/x"):
            for headers in ({}, {"x-valuechain-internal": "guessed"}, {"x-valuechain-internal": SECRET[:-1]}):
                response = await client.get(path, headers=headers)
                assert response.status_code == 401, (path, headers, response.text)
                assert response.json()["error"] == "unauthorized"
        assert (await client.get("/healthz")).status_code == 200  # probes stay open
        with_secret = await client.get("/openapi.json", headers={"x-valuechain-internal": SECRET})
        assert with_secret.status_code == 200


async def test_the_internal_secret_is_made_once_and_kept_private(tmp_path):
    import stat

    from shared.internal_auth import internal_secret_path, load_or_create_internal_secret
    from shared.settings import SuiteSettings

    settings = SuiteSettings(var_dir=tmp_path)
    secret = load_or_create_internal_secret(settings)
    assert len(secret) >= 40 and load_or_create_internal_secret(settings) == secret
    assert stat.S_IMODE(internal_secret_path(tmp_path).stat().st_mode) == 0o600
    assert load_or_create_internal_secret(SuiteSettings(var_dir=tmp_path, internal_secret="given")) == "given"


def test_placeholder_secrets_are_refused_in_production():
    from pydantic import ValidationError

    for values in ({"internal_secret": "changethis"}, {"nats_password": "secret"}):
        with pytest.raises(ValidationError, match="placeholder"):
            service_settings("identify", environment="production", **values)
