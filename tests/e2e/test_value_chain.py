"""End to end: the running suite (`valuechain run`), driven only through the gateway."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import httpx
import nats
from nats.js.api import ConsumerConfig, DeliverPolicy

from shared.settings import SERVICES
from tests.e2e.harness import unique, unique_email
from tests.support import wait_until


async def _json_when(client: httpx.AsyncClient, path: str, predicate, what: str, timeout: float = 15):
    async def check():
        response = await client.get(path)
        if response.status_code == 200 and predicate(response.json()):
            return response.json()
        return None

    return await wait_until(check, timeout=timeout, interval=0.05, what=what)


async def _stream_position(suite) -> int:
    """The stream's last sequence now: a test reading the stream starts after it (the shared
    suite's stream holds every earlier test's events)."""

    nc = await nats.connect(suite.nats_url)
    try:
        return (await nc.jetstream().stream_info("CRM")).state.last_seq
    finally:
        await nc.close()


async def test_the_value_chain_flows_from_a_purchase_to_every_stage(running_suite):
    since = await _stream_position(running_suite)
    order, correlation = unique("order-"), unique("tour-")
    async with running_suite.client() as gw:
        ada = (await gw.post("/v1/customers", json={"email": unique_email("ada"), "name": "Ada"})).json()
        created = await gw.post("/v1/customers", json={"email": unique_email("bob"), "referred_by": ada["id"]})
        assert created.status_code == 201, created.text
        bob = created.json()

        rate = await gw.put("/v1/fx-rates", json=[{"currency": "EUR", "date": "2026-10-01", "rate": "1.08"}])
        assert rate.status_code == 200, rate.text
        purchase = await gw.post(
            "/v1/transactions",
            json={
                "customer_id": bob["id"],
                "amount": "49.90",
                "currency": "eur",
                "occurred_at": "2026-11-01T10:00:00Z",
                "external_id": order,
            },
            headers={"X-Correlation-ID": correlation},
        )
        assert purchase.status_code == 201, purchase.text
        assert purchase.json()["currency"] == "EUR"
        assert (purchase.json()["reporting_amount"], purchase.json()["reporting_currency"]) == ("53.892", "USD")
        again = await gw.post(
            "/v1/transactions",
            json={
                "customer_id": bob["id"],
                "amount": "49.90",
                "currency": "EUR",
                "occurred_at": "2026-11-01T10:00:00Z",
                "external_id": order,
            },
        )
        assert again.status_code == 200 and again.json()["id"] == purchase.json()["id"]

        lifecycle = await _json_when(
            gw, f"/v1/customers/{bob['id']}/lifecycle", lambda body: body["stage"] == "new", "stage new"
        )
        assert [(h["from"], h["to"]) for h in lifecycle["history"]] == [(None, "prospect"), ("prospect", "new")]

        offers = await _json_when(
            gw, f"/v1/customers/{bob['id']}/offers", lambda body: len(body["items"]) == 1, "welcome offer"
        )
        assert offers["items"][0]["kind"] == "welcome"

        referrals = await _json_when(
            gw, f"/v1/customers/{ada['id']}/referrals", lambda body: len(body["items"]) == 1, "referral"
        )
        assert referrals["items"][0]["referred_id"] == bob["id"]

        interaction = await gw.post(
            "/v1/interactions",
            json={
                "customer_id": bob["id"],
                "channel": "email",
                "direction": "inbound",
                "summary": "Asked about delivery times",
            },
        )
        assert interaction.status_code == 201, interaction.text

        expected = {
            "crm.identify.customer.created",
            "crm.identify.transaction.recorded",
            "crm.lifecycle.stage.changed",
            "crm.value.offer.issued",
            "crm.engage.interaction.logged",
            "crm.network.referral.recorded",
        }
        timeline = await _json_when(
            gw,
            f"/v1/customers/{bob['id']}/timeline",
            lambda body: expected <= {i["type"] for i in body["items"]},
            "timeline",
        )
        times = [item["time"] for item in timeline["items"]]
        assert times == sorted(times, reverse=True)

        view = await gw.get(f"/v1/customers/{bob['id']}/360")
        assert view.status_code == 200, view.text
        body = view.json()
        assert body["customer"]["id"] == bob["id"]
        assert body["lifecycle"]["stage"] == "new"
        assert body["offers"][0]["kind"] == "welcome"
        assert body["timeline"] and body["missing"] == []

    # The correlation id of the purchase travelled through three services' events.
    nc = await nats.connect(running_suite.nats_url)
    try:
        sub = await nc.jetstream().pull_subscribe(
            "crm.>",
            stream="CRM",
            config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=since + 1),
        )
        chain = {}
        for msg in await sub.fetch(500, timeout=2):
            event = json.loads(msg.data)
            if event.get("subject") == bob["id"] and event.get("correlationid") == correlation:
                chain[event["type"]] = event
        assert {"crm.identify.transaction.recorded", "crm.lifecycle.stage.changed", "crm.value.offer.issued"} <= set(
            chain
        )
        assert chain["crm.lifecycle.stage.changed"]["causationid"] == chain["crm.identify.transaction.recorded"]["id"]
        assert chain["crm.value.offer.issued"]["causationid"] == chain["crm.lifecycle.stage.changed"]["id"]
    finally:
        await nc.close()


async def test_services_answer_only_the_gateway_over_their_sockets(running_suite):
    secret = running_suite.internal_secret
    for name in SERVICES:
        async with httpx.AsyncClient(base_url=running_suite.service_url(name), timeout=10) as direct:
            for headers in ({}, {"x-valuechain-internal": "not-" + secret}):
                for path in ("/v1/ops/dead-letters", "/metrics", "/openapi.json"):
                    refused = await direct.get(path, headers=headers)
                    assert refused.status_code == 401, (name, path, headers)
                    assert refused.json()["error"] == "unauthorized"
            assert (await direct.get("/readyz")).status_code == 200  # probes stay open
            assert (await direct.get("/metrics", headers={"x-valuechain-internal": secret})).status_code == 200
    async with running_suite.client() as gw:  # the gateway sends the secret: the same route answers
        assert (await gw.get("/v1/ops/identify/dead-letters")).status_code == 200


async def test_every_v1_route_needs_the_key_and_errors_are_json(running_suite):
    async with httpx.AsyncClient(base_url=running_suite.gateway_url) as anonymous:
        assert (await anonymous.get("/v1/customers")).status_code == 401
        wrong = await anonymous.get("/v1/customers", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]
        assert (await anonymous.get("/healthz")).status_code == 200
        assert (await anonymous.get("/readyz")).status_code == 200
        assert (await anonymous.get("/metrics")).status_code == 401  # needs the ops scope
        spec = (await anonymous.get("/openapi.json")).json()
        assert "/v1/customers" in spec["paths"] and "/v1/customers/{customer_id}/lifecycle" in str(spec["paths"])
    async with running_suite.client() as gw:
        bad = await gw.post("/v1/customers", json={"email": "not-an-email"})
        assert bad.status_code == 422 and "email" in json.dumps(bad.json()["detail"])
        malformed = await gw.post("/v1/customers", content=b"{nope", headers={"content-type": "application/json"})
        assert malformed.status_code == 400 and malformed.json()["error"] == "malformed_json"
        assert (await gw.get("/v1/customers/does-not-exist")).status_code == 404
        duplicate = unique("dup-")
        assert (await gw.post("/v1/customers", json={"external_id": duplicate})).status_code == 201
        assert (await gw.post("/v1/customers", json={"external_id": duplicate})).status_code == 409
        assert (await gw.get("/v1/nothing-here")).status_code == 404
        page = (await gw.get("/v1/customers", params={"limit": 1})).json()
        assert len(page["items"]) == 1 and page["next_cursor"]
        after = (await gw.get("/v1/customers", params={"limit": 1, "cursor": page["next_cursor"]})).json()
        assert after["items"][0]["id"] != page["items"][0]["id"]


async def test_an_unknown_query_parameter_is_the_services_422_through_the_gateway(running_suite):
    unknown = {
        "error": "validation_error",
        "detail": [{"field": "query.colour", "message": "unknown query parameter", "type": "extra_forbidden"}],
    }
    async with running_suite.client() as gw:
        customer = (await gw.post("/v1/customers", json={"external_id": unique("colour-")})).json()
        for path in (
            "/v1/customers",
            f"/v1/customers/{customer['id']}",
            f"/v1/customers/{customer['id']}/lifecycle",
            "/v1/interactions",
            "/v1/stakeholders",
            f"/v1/customers/{customer['id']}/offers",
            "/v1/ops/identify/dead-letters",
            f"/v1/customers/{customer['id']}/360",
            "/healthz",
        ):
            response = await gw.get(path, params={"colour": "red", "customer_id": customer["id"]})
            assert response.status_code == 422, (path, response.text)
            assert response.json()["detail"][0] == unknown["detail"][0], path
        refused = await gw.post("/v1/customers", params={"colour": "red"}, json={"external_id": unique("colour-")})
        assert refused.status_code == 422 and refused.json() == unknown


def _pids_serving(port: int) -> list[int]:
    out = subprocess.run(["pgrep", "-f", "--", f"--port {port}"], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


async def _consumers_idle(suite, *durables: str) -> bool:
    nc = await nats.connect(suite.nats_url)
    try:
        for durable in durables:
            info = await nc.jetstream().consumer_info("CRM", durable)
            if info.num_ack_pending or info.num_pending:
                return False
        return True
    finally:
        await nc.close()


async def test_a_service_that_dies_is_restarted(running_suite):
    # Killed with events in hand, lifecycle takes its consumer back only after their ack wait
    # (30 s), so that each customer's events stay in order (docs/architecture.md, "Replicas:
    # leases, not partitions"; tests/shared/test_leases.py). This test is about the restart:
    # it kills a lifecycle that has caught up with what earlier tests sent, and stayed so for a
    # second: idle at one check, it once had an event in hand by the kill a moment later (a
    # full run's earlier modules still trickle events in), and its successor waited out the
    # ack wait, past this test's 15 s.
    idle_since: float | None = None

    async def caught_up() -> bool:
        nonlocal idle_since
        if not await _consumers_idle(running_suite, "lifecycle-events", "lifecycle-stage-changes"):
            idle_since = None
            return False
        idle_since = idle_since or time.monotonic()
        return time.monotonic() - idle_since >= 1.0

    await wait_until(caught_up, timeout=60, interval=0.2, what="lifecycle idle for a second")
    port = running_suite.ports["lifecycle"]
    pids = _pids_serving(port)
    assert pids, "lifecycle is not running"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)

    async def back_again():
        new = _pids_serving(port)
        if not new or set(new) & set(pids):
            return False
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(f"{running_suite.service_url('lifecycle')}/readyz")).status_code == 200
        except httpx.HTTPError:
            return False

    await wait_until(back_again, timeout=30, interval=0.2, what="lifecycle restarted")
    async with running_suite.client() as gw:
        customer = (await gw.post("/v1/customers", json={"external_id": unique("after-restart-")})).json()
        await _json_when(
            gw,
            f"/v1/customers/{customer['id']}/lifecycle",
            lambda body: body["stage"] == "prospect",
            "restarted lifecycle consuming",
        )
