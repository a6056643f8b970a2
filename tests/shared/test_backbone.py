"""The event backbone against a real nats-server and real databases:
exactly-once effects under redelivery, dead-lettering, outbox catch-up, NATS restarts."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime

import nats
import orjson
import pytest
from sqlalchemy import func, insert, select

from shared.db.uow import transaction
from shared.events.envelope import make_event
from shared.events.messaging import BUNDLE_EVENTS, emit, emit_many, flush_events
from tests.shared import probe
from tests.support import wait_until


async def stream_events(nats_url: str, subject: str = "crm.>") -> list[dict]:
    """Every event stored in the CRM stream on `subject`, read with an ephemeral consumer."""

    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info("CRM")
        sub = await js.pull_subscribe(subject, stream="CRM")
        events: list[dict] = []
        if info.state.messages:
            try:
                while True:
                    msgs = await sub.fetch(100, timeout=0.5)
                    events.extend(json.loads(m.data) for m in msgs)
                    for m in msgs:
                        await m.ack()
            except (TimeoutError, nats.errors.TimeoutError):
                pass
        return events
    finally:
        await nc.close()


async def publish_raw(nats_url: str, subject: str, body: bytes, msg_id: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().publish(subject, body, headers={"Nats-Msg-Id": msg_id})
    finally:
        await nc.close()


def created_event(customer_id: str, name: str = "x"):
    return make_event(
        service="identify",
        type="crm.identify.customer.created",
        data={"id": customer_id, "name": name, "created_at": "2024-01-01T00:00:00Z"},
        subject=customer_id,
    )


async def test_the_same_event_delivered_twice_is_applied_once(suite, probe_definition):
    probe_service = await suite.start_definition(probe_definition)
    event = created_event("c-1")
    # Two publishes the broker cannot deduplicate (different Nats-Msg-Id), one event id.
    await publish_raw(suite.nats.url, event.type, event.to_json(), "first")
    await publish_raw(suite.nats.url, event.type, event.to_json(), "second")
    metrics = probe_service.runtime.metrics
    await wait_until(
        lambda: metrics.events_duplicate.labels("probe", "probe-apply")._value.get() >= 1, what="duplicate skipped"
    )
    assert await probe.applied_count(probe_service, event.id) == 1


async def test_with_a_linger_events_arriving_close_together_share_one_micro_batch(suite):
    """`consumer_linger_s`: while busy (its previous micro-batch applied less than that long
    ago) the runner waits that long after a micro-batch's first event for more, and applies
    what came in one transaction (CPU for latency, docs/benchmarks.md); an event after a
    quiet spell is applied at once, with nothing to wait for."""

    probe_service = await suite.start_definition(probe.BATCH_DEFINITION, consumer_linger_s=1.0)
    probe.batch_sizes.clear()
    first, *close = [created_event(f"c-linger-{n}") for n in range(3)]
    await publish_raw(suite.nats.url, first.type, first.to_json(), first.id)
    # Well before the linger would have run out: applied without waiting for company.
    await wait_until(lambda: probe.batch_sizes == [1], timeout=0.6, what="the first event applied alone, at once")
    for event in close:  # busy now: these two share a micro-batch
        await publish_raw(suite.nats.url, event.type, event.to_json(), event.id)
        await asyncio.sleep(0.1)  # apart: without a linger, each would be applied alone
    await wait_until(lambda: sum(probe.batch_sizes) >= 3, what="three events applied")
    assert probe.batch_sizes == [1, 2]
    for event in (first, *close):
        assert await probe.applied_count(probe_service, event.id) == 1


async def test_a_consumer_that_dies_before_acking_gets_the_event_again_and_applies_it_once(suite, probe_definition):
    first = await suite.start_definition(probe_definition, consumer_ack_wait_s=1.0)
    runner = first.runtime.consumers[0]
    applied_without_ack = []

    async def apply_then_die(msgs):
        # The effect and the inbox record commit, then the process "dies": no ack.
        items = [(m, probe.read(m.data)) for m in msgs]
        await runner._apply(items, runner.routes)
        applied_without_ack.extend(items)
        await asyncio.sleep(3600)  # hangs until killed, never acking

    runner.process = apply_then_die
    event = created_event("c-2")
    await publish_raw(suite.nats.url, event.type, event.to_json(), event.id)
    await wait_until(lambda: applied_without_ack, what="first delivery applied")
    await runner.stop()  # the process is killed between commit and ack
    assert runner.stalled  # readiness would report it
    assert await probe.applied_count(first, event.id) == 1

    # A fresh consumer on the same durable (a restarted process) gets the event
    # again once the ack wait runs out, finds it in the inbox and skips it.
    runner.process = type(runner).process.__get__(runner)
    runner.start()
    await wait_until(
        lambda: first.runtime.metrics.events_duplicate.labels("probe", "probe-apply")._value.get() >= 1,
        timeout=15,
        what="redelivery skipped as duplicate",
    )
    assert await probe.applied_count(first, event.id) == 1
    nc = await nats.connect(suite.nats.url)
    info = await nc.jetstream().consumer_info("CRM", "probe-apply")
    await nc.close()
    assert info.num_ack_pending == 0 and info.num_pending == 0


class _Kept(logging.Handler):
    """The records of one logger (the services' logging replaces the root's handlers, caplog's too)."""

    def __init__(self, name: str):
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.logger = logging.getLogger(name)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> _Kept:
        self.logger.addHandler(self)
        return self

    def __exit__(self, *_: object) -> None:
        self.logger.removeHandler(self)


async def test_a_poison_event_goes_to_the_dead_letter_subject_and_does_not_block_others(suite, probe_definition):
    with _Kept("valuechain.consumer") as consumer_log:
        await _poison_is_dead_lettered(suite, probe_definition)
    # Each failed micro-batch says so once, with what failed (then its events go one by one).
    failed = [r for r in consumer_log.records if r.getMessage() == "micro-batch failed, applying its events one by one"]
    assert failed and all("this event always fails" in r.error and r.consumer == "probe-apply" for r in failed)


async def _poison_is_dead_lettered(suite, probe_definition) -> None:
    probe_service = await suite.start_definition(probe_definition, consumer_max_deliver=3)
    poison = created_event("c-poison", name="poison")
    good = created_event("c-good")
    await publish_raw(suite.nats.url, poison.type, poison.to_json(), poison.id)
    await publish_raw(suite.nats.url, good.type, good.to_json(), good.id)
    await wait_until(lambda: probe.applied_count(probe_service, good.id), what="good event applied")

    response = await wait_until(lambda: _dead_letters(probe_service), timeout=15, what="dead letter listed")
    letter = response[0]
    assert letter["event_id"] == poison.id
    assert letter["deliveries"] == 3
    assert letter["consumer"] == "probe-apply"
    assert "this event always fails" in letter["error"]
    assert json.loads(letter["body"])["id"] == poison.id

    dlq = await wait_until(lambda: stream_events(suite.nats.url, "crm.dlq.probe"), what="dlq event")
    assert dlq[0]["type"] == "crm.dlq.probe"
    assert dlq[0]["data"]["event_id"] == poison.id
    assert dlq[0]["correlationid"] == poison.correlationid
    assert await probe.applied_count(probe_service, poison.id) == 0


async def test_specs_sharing_a_durable_claim_an_event_once_and_a_failing_one_holds_back_no_other(suite):
    # Both specs apply a good event in one transaction: one inbox row for the pair of them.
    # An event that fails one spec is applied by the other on its own (a row of its own). A
    # flaky one, applied by both at its redelivery, is not applied by the other again; a
    # poison one is dead-lettered for the failing spec only.
    probe_service = await suite.start_definition(probe.TWO_SPECS_DEFINITION, consumer_max_deliver=3)
    poison = created_event("c-poison", name="poison")
    flaky = created_event("c-flaky", name="flaky")
    good = created_event("c-good")
    for event in (poison, flaky, good):
        await publish_raw(suite.nats.url, event.type, event.to_json(), event.id)
    letters = await wait_until(lambda: _dead_letters(probe_service), timeout=15, what="dead letter listed")
    assert [(letter["consumer"], letter["event_id"], letter["deliveries"]) for letter in letters] == [
        ("probe-apply", poison.id, 3)
    ]
    await wait_until(lambda: probe.applied_count(probe_service, flaky.id), what="flaky event applied")
    assert probe.flaky_attempts[flaky.id] == 4  # three failed attempts, then its redelivery
    assert await probe.applied_count(probe_service, good.id) == 2
    assert await probe.applied_count(probe_service, flaky.id) == 2  # once by each spec
    assert await probe.applied_count(probe_service, poison.id) == 1  # the kept spec's, once
    assert await probe.inbox_rows(probe_service) == sorted(
        [
            ("probe-apply:all", good.id),
            ("probe-apply:all", flaky.id),
            ("probe-keep", flaky.id),
            ("probe-keep", poison.id),
            ("probe-apply", poison.id),
        ]
    )


async def test_an_undecodable_message_is_dead_lettered_at_once(suite):
    probe_service = await suite.start_definition(probe.DEFINITION)
    await publish_raw(suite.nats.url, "crm.identify.customer.created", b"{not json", "garbage-1")
    letters = await wait_until(lambda: _dead_letters(probe_service), what="dead letter")
    assert letters[0]["event_id"] is None
    assert letters[0]["deliveries"] == 1
    assert "undecodable" in letters[0]["error"]


async def _dead_letters(handle):
    response = await handle.client.get("/v1/ops/dead-letters")
    assert response.status_code == 200
    return response.json()["items"]


async def test_a_rolled_back_write_emits_nothing(suite):
    identify = await suite.start("identify")
    with pytest.raises(RuntimeError):
        async with transaction(identify.runtime.db.writer) as session:
            emit(session, "crm.identify.customer.created", {"id": "ghost", "created_at": "2024-01-01T00:00:00Z"})
            raise RuntimeError("the write fails after the event was emitted")
    ok = await identify.client.post("/v1/customers", json={"external_id": "real"})
    assert ok.status_code == 201
    clash = await identify.client.post("/v1/customers", json={"external_id": "real"})
    assert clash.status_code == 409
    events = await wait_until(lambda: stream_events(suite.nats.url), what="the one event")
    assert [e["data"]["id"] for e in events] == [ok.json()["id"]]
    outbox = identify.runtime.relay.outbox
    async with identify.runtime.db.reader() as session:
        assert (await session.execute(select(func.count()).select_from(outbox))).scalar_one() == 1


async def test_events_written_before_the_commit_wake_the_relay_at_the_commit(suite):
    """A purchase writes its events' outbox row with its other writes, before the commit
    (identify's `writes_together` block): the commit wakes the relay all the same, so the
    events go out now and not at the relay's next poll."""

    identify = await suite.start("identify")
    db = identify.runtime.db
    woken: list[int] = []
    async with transaction(db.writer) as session:
        session.info["notify"] = lambda: woken.append(len(woken))
        emit(session, "crm.identify.customer.created", {"id": "c-early", "created_at": "2024-01-01T00:00:00Z"})
        assert await flush_events(session) == 1 and woken == []
    assert woken == [0]  # at the commit, though nothing was left to write then
    async with transaction(db.writer) as session:  # a transaction with no events wakes nobody
        session.info["notify"] = lambda: woken.append(len(woken))
    assert woken == [0]


async def test_the_outbox_relay_catches_up_after_being_down(suite):
    identify = await suite.start("identify")
    relay = identify.runtime.relay
    relay.paused = True
    ids = []
    for n in range(5):
        response = await identify.client.post("/v1/customers", json={"external_id": f"ext-{n}"})
        ids.append(response.json()["id"])
    assert await relay.pending_count() == 5
    assert await stream_events(suite.nats.url) == []
    relay.paused = False
    relay.notify()
    events = await wait_until(lambda: _n_events(suite.nats.url, 5), what="relay caught up")
    assert [e["data"]["id"] for e in events] == ids  # in commit order
    assert await relay.pending_count() == 0


async def test_the_relay_reads_pending_rows_in_order_from_an_index_of_them_alone(suite):
    """ix_outbox_unpublished holds only the rows not yet published, in seq order: the
    relay's read walks it with no sort, and rows marked published are not in it."""

    identify = await suite.start("identify")
    relay, db = identify.runtime.relay, identify.runtime.db
    relay.paused = True
    outbox = db.info["messaging"].outbox
    async with transaction(db.writer) as session:  # a history of rows published long ago
        at = datetime(2026, 1, 1, tzinfo=UTC)
        old = [
            {"event_id": f"old-{n}", "subject": "crm.x", "body": b"{}", "created_at": at, "published_at": at}
            for n in range(5000)
        ]
        await session.execute(insert(outbox), old)
    ids = [
        (await identify.client.post("/v1/customers", json={"external_id": f"pending-{n}"})).json()["id"]
        for n in range(3)
    ]
    dialect = db.writer_engine.dialect
    sql = str(relay._pending.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    async with db.writer_engine.connect() as connection:
        if dialect.name == "postgresql":
            await connection.exec_driver_sql("ANALYZE outbox")  # as autovacuum keeps it
            plan = [row[0] for row in await connection.exec_driver_sql("EXPLAIN " + sql)]
            assert any("Index Scan using ix_outbox_unpublished" in line for line in plan), plan
            assert not any("Sort" in line for line in plan), plan
        else:
            plan = [row[-1] for row in await connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)]
            assert any("USING INDEX ix_outbox_unpublished" in line for line in plan), plan
            assert not any("TEMP B-TREE" in line for line in plan), plan
        rows = (await connection.execute(relay._pending)).all()
    assert [orjson.loads(row.body)["data"]["id"] for row in rows] == ids


async def test_runs_of_one_type_travel_bundled_and_are_published_one_by_one_in_order(suite):
    identify = await suite.start("identify")
    relay = identify.runtime.relay
    relay.paused = True
    at = "2026-01-01T00:00:00Z"
    async with transaction(identify.runtime.db.writer) as session:
        emit(session, "crm.identify.customer.created", {"id": "alone", "created_at": at})
        emit_many(
            session,
            "crm.identify.customer.created",
            [{"id": f"c-{n}", "created_at": at} for n in range(BUNDLE_EVENTS + 30)],
            [f"c-{n}" for n in range(BUNDLE_EVENTS + 30)],
        )
        emit(session, "crm.identify.customer.updated", {"id": "c-0", "changes": {"name": "Ada"}, "updated_at": at})
        emit(session, "crm.identify.customer.created", {"id": "last", "created_at": at})
    # one row: "alone" + the next 49 ran together; then 31 more; then one each
    assert await relay.pending_count() == 4
    relay.paused = False
    relay.notify()
    count = BUNDLE_EVENTS + 33
    events = await wait_until(lambda: _n_events(suite.nats.url, count), what="every bundled event published")
    assert len(events) == count and len({event["id"] for event in events}) == count
    assert [event["data"]["id"] for event in events] == (
        ["alone"] + [f"c-{n}" for n in range(BUNDLE_EVENTS + 30)] + ["c-0", "last"]
    )
    assert [event["type"] for event in events[-2:]] == [
        "crm.identify.customer.updated",
        "crm.identify.customer.created",
    ]
    assert await relay.pending_count() == 0


async def test_publishing_goes_on_while_a_long_write_holds_the_writer(suite):
    identify = await suite.start("identify")
    relay, outbox = identify.runtime.relay, identify.runtime.db.info["messaging"].outbox
    relay.paused = True
    relay.batch = 1  # a round a row: each round's mark waits for the writer
    count = 3 * BUNDLE_EVENTS
    at = "2026-01-01T00:00:00Z"
    async with transaction(identify.runtime.db.writer) as session:
        ids = [f"long-{n}" for n in range(count)]
        emit_many(session, "crm.identify.customer.created", [{"id": i, "created_at": at} for i in ids], ids)
    held, release = asyncio.Event(), asyncio.Event()

    async def long_write():
        # SQLite: the process's one writer connection is taken; PostgreSQL: the rows are locked.
        async with identify.runtime.db.writer() as session, session.begin():
            await session.execute(select(outbox.c.seq).with_for_update())
            held.set()
            await release.wait()

    writing = asyncio.create_task(long_write())
    await held.wait()
    relay.paused = False
    relay.notify()
    events = await wait_until(lambda: _n_events(suite.nats.url, count), what="published while the writer is held")
    assert [event["data"]["id"] for event in events] == ids
    async with identify.runtime.db.reader() as session:
        unmarked = (await session.execute(select(func.count()).where(outbox.c.published_at.is_(None)))).scalar_one()
    assert unmarked == 3  # their published_at waits for the writer
    release.set()
    await writing
    assert await relay.pending_count() == 0


async def _n_events(url, n):
    events = await stream_events(url)
    return events if len(events) >= n else None


async def test_services_survive_a_nats_restart_and_publish_what_piled_up(suite):
    identify = await suite.start("identify")
    probe_service = await suite.start_definition(probe.DEFINITION)
    before = await identify.client.post("/v1/customers", json={"external_id": "before"})
    await wait_until(lambda: probe.applied_count(probe_service), what="first event applied")

    suite.nats.stop()
    await wait_until(lambda: not identify.runtime.bus.is_connected, what="identify sees NATS gone")
    during = await identify.client.post("/v1/customers", json={"external_id": "during"})
    assert during.status_code == 201  # writes go on; the event waits in the outbox
    ready = await identify.client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["nats"] == "disconnected"

    suite.nats.start()  # same port, same store
    await wait_until(lambda: identify.runtime.bus.is_connected, timeout=15, what="identify reconnected")
    after = await identify.client.post("/v1/customers", json={"external_id": "after"})
    assert after.status_code == 201
    await wait_until(lambda: _applied_at_least(probe_service, 3), timeout=20, what="all three applied")
    assert await probe.applied_count(probe_service) == 3
    assert (await identify.client.get("/readyz")).status_code == 200
    assert before.status_code == 201


async def test_after_nats_lost_its_store_services_say_so_and_resume_once_provisioned(suite):
    """What an operator meets after NATS came back empty: the services name the missing
    stream in /readyz, writes wait in the outbox, and `valuechain migrate` (here the same
    provisioning function, as the admin) sets everything going again."""

    import importlib
    import shutil

    identify = await suite.start("identify")
    probe_service = await suite.start_definition(probe.DEFINITION)
    suite.nats.stop()
    shutil.rmtree(suite.nats.store_dir)
    suite.nats.start()  # same users, an empty store

    async def names_the_missing_stream():
        response = await probe_service.client.get("/readyz")
        check = response.json()["checks"]["consumer:probe-apply"]
        return response.status_code == 503 and check.startswith("missing: stream CRM")

    await wait_until(names_the_missing_stream, timeout=20, what="readiness names the missing stream")
    written = await identify.client.post("/v1/customers", json={"external_id": "after-the-loss"})
    assert written.status_code == 201  # the event waits in the outbox

    await suite.provision(importlib.import_module("services.identify.main").DEFINITION, identify.settings)
    await suite.provision(probe.DEFINITION, probe_service.settings)
    await wait_until(lambda: probe.applied_count(probe_service), timeout=20, what="the waiting event applied")
    await wait_until(lambda: _ready(probe_service), what="ready again")


async def _ready(handle) -> bool:
    return (await handle.client.get("/readyz")).status_code == 200


async def _applied_at_least(handle, n):
    return await probe.applied_count(handle) >= n


async def test_the_correlation_id_of_a_request_travels_into_its_event(suite):
    identify = await suite.start("identify")
    response = await identify.client.post(
        "/v1/customers", json={"external_id": "corr"}, headers={"X-Correlation-ID": "corr-123"}
    )
    assert response.headers["x-correlation-id"] == "corr-123"
    events = await wait_until(lambda: stream_events(suite.nats.url), what="event")
    assert events[0]["correlationid"] == "corr-123"
    assert events[0]["specversion"] == "1.0"
    assert events[0]["source"] == "/valuechain/identify"
    assert events[0]["dataschema"] == "http://127.0.0.1:8000/v1/schemas/crm.identify.customer.created/v1.json"


async def test_consumers_are_provisioned_with_exactly_their_subjects(suite, probe_definition):
    await suite.start_definition(probe_definition)
    nc = await nats.connect(suite.nats.url)
    try:
        info = await nc.jetstream().consumer_info("CRM", "probe-apply")
    finally:
        await nc.close()
    subjects = info.config.filter_subjects or [info.config.filter_subject]
    assert subjects == ["crm.identify.customer.created"]
    assert str(getattr(info.config.ack_policy, "value", info.config.ack_policy)) == "explicit"
    assert info.config.durable_name == "probe-apply"


async def test_a_forged_dead_letter_cursor_is_a_422_naming_cursor(suite):
    from shared.http.pagination import encode_cursor

    probe_service = await suite.start_definition(probe.DEFINITION)
    for forged in (encode_cursor("x"), encode_cursor(None), "%%%"):
        response = await probe_service.client.get("/v1/ops/dead-letters", params={"cursor": forged})
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["field"] == "query.cursor"
