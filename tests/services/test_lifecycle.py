"""lifecycle against a real nats-server and database, fed by the real identify service."""

from __future__ import annotations

import json
from datetime import datetime

import nats
from nats.errors import TimeoutError as NatsTimeout
from sqlalchemy import select

from services.lifecycle.models import messaging
from shared.events.envelope import make_event
from shared.events.messaging import whole_claim
from tests.support import wait_until


async def _stage(client, customer_id, stage):
    response = await client.get(f"/v1/customers/{customer_id}/lifecycle")
    return response.json() if response.status_code == 200 and response.json()["stage"] == stage else None


def _purchase(customer_id, n):
    return {
        "customer_id": customer_id,
        "amount": "10.00",
        "currency": "USD",
        "occurred_at": f"2026-01-0{n}T10:00:00Z",
        "external_id": f"{customer_id}-{n}",
    }


async def _read_stream(url: str, subject: str, count: int, *, settle: bool = False) -> list[dict]:
    """The events on `subject` in the CRM stream, polled until there are `count` of them.

    With `settle`, one more pull afterwards proves there is no further event.
    """

    nc = await nats.connect(url)
    try:
        sub = await nc.jetstream().pull_subscribe(subject, stream="CRM")
        seen: list[dict] = []

        async def pull(want: int) -> bool:
            try:
                msgs = await sub.fetch(want, timeout=0.5)
            except (NatsTimeout, TimeoutError):  # nats-py's fetch may raise the plain one when its deadline ran out
                return False
            for msg in msgs:
                await msg.ack()
                seen.append(json.loads(msg.data))
            return True

        await wait_until(lambda: _pulled(pull, seen, count), what=f"{count} events on {subject}")
        if settle:
            assert not await pull(10), f"more than {count} events on {subject}: {seen}"
        return seen
    finally:
        await nc.close()


async def _pulled(pull, seen, count) -> bool:
    if len(seen) < count:
        await pull(count - len(seen))
    return len(seen) >= count


async def _handled(service, event, purpose: str | None = None) -> bool:
    """`event` was applied: recorded in the inbox of the service's consumer `purpose`; without
    one, of every consumer of the service that takes the event's type (an id alone: of any).

    A purchase reaches lifecycle's stages, profiles, loyalty and analytics consumers, and one
    may have handled it while another has not yet: wait for the one whose effect is read."""

    inbox = messaging.inbox
    event_id = event if isinstance(event, str) else event.id
    if purpose is not None:
        wanted = {f"{service.settings.service}-{purpose}"}
    elif isinstance(event, str):
        wanted = None
    else:
        wanted = {
            spec.durable(service.settings.service)
            for runner in service.runtime.consumers
            for spec in runner.group.specs
            if event.type in spec.all_subjects
        }
    async with service.runtime.db.reader() as session:
        rows = await session.execute(select(inbox.c.consumer).where(inbox.c.event_id == event_id))
        seen = set(rows.scalars())
    # An event that all the specs of a shared durable applied together is one row for them all
    # (shared/events/messaging.py `claim_events`); every spec that takes its type applied it.
    seen |= {
        name for runner in service.runtime.consumers if whole_claim(runner.name) in seen for _, name, _ in runner.routes
    }
    return bool(seen) if wanted is None else wanted <= seen


async def test_a_customer_moves_from_prospect_to_new_to_active(suite):
    identify = await suite.start("identify")
    lifecycle = await suite.start("lifecycle")
    customer = (await identify.client.post("/v1/customers", json={"email": "x@example.com"})).json()
    prospect = await wait_until(lambda: _stage(lifecycle.client, customer["id"], "prospect"), what="prospect")
    assert prospect["customer_id"] == customer["id"]
    assert [(h["from"], h["to"]) for h in prospect["history"]] == [(None, "prospect")]

    first = await identify.client.post("/v1/transactions", json=_purchase(customer["id"], 1))
    assert first.status_code == 201
    await wait_until(lambda: _stage(lifecycle.client, customer["id"], "new"), what="new")
    second = await identify.client.post("/v1/transactions", json=_purchase(customer["id"], 2))
    assert second.status_code == 201
    body = await wait_until(lambda: _stage(lifecycle.client, customer["id"], "active"), what="active")
    assert [(h["from"], h["to"]) for h in body["history"]] == [
        (None, "prospect"),
        ("prospect", "new"),
        ("new", "active"),
    ]
    assert body["purchase_count"] == 2
    ats = [h["at"] for h in body["history"]]
    assert ats == sorted(ats)

    # Each transition names the identify event that caused it.
    created = await _read_stream(suite.nats.url, "crm.identify.customer.created", 1)
    purchases = await _read_stream(suite.nats.url, "crm.identify.transaction.recorded", 2)
    assert [h["event_id"] for h in body["history"]] == [created[0]["id"], purchases[0]["id"], purchases[1]["id"]]
    assert [p["data"]["purchase_count"] for p in purchases] == [1, 2]

    # A third purchase changes nothing: active stays active, no new transition, no new event.
    await identify.client.post("/v1/transactions", json=_purchase(customer["id"], 3))
    third = (await _read_stream(suite.nats.url, "crm.identify.transaction.recorded", 3))[2]
    await wait_until(lambda: _handled(lifecycle, third["id"], "stages"), what="third purchase applied")
    again = (await lifecycle.client.get(f"/v1/customers/{customer['id']}/lifecycle")).json()
    assert again["stage"] == "active" and again["purchase_count"] == 3
    assert again["history"] == body["history"]

    await wait_until(lambda: _no_pending(lifecycle), what="lifecycle's outbox published")
    events = await _read_stream(suite.nats.url, "crm.lifecycle.stage.changed", 3, settle=True)
    assert [(e["data"]["from_stage"], e["data"]["to_stage"]) for e in events] == [
        (None, "prospect"),
        ("prospect", "new"),
        ("new", "active"),
    ]
    assert [e["data"]["cause_event_id"] for e in events] == [h["event_id"] for h in body["history"]]
    assert [datetime.fromisoformat(e["data"]["at"]) for e in events] == [
        datetime.fromisoformat(h["at"]) for h in body["history"]
    ]
    for event in events:
        assert event["source"] == "/valuechain/lifecycle"
        assert event["subject"] == customer["id"] and event["data"]["customer_id"] == customer["id"]
        assert event["causationid"] == event["data"]["cause_event_id"]
        assert event["dataschema"] == "http://127.0.0.1:8000/v1/schemas/crm.lifecycle.stage.changed/v1.json"


async def _no_pending(service) -> bool:
    return await service.runtime.relay.pending_count() == 0


async def _publish(url: str, event) -> None:
    nc = await nats.connect(url)
    try:
        await nc.jetstream().publish(event.type, event.to_json(), headers={"Nats-Msg-Id": event.id})
    finally:
        await nc.close()


async def test_stage_changes_have_a_durable_of_their_own_and_go_on_while_the_others_wait(suite):
    """`lifecycle-stage-changes` applies and announces the stage changes on its own, with its
    own linger (`consumer_group_linger_s`): the rest of lifecycle's specs, on `lifecycle-events`
    with the service's linger, can stall without holding them back, and catch up after."""

    import importlib

    from services.lifecycle.stages.handlers import STAGE_CHANGES
    from shared.settings import LifecycleSettings

    defaults = LifecycleSettings.model_fields
    assert defaults["consumer_linger_s"].default == 0.25
    assert defaults["consumer_group_linger_s"].default_factory() == {STAGE_CHANGES: 0.015}

    identify = await suite.start("identify")
    lifecycle = await suite.start("lifecycle", consumer_linger_s=0.05, consumer_group_linger_s={STAGE_CHANGES: 0.01})
    runners = {runner.name: runner for runner in lifecycle.runtime.consumers}
    assert set(runners) == {"lifecycle-events", "lifecycle-stage-changes"}
    assert [spec.purpose for spec in runners["lifecycle-stage-changes"].group.specs] == ["stages"]
    assert (runners["lifecycle-stage-changes"].linger_s, runners["lifecycle-events"].linger_s) == (0.01, 0.05)

    admin = await nats.connect(suite.nats.url)
    try:
        await admin.jetstream().delete_consumer("CRM", "lifecycle-events")  # the others stall
        runners["lifecycle-events"]._checked_generation = -1  # as after a reconnect: it looks again
        await wait_until(lambda: runners["lifecycle-events"].problem is not None, what="lifecycle-events missing")
        customer = (await identify.client.post("/v1/customers", json={"email": "apart@example.com"})).json()
        assert (await identify.client.post("/v1/transactions", json=_purchase(customer["id"], 1))).status_code == 201
        await wait_until(lambda: _stage(lifecycle.client, customer["id"], "new"), what="new, from its own durable")
        (purchase,) = await _read_stream(suite.nats.url, "crm.identify.transaction.recorded", 1)
        assert await _handled(lifecycle, purchase["id"], "stages")
        assert not await _handled(lifecycle, purchase["id"], "loyalty")
        assert not await _handled(lifecycle, purchase["id"], "profiles")
        await wait_until(lambda: _no_pending(lifecycle), what="lifecycle's outbox published")
        (changed,) = [
            event
            for event in await _read_stream(suite.nats.url, "crm.lifecycle.stage.changed", 2)
            if event["data"]["to_stage"] == "new"
        ]
        assert changed["data"]["cause_event_id"] == purchase["id"]

        definition = importlib.import_module("services.lifecycle.main").DEFINITION
        await suite.provision(definition, lifecycle.settings)  # back, from the stream's start
        await wait_until(lambda: _handled(lifecycle, purchase["id"]), what="the others caught up")
    finally:
        await admin.close()


async def test_a_purchase_for_a_customer_lifecycle_never_saw_still_places_it(suite):
    lifecycle = await suite.start("lifecycle")
    purchase = make_event(
        service="identify",
        type="crm.identify.transaction.recorded",
        data={
            "id": "t-1",
            "customer_id": "stranger",
            "amount": "5",
            "currency": "EUR",
            "occurred_at": "2026-01-01T00:00:00Z",
            "purchase_count": 2,
        },
        subject="stranger",
    )
    await _publish(suite.nats.url, purchase)
    body = await wait_until(lambda: _stage(lifecycle.client, "stranger", "active"), what="placed as active")
    assert [(h["from"], h["to"], h["event_id"]) for h in body["history"]] == [(None, "active", purchase.id)]

    # The late customer.created and an older purchase never move the customer back.
    late = [
        make_event(
            service="identify",
            type="crm.identify.customer.created",
            data={"id": "stranger", "email": "s@example.com", "created_at": "2025-12-31T00:00:00Z"},
            subject="stranger",
        ),
        make_event(
            service="identify",
            type="crm.identify.transaction.recorded",
            data={
                "id": "t-0",
                "customer_id": "stranger",
                "amount": "5",
                "currency": "EUR",
                "occurred_at": "2025-12-31T12:00:00Z",
                "purchase_count": 1,
            },
            subject="stranger",
        ),
    ]
    for event in late:
        await _publish(suite.nats.url, event)
    for event in late:
        await wait_until(lambda e=event: _handled(lifecycle, e), what=f"{event.type} applied")
    after = (await lifecycle.client.get("/v1/customers/stranger/lifecycle")).json()
    assert after["stage"] == "active" and after["purchase_count"] == 2
    assert after["history"] == body["history"]

    # A first purchase of another unknown customer places it at new.
    newcomer = make_event(
        service="identify",
        type="crm.identify.transaction.recorded",
        data={
            "id": "t-2",
            "customer_id": "newcomer",
            "amount": "5",
            "currency": "EUR",
            "occurred_at": "2026-01-01T00:00:00Z",
            "purchase_count": 1,
        },
        subject="newcomer",
    )
    await _publish(suite.nats.url, newcomer)
    placed = await wait_until(lambda: _stage(lifecycle.client, "newcomer", "new"), what="placed as new")
    assert [(h["from"], h["to"], h["event_id"]) for h in placed["history"]] == [(None, "new", newcomer.id)]


async def test_an_unknown_customer_is_404(suite):
    lifecycle = await suite.start("lifecycle")
    response = await lifecycle.client.get("/v1/customers/nobody/lifecycle")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert "nobody" in response.json()["detail"]


async def test_customers_are_listed_by_stage(suite):
    identify = await suite.start("identify")
    lifecycle = await suite.start("lifecycle")
    ids = []
    for n in range(4):
        ids.append((await identify.client.post("/v1/customers", json={"external_id": f"stage-{n}"})).json()["id"])
    for n, customer_id in enumerate(ids[:3]):  # 0: one purchase (new); 1, 2: two (active); 3: none
        for k in range(1, 2 + (n > 0)):
            assert (await identify.client.post("/v1/transactions", json=_purchase(customer_id, k))).status_code == 201
    for customer_id, stage in zip(ids, ("new", "active", "active", "prospect")):
        await wait_until(lambda c=customer_id, s=stage: _stage(lifecycle.client, c, s), what=f"{customer_id} {stage}")

    async def listed(**params):
        items, cursor = [], None
        while True:
            page = await lifecycle.client.get(
                "/v1/lifecycle/customers", params={**params, "limit": 1, **({"cursor": cursor} if cursor else {})}
            )
            assert page.status_code == 200, page.text
            items += page.json()["items"]
            if (cursor := page.json()["next_cursor"]) is None:
                return items

    active = await listed(stage="active")
    assert [item["customer_id"] for item in active] == sorted(ids[1:3])
    for item in active:
        history = (await lifecycle.client.get(f"/v1/customers/{item['customer_id']}/lifecycle")).json()["history"]
        assert item["stage"] == "active"
        assert datetime.fromisoformat(item["since"]) == datetime.fromisoformat(history[-1]["at"])
    assert [item["customer_id"] for item in await listed(stage="prospect")] == [ids[3]]
    assert await listed(stage="churned") == []  # a stage of the contract nobody is in yet
    everyone = await listed()
    assert {item["customer_id"]: item["stage"] for item in everyone} == dict(
        zip(ids, ("new", "active", "active", "prospect"))
    )
    assert [item["customer_id"] for item in everyone] == sorted(ids)

    unknown = await lifecycle.client.get("/v1/lifecycle/customers", params={"stage": "lapsed"})
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["field"] == "query.stage"


async def test_a_voided_purchase_lowers_the_count_and_never_moves_the_stage_back(suite):
    lifecycle = await suite.start("lifecycle")
    events = [
        make_event(
            service="identify",
            type="crm.identify.transaction.recorded",
            data={
                "id": f"t-{n}",
                "customer_id": "c-1",
                "amount": "5",
                "currency": "USD",
                "occurred_at": "2026-01-01T00:00:00Z",
                "purchase_count": n,
                "reporting_amount": "5",
                "reporting_currency": "USD",
            },
            subject="c-1",
        )
        for n in (1, 2)
    ]
    voided = make_event(
        service="identify",
        type="crm.identify.transaction.voided",
        data={
            "transaction_id": "t-2",
            "customer_id": "c-1",
            "amount": "5",
            "currency": "USD",
            "reporting_amount": "5",
            "reporting_currency": "USD",
            "reason": "entered twice",
            "voided_at": "2026-01-02T00:00:00Z",
            "purchase_count": 1,
        },
        subject="c-1",
    )
    for event in (*events, voided):
        await _publish(suite.nats.url, event)
    await wait_until(lambda: _handled(lifecycle, voided), what="void applied")
    after = (await lifecycle.client.get("/v1/customers/c-1/lifecycle")).json()
    assert after["stage"] == "active" and after["purchase_count"] == 1
    assert [h["to"] for h in after["history"]] == ["new", "active"]
    # A void of a customer lifecycle never saw places nobody.
    stranger = make_event(
        service="identify",
        type="crm.identify.transaction.voided",
        data={**voided.data, "customer_id": "stranger", "purchase_count": 0},
        subject="stranger",
    )
    await _publish(suite.nats.url, stranger)
    await wait_until(lambda: _handled(lifecycle, stranger), what="void of a stranger handled")
    assert (await lifecycle.client.get("/v1/customers/stranger/lifecycle")).status_code == 404
