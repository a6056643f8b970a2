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


RECEIVERS: list[Receiver] = []  # the open receivers: each verifies every delivery to a subscribed path


async def subscribe(network, url: str, types=("crm.identify.customer.*",), headers=None, **extra) -> dict:
    response = await network.client.post(
        "/v1/webhooks", json={"url": url, "event_types": list(types), **extra}, headers=headers or {}
    )
    assert response.status_code == 201, response.text
    made = response.json()
    for receiver in RECEIVERS:
        if url.startswith(receiver.url("/")):
            receiver.signed_by("/" + url.removeprefix(receiver.url("/")), made["secret"])
    return made


@pytest.fixture(autouse=True)
def _receivers(monkeypatch):
    """Every Receiver a test opens is told the secret of each subscription made to it."""

    opened = Receiver.__aenter__

    async def enter(self):
        await opened(self)
        RECEIVERS.append(self)
        return self

    monkeypatch.setattr(Receiver, "__aenter__", enter)
    yield
    RECEIVERS.clear()


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

        log = await wait_until(lambda: _deliveries(network, made["id"]), what="the attempt in the delivery log")
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
            assert response.json() == {
                "error": "not_found",
                "detail": f"no webhook subscription with id {theirs['id']}",
            }

        # A key limited to purchase events subscribes to those only: a filter reaching any other
        # type is 403 (refused, not narrowed), on creation as on a change, and nothing is made.
        limited = {**PARTNER, "x-valuechain-event-types": "crm.identify.transaction.*"}
        for types in (["crm.identify.customer.created"], ["crm.identify.>"]):
            refused = await network.client.post(
                "/v1/webhooks", json={"url": receiver.url("/limited"), "event_types": types}, headers=limited
            )
            assert refused.status_code == 403 and refused.json()["error"] == "event_type_not_allowed", refused.text
        own = await subscribe(network, receiver.url("/limited"), ["crm.identify.transaction.*"], headers=limited)
        widened = await network.client.patch(
            f"/v1/webhooks/{own['id']}", json={"event_types": ["crm.identify.customer.*"]}, headers=limited
        )
        assert widened.status_code == 403 and widened.json()["error"] == "event_type_not_allowed"
        kept = (await network.client.get(f"/v1/webhooks/{own['id']}", headers=limited)).json()
        assert kept["event_types"] == ["crm.identify.transaction.*"]
        listed = (await network.client.get("/v1/webhooks", headers=PARTNER)).json()["items"]
        assert {w["id"] for w in listed} == {mine["id"], own["id"]}
        deleted = await network.client.delete(f"/v1/webhooks/{own['id']}", headers=limited)
        assert deleted.status_code == 204

        grace = await customer(identify, "grace", email="grace@example.com", name="Grace")
        [call] = await receiver.wait_for("/acme", 1)
        event = verified(mine["secret"], call)
        assert event["data"]["id"] == grace["id"]
        assert event["data"]["email"] is None and event["data"]["name"] is None  # no pii:read


REFUSED = [
    (
        {"event_types": ["crm.identify.customer.created", "crm.identify.customer.exploded"]},
        "body.event_types.1",
        "validation_error",
    ),
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
]


async def test_a_refused_subscription_answers_422_naming_the_field_and_writes_nothing(suite):
    import nats

    network = await start_network(suite)
    for body, field, error in REFUSED:
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


def answering(*answers: tuple[int, dict[str, str]]):
    """A receiver's answer: these statuses (and headers) in turn, then 200."""

    queue = list(answers)

    async def answer(request):
        if queue:
            status, headers = queue.pop(0)
            return status, headers, f"answered {status}"
        return 200, {}, "thanks"

    return answer


FAST = {"webhook_retry_schedule_s": (0.05, 0.05, 0.05), "webhook_retry_jitter": 0.0}


async def test_a_failed_delivery_is_retried_on_the_schedule_honouring_retry_after(suite):
    identify = await suite.start("identify")
    network = await start_network(suite, **FAST)
    async with Receiver() as receiver:
        receiver.answers["/hook"] = answering((500, {}), (429, {"Retry-After": "1"}))
        made = await subscribe(network, receiver.url("/hook"))
        await customer(identify, "retried")
        calls = await receiver.wait_for("/hook", 3)
        events = [verified(made["secret"], call) for call in calls]
        assert len({event["id"] for event in events}) == 1  # the same event, the same webhook-id
        log = await wait_until(lambda: _log_of(network, made["id"], 3), what="three attempts logged")
        assert [(d["attempt"], d["outcome"], d["status_code"]) for d in log] == [
            (1, "failed", 500),
            (2, "failed", 429),
            (3, "delivered", 200),
        ]
        assert log[0]["error"] == "HTTP 500" and log[0]["response_body"] == "answered 500"
        # The 429's Retry-After (1 s) instead of the schedule's 0.05 s.
        waited = _seconds(log[1]["next_attempt_at"]) - _seconds(log[1]["attempted_at"])
        assert 0.9 <= waited <= 1.5, waited


async def _log_of(network, webhook_id: str, count: int) -> list[dict] | None:
    """The subscription's attempts, oldest first, once there are `count`."""

    log = await _deliveries(network, webhook_id)
    return list(reversed(log)) if len(log) >= count else None


def _seconds(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp).timestamp()


async def test_abort_message_410_and_the_end_of_the_schedule_stop_the_retries(suite):
    import nats

    identify = await suite.start("identify")
    network = await start_network(suite, **FAST)
    async with Receiver() as receiver:
        receiver.answers["/abort"] = answering((500, {"webhook-delivery": "abort-message"}))

        async def always_500(request):
            return 500, {}, "down"

        receiver.answers["/dead"] = always_500
        receiver.answers["/gone"] = answering((410, {}))
        abort = await subscribe(network, receiver.url("/abort"))
        dead = await subscribe(network, receiver.url("/dead"))
        gone = await subscribe(network, receiver.url("/gone"))
        await customer(identify, "first")

        log = await wait_until(lambda: _log_of(network, dead["id"], 4), what="every attempt the schedule has")
        assert [(d["attempt"], d["outcome"]) for d in log] == [
            (1, "failed"),
            (2, "failed"),
            (3, "failed"),
            (4, "exhausted"),
        ]
        assert log[-1]["next_attempt_at"] is None
        assert [d["outcome"] for d in await _deliveries(network, abort["id"])] == ["aborted"]

        # 410: disabled, with an event that says why.
        disabled = await wait_until(lambda: _disabled(network, gone["id"]), what="the 410 disables the subscription")
        assert disabled["disabled_reason"].startswith("gone")
        [announced] = await _stream(suite.nats.url, "crm.network.webhook.disabled", 1)
        assert announced["data"]["id"] == gone["id"] and announced["data"]["reason"] == "gone"

        # A second event: the aborted one is not retried, the disabled subscription gets nothing.
        await customer(identify, "second")
        await receiver.wait_for("/abort", 2)
        nc = await nats.connect(suite.nats.url)
        try:
            js = nc.jetstream()

            async def settled():
                info = await js.consumer_info("CRM", f"network-webhook-{abort['id']}")
                return info.num_ack_pending == 0 and info.num_pending == 0

            await wait_until(settled, what="the aborted message terminated, the second acked")
        finally:
            await nc.close()
        assert len(receiver.on("/abort")) == 2 and len(receiver.on("/gone")) == 1

        # Enabled again, it delivers what waited (the 410'd event, then the second).
        response = await network.client.patch(f"/v1/webhooks/{gone['id']}", json={"enabled": True})
        assert response.status_code == 200 and response.json()["enabled"] is True
        calls = await receiver.wait_for("/gone", 3)
        assert len({verified(gone["secret"], call)["id"] for call in calls}) == 2


async def test_a_delivery_cut_short_before_it_ran_gives_its_message_back_at_once(suite):
    """A worker stopped (disabled, changed) right after its pull brought a message, before
    the delivery's task ran a line: the message goes back to the consumer at once. Held, it
    waited out ack_wait (80 s) and a re-enabled subscription got nothing meanwhile."""

    import nats

    identify = await suite.start("identify")
    network = await start_network(suite)
    async with Receiver() as receiver:
        made = await _paused(network, receiver)
        await customer(identify, "waiting")

        nc = await nats.connect(suite.nats.url)
        try:
            js = nc.jetstream()
            consumer = f"network-webhook-{made['id']}"
            pull = await js.pull_subscribe_bind(consumer, stream="CRM")
            [msg] = await pull.fetch(1, timeout=10)
            worker = await _worker_of(network, made)
            worker.spawn(msg)
            await worker.stop()  # before the delivery's task was ever scheduled

            # Given back, another pull has it at once; held, not before ack_wait (80 s).
            [again] = await pull.fetch(1, timeout=10)
            assert again.metadata.sequence.stream == msg.metadata.sequence.stream
            assert again.metadata.num_delivered > msg.metadata.num_delivered
            await again.ack()
        finally:
            await nc.close()
        assert receiver.on("/hook") == []


async def test_a_pull_loop_closed_without_its_event_loop_closes_quietly(suite):
    """A pull loop the garbage collector closes after its event loop ended (never cancelled)
    finishes without a loop: it used to start its unsubscribe task there and raised "no running
    event loop", a warning at whichever later test the collector ran in."""

    import threading

    network = await start_network(suite)
    async with Receiver() as receiver:
        made = await _paused(network, receiver)
        worker = await _worker_of(network, made)
        free = worker.free
        task = asyncio.create_task(worker.pull(f"network-webhook-{made['id']}", replay=False))
        await wait_until(lambda: worker.free < free, what="its pull request open")

        # Closed from a thread with no event loop while this loop is blocked, as the collector
        # closes a coroutine whose loop is gone.
        raised: list[BaseException] = []

        def close() -> None:
            try:
                task.get_coro().close()
            except BaseException as exc:  # the test reports it
                raised.append(exc)

        closer = threading.Thread(target=close)
        closer.start()
        closer.join()
        assert raised == []
        assert worker.free == free  # its slots were given back on the way out
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await worker.client.close()


async def _paused(network, receiver) -> dict:
    """A subscription made and disabled, its worker stopped: its consumer stays, nobody pulls it."""

    made = await subscribe(network, receiver.url("/hook"))
    paused = await network.client.patch(f"/v1/webhooks/{made['id']}", json={"enabled": False})
    assert paused.status_code == 200, paused.text
    dispatcher = network.runtime.state.webhooks
    await wait_until(lambda: made["id"] not in dispatcher.workers, what="its worker stopped")
    return made


async def _worker_of(network, made: dict):
    """A worker of the subscription's own, outside the dispatcher (which left it stopped)."""

    from services.network.webhooks.delivery import Snapshot, Worker
    from services.network.webhooks.models import WebhookSubscription

    async with network.runtime.db.reader() as session:
        row = await session.get(WebhookSubscription, made["id"])
    return Worker(network.runtime.state.webhooks, Snapshot.of(row))


async def _disabled(network, webhook_id: str) -> dict | None:
    shown = (await network.client.get(f"/v1/webhooks/{webhook_id}")).json()
    return shown if not shown["enabled"] else None


async def _stream(nats_url: str, subject: str, count: int) -> list[dict]:
    from tests.services.test_network import stream_events

    return await wait_until(
        lambda: _at_least(stream_events(nats_url, subject), count), what=f"{count} {subject} on the stream"
    )


async def _at_least(events, count: int):
    found = await events
    return found if len(found) >= count else None


async def test_a_subscription_failing_for_the_configured_days_is_disabled_with_an_event(suite):
    identify = await suite.start("identify")
    # A tiny "day" count: ~0.3 s of nothing but failures.
    network = await start_network(
        suite, webhook_retry_schedule_s=(0.1,) * 50, webhook_retry_jitter=0.0, webhook_disable_after_days=0.3 / 86400
    )
    async with Receiver() as receiver:

        async def down(request):
            return 503, {}, "down"

        receiver.answers["/down"] = down
        made = await subscribe(network, receiver.url("/down"))
        await customer(identify, "failing")
        shown = await wait_until(lambda: _disabled(network, made["id"]), what="disabled after the failing days")
        assert shown["disabled_reason"].startswith("failing: every delivery failed since")
        [announced] = await _stream(suite.nats.url, "crm.network.webhook.disabled", 1)
        assert announced["data"]["reason"] == "failing" and announced["data"]["id"] == made["id"]


async def test_the_circuit_breaker_stops_calling_a_failing_endpoint_then_probes_it(suite):
    identify = await suite.start("identify")
    network = await start_network(
        suite,
        webhook_retry_schedule_s=(0.02,) * 20,
        webhook_retry_jitter=0.0,
        webhook_breaker_failures=3,
        webhook_breaker_cooldown_s=2.0,
    )
    async with Receiver() as receiver:
        healthy = {"now": False}

        async def flaky(request):
            return (200, {}, "ok") if healthy["now"] else (500, {}, "down")

        receiver.answers["/flaky"] = flaky
        made = await subscribe(network, receiver.url("/flaky"))
        witness = await subscribe(network, receiver.url("/witness"))
        await customer(identify, "one")
        await receiver.wait_for("/flaky", 3)
        # While the breaker is open, later events reach the other subscription and not this one.
        for n in range(5):
            await customer(identify, f"later-{n}")
        await receiver.wait_for("/witness", 6)
        assert len(receiver.on("/flaky")) == 3
        healthy["now"] = True
        calls = await receiver.wait_for("/flaky", 3 + 6)  # the probe, then everything that waited
        assert len({verified(made["secret"], call)["id"] for call in calls[3:]}) == 6
        assert verified(witness["secret"], receiver.on("/witness")[0])


async def test_a_rate_limited_subscription_spaces_its_deliveries(suite):
    identify = await suite.start("identify")
    network = await start_network(suite)
    async with Receiver() as receiver:
        made = await subscribe(network, receiver.url("/slowly"), rate_limit=2)
        for n in range(4):
            await customer(identify, f"limited-{n}")
        await receiver.wait_for("/slowly", 4)
        log = await wait_until(lambda: _log_of(network, made["id"], 4), what="four attempts logged")
        # A bucket of 2, refilled at 2/s: the 4th goes out at least ~1 s after the 1st.
        times = sorted(_seconds(d["attempted_at"]) for d in log)
        assert times[-1] - times[0] >= 0.9


async def test_secret_rotation_signs_with_both_secrets_for_the_overlap(suite):
    identify = await suite.start("identify")
    network = await start_network(suite)
    async with Receiver() as receiver:
        made = await subscribe(network, receiver.url("/hook"))
        rotated = await network.client.post(f"/v1/webhooks/{made['id']}/rotate-secret")
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()
        assert new["secret"] != made["secret"] and new["previous_secret_expires_at"]
        await wait_until(lambda: _restarted_worker(network, made["id"], new["updated_at"]), what="new secret used")
        await customer(identify, "rotated")
        [call] = await receiver.wait_for("/hook", 1)
        assert len(call.headers["webhook-signature"].split(" ")) == 2
        assert verified(made["secret"], call) == verified(new["secret"], call)


def _restarted_worker(network, webhook_id: str, updated_at: str) -> bool:
    worker = network.runtime.state.webhooks.workers.get(webhook_id)
    return worker is not None and worker.sub.updated_at.isoformat().startswith(updated_at[:19])


async def test_a_hanging_endpoint_never_delays_the_other_subscriptions(suite):
    """100 subscriptions, one of which hangs 10 s on every call: the 99 others all have the
    event while the slow one's call is still hanging (proven by state, not by timing)."""

    identify = await suite.start("identify")
    network = await start_network(suite, webhook_read_timeout_s=30.0)
    async with Receiver() as receiver:
        hanging = {"started": 0, "finished": 0}

        async def hang(request):
            hanging["started"] += 1
            await asyncio.sleep(10)
            hanging["finished"] += 1
            return 200, {}, "late"

        receiver.answers["/slow"] = hang
        slow = await subscribe(network, receiver.url("/slow"))
        others = [await subscribe(network, receiver.url(f"/fast/{n}")) for n in range(99)]
        await wait_until(lambda: len(network.runtime.state.webhooks.workers) == 100, what="100 workers")
        ada = await customer(identify, "isolated")
        for made in others:
            [call] = await receiver.wait_for(f"/fast/{others.index(made)}", 1)
            assert verified(made["secret"], call)["data"]["id"] == ada["id"]
        assert hanging == {"started": 1, "finished": 0}
        assert verified(slow["secret"], receiver.on("/slow")[0])["data"]["id"] == ada["id"]


async def test_a_restart_of_network_loses_nothing_and_keeps_the_retry_schedule(suite):
    from services.network.main import DEFINITION
    from shared.service.runtime import start_runtime, stop_runtime

    identify = await suite.start("identify")
    network = await start_network(suite, webhook_retry_schedule_s=(1.0,), webhook_retry_jitter=0.0)
    async with Receiver() as receiver:
        receiver.answers["/hook"] = answering((500, {}))
        made = await subscribe(network, receiver.url("/hook"))
        first = await customer(identify, "before")
        await receiver.wait_for("/hook", 1)
        await wait_until(lambda: _log_of(network, made["id"], 1), what="the failed attempt logged")

        await stop_runtime(network.app.state.runtime)  # network is down: the nak's delay runs in NATS
        second = await customer(identify, "while-down")
        network.app.state.runtime = await start_runtime(DEFINITION, network.settings)

        calls = await receiver.wait_for("/hook", 3)
        delivered = {verified(made["secret"], call)["data"]["id"] for call in calls}
        assert delivered == {first["id"], second["id"]}
        log = await wait_until(lambda: _log_of(network, made["id"], 3), what="three attempts logged")
        assert sorted((d["attempt"], d["outcome"]) for d in log) == [(1, "delivered"), (1, "failed"), (2, "delivered")]


async def test_the_address_is_checked_again_at_delivery_time(suite):
    """A host allowed when subscribed but not any more (here: the allow-list shrank; in life,
    DNS rebinding): the delivery is refused and logged as such."""

    from services.network.main import DEFINITION
    from shared.service.runtime import start_runtime, stop_runtime

    identify = await suite.start("identify")
    network = await start_network(suite, webhook_retry_schedule_s=(60.0,))
    async with Receiver() as receiver:
        made = await subscribe(network, receiver.url("/hook"))
        await stop_runtime(network.app.state.runtime)
        strict = network.settings.model_copy(update={"webhook_allow_hosts": ()})
        network.app.state.runtime = await start_runtime(DEFINITION, strict)
        await customer(identify, "refused")
        [attempt] = await wait_until(lambda: _log_of(network, made["id"], 1), what="the refused attempt")
        assert attempt["outcome"] == "refused" and attempt["error"].startswith("url_not_allowed")
        assert receiver.calls == []


async def test_retry_resends_one_logged_delivery(suite):
    identify = await suite.start("identify")
    network = await start_network(suite)
    async with Receiver() as receiver:
        made = await subscribe(network, receiver.url("/hook"))
        await customer(identify, "again")
        [first] = await receiver.wait_for("/hook", 1)
        [logged] = await wait_until(lambda: _log_of(network, made["id"], 1), what="the attempt logged")
        response = await network.client.post(f"/v1/webhooks/{made['id']}/deliveries/{logged['id']}/retry")
        assert response.status_code == 201, response.text
        again = response.json()
        assert again["attempt"] == 2 and again["outcome"] == "delivered" and again["event_id"] == logged["event_id"]
        calls = receiver.on("/hook")
        assert len(calls) == 2 and verified(made["secret"], calls[1]) == verified(made["secret"], first)
        assert [d["id"] for d in await _deliveries(network, made["id"])] == [again["id"], logged["id"]]
        missing = await network.client.post(f"/v1/webhooks/{made['id']}/deliveries/nope/retry")
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"


async def test_replay_resends_what_matches_from_a_cursor_or_a_time_within_retention(suite):
    import nats

    identify = await suite.start("identify")
    network = await start_network(suite)
    async with Receiver() as receiver:
        before = [await customer(identify, f"old-{n}") for n in range(3)]
        await _stream(suite.nats.url, "crm.identify.customer.created", 3)  # published (the relay is async)
        made = await subscribe(network, receiver.url("/hook"), ["crm.identify.customer.created"])  # from now on
        now = await customer(identify, "new")
        await receiver.wait_for("/hook", 1)

        replayed = await network.client.post(f"/v1/webhooks/{made['id']}/replay", json={"after": "0"})
        assert replayed.status_code == 202, replayed.text
        assert replayed.json()["oldest"] == "0"
        calls = await receiver.wait_for("/hook", 1 + 4)
        ids = [verified(made["secret"], call)["data"]["id"] for call in calls[1:]]
        assert sorted(ids) == sorted([c["id"] for c in before] + [now["id"]])

        # The replay consumer goes when it is done; then one from a time.
        await wait_until(lambda: not _replaying(network, made["id"]), what="the replay done")
        nc = await nats.connect(suite.nats.url)
        try:
            js = nc.jetstream()
            await wait_until(lambda: _no_replay_consumer(js, made["id"]), what="the replay consumer deleted")
            message = await js.get_msg("CRM", seq=1)
            at = json_time(message.data)
            again = await network.client.post(f"/v1/webhooks/{made['id']}/replay", json={"since": at})
            assert again.status_code == 202, again.text
            await receiver.wait_for("/hook", 5 + 4)

            # Beyond retention: the stream lost its front.
            await wait_until(lambda: _no_replay_consumer(js, made["id"]), what="the second replay done")
            await js.purge_stream("CRM", seq=3)  # everything before sequence 3 goes
        finally:
            await nc.close()
        for body in ({"after": "0"}, {"since": at}):
            refused = await network.client.post(f"/v1/webhooks/{made['id']}/replay", json=body)
            assert refused.status_code == 409, refused.text
            assert refused.json()["error"] == "beyond_retention"
            assert "oldest event kept follows cursor 2" in refused.json()["detail"]
        ok = await network.client.post(f"/v1/webhooks/{made['id']}/replay", json={"after": "2"})
        assert ok.status_code == 202 and ok.json()["oldest"] == "2"
        for body in ({}, {"after": "1", "since": at}, {"after": "x"}):
            bad = await network.client.post(f"/v1/webhooks/{made['id']}/replay", json=body)
            assert bad.status_code == 422, bad.text


async def test_a_replay_of_an_idle_subscription_is_not_starved_by_its_live_pull(suite):
    """The live loop's long pull (5 s) of an idle subscription once held every in-flight slot
    and took them all back the moment it ended: a replay then waited for a live event that
    might never come. The two loops share the slots while a replay runs."""

    identify = await suite.start("identify")
    network = await start_network(suite)
    async with Receiver() as receiver:
        old = await customer(identify, "before-the-subscription")
        await _stream(suite.nats.url, "crm.identify.customer.created", 1)
        made = await subscribe(network, receiver.url("/idle"), ["crm.identify.customer.created"])
        # The worker's live pull is open and holds the slots: nothing is published meanwhile.
        await wait_until(lambda: _live_pull_open(network, made["id"]), what="the live pull open")

        replayed = await network.client.post(f"/v1/webhooks/{made['id']}/replay", json={"after": "0"})
        assert replayed.status_code == 202, replayed.text
        [call] = await receiver.wait_for("/idle", 1, timeout=15)
        assert verified(made["secret"], call)["data"]["id"] == old["id"]


def _live_pull_open(network, webhook_id: str) -> bool:
    worker = network.runtime.state.webhooks.workers.get(webhook_id)
    return worker is not None and worker.free == 0 and not worker.tasks


def json_time(raw: bytes) -> str:
    import json

    return json.loads(raw)["time"]


def _replaying(network, webhook_id: str) -> bool:
    worker = network.runtime.state.webhooks.workers.get(webhook_id)
    loop = worker.loops.get("replay") if worker else None
    return loop is not None and not loop.done()


async def _no_consumer(js, webhook_id: str, suffix: str = "") -> bool:
    from nats.js.errors import NotFoundError

    try:
        await js.consumer_info("CRM", f"network-webhook-{webhook_id}{suffix}")
    except NotFoundError:
        return True
    return False


def _no_replay_consumer(js, webhook_id: str):
    return _no_consumer(js, webhook_id, "-replay")


async def test_deleting_a_subscription_deletes_its_consumer(suite):
    import nats
    from nats.js.errors import NotFoundError

    network = await start_network(suite)
    made = await subscribe(network, "http://127.0.0.1:9/hook")
    # The dispatcher's first look after the start makes a missing consumer again (NATS lost
    # its store); deleted during that look, a subscription's consumer could come back (the
    # look now reads again before it makes one). Past it, a delete is final.
    dispatcher = network.runtime.state.webhooks
    await wait_until(lambda: dispatcher.synced, what="the dispatcher's first look")
    nc = await nats.connect(suite.nats.url)
    try:
        js = nc.jetstream()
        assert (await js.consumer_info("CRM", f"network-webhook-{made['id']}")).config.filter_subjects
        response = await network.client.delete(f"/v1/webhooks/{made['id']}")
        assert response.status_code == 204
        with pytest.raises(NotFoundError):
            await js.consumer_info("CRM", f"network-webhook-{made['id']}")
    finally:
        await nc.close()
    assert (await network.client.get(f"/v1/webhooks/{made['id']}")).status_code == 404


async def test_a_subscriptions_consumer_is_deleted_only_after_its_removal_commits(suite):
    """Deleted before the commit, the dispatcher's first look (which makes the consumer of any
    subscription it reads) could make it again from the row not yet gone: an orphan."""

    from services.network.webhooks import repository

    network = await start_network(suite)
    made = await subscribe(network, "http://127.0.0.1:9/hook")
    dispatcher = network.runtime.state.webhooks
    js = await dispatcher.js()
    rows_seen: list[object] = []
    real_delete = js.delete_consumer

    async def delete_consumer(stream, name):  # the real delete, noting what a reader sees first
        async with network.runtime.db.reader() as session:
            rows_seen.append(await repository.read(session, made["id"]))
        return await real_delete(stream, name)

    js.delete_consumer = delete_consumer
    try:
        assert (await network.client.delete(f"/v1/webhooks/{made['id']}")).status_code == 204
    finally:
        del js.delete_consumer
    assert rows_seen and rows_seen == [None] * len(rows_seen)
    assert await _no_consumer(js, made["id"])


async def test_a_consumer_nats_failed_to_delete_is_deleted_at_the_next_look(suite):
    from nats.errors import TimeoutError as NatsTimeout

    network = await start_network(suite)
    made = await subscribe(network, "http://127.0.0.1:9/hook")
    dispatcher = network.runtime.state.webhooks
    js = await dispatcher.js()
    real_delete = js.delete_consumer
    failures = []

    async def delete_consumer(stream, name):  # NATS times out once, then deletes for real
        if not failures:
            failures.append(name)
            raise NatsTimeout
        return await real_delete(stream, name)

    js.delete_consumer = delete_consumer
    try:
        assert (await network.client.delete(f"/v1/webhooks/{made['id']}")).status_code == 204
        assert (await network.client.get(f"/v1/webhooks/{made['id']}")).status_code == 404
        assert failures == [f"network-webhook-{made['id']}"]

        async def retried() -> bool:
            return not dispatcher._undeleted and await _no_consumer(js, made["id"])

        await wait_until(retried, what="the consumer deleted at the next look")
    finally:
        del js.delete_consumer


async def test_the_delivery_log_is_personal_data_export_shows_it_erasure_removes_it(suite):
    identify = await suite.start("identify")
    network = await start_network(suite)
    async with Receiver() as receiver:

        async def echo(request):
            event = await request.json()
            return 200, {}, f"welcome {event['data']['email']}"

        receiver.answers["/hook"] = echo
        made = await subscribe(network, receiver.url("/hook"), ["crm.identify.customer.created"], headers=PII)
        ada = await customer(identify, "ada", email="ada@example.com")
        [logged] = await wait_until(lambda: _log_of(network, made["id"], 1), what="the attempt logged")
        assert logged["response_body"] == "welcome ada@example.com"

        export = (await network.client.get(f"/internal/customers/{ada['id']}/personal-data")).json()
        [table] = [t for t in export["tables"] if t["table"] == "webhook_deliveries"]
        assert table["personal"] == {"response_body": "free_text"}
        assert [row["response_body"] for row in table["rows"]] == ["welcome ada@example.com"]

        erased = await identify.client.post(f"/v1/customers/{ada['id']}/erasure")
        assert erased.status_code == 202, erased.text

        async def anonymised():
            [row] = await _deliveries(network, made["id"])
            return row["response_body"] is None and row

        row = await wait_until(anonymised, what="the response body erased")
        assert row["outcome"] == "delivered" and row["event_id"] == logged["event_id"]  # the facts stay


async def test_a_consumer_nats_lost_is_made_again_when_network_starts(suite):
    import nats

    from services.network.main import DEFINITION
    from shared.service.runtime import start_runtime, stop_runtime

    identify = await suite.start("identify")
    network = await start_network(suite)
    async with Receiver() as receiver:
        made = await subscribe(network, receiver.url("/hook"))
        await stop_runtime(network.app.state.runtime)
        nc = await nats.connect(suite.nats.url)
        try:
            await nc.jetstream().delete_consumer("CRM", f"network-webhook-{made['id']}")
        finally:
            await nc.close()
        network.app.state.runtime = await start_runtime(DEFINITION, network.settings)
        await wait_until(lambda: network.runtime.state.webhooks.synced, what="the consumers checked")
        ada = await customer(identify, "after-loss")
        [call] = await receiver.wait_for("/hook", 1)
        assert verified(made["secret"], call)["data"]["id"] == ada["id"]
