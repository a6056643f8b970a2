"""Replicas of a service on one database and one nats-server (issue 17 §1): the lease
primitive, one relay publishing at a time, one replica pulling each consumer, and takeover
when the holder dies (stopped without giving its leases up) or stops renewing (a pause)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update

from shared.db.database import Database, utcnow
from shared.db.leases import Leases
from shared.db.uow import transaction
from shared.events.contracts import dlq_subject
from shared.events.messaging import emit
from shared.service.runtime import stop_runtime
from tests.shared import probe
from tests.shared.test_backbone import publish_raw, stream_events
from tests.support import make_database_url, wait_until

LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)
DLQ = dlq_subject("probe")
# Short leases, so a takeover comes within a second or two.
FAST = {"lease_ttl_s": 1.0, "lease_renew_s": 0.2}


@pytest.fixture
async def lease_db(tmp_path):
    url, drop = await make_database_url("leases", tmp_path)
    db = Database.connect(url, service="probe")
    async with db.writer_engine.begin() as conn:
        await conn.run_sync(probe.Base.metadata.create_all)
    yield db
    await db.dispose()
    await drop()


async def test_a_lease_has_one_holder_and_passes_on_when_released_or_expired(lease_db):
    table = probe.messaging.leases
    first = Leases(lease_db, table, ttl_s=30.0, renew_s=1.0)
    second = Leases(lease_db, table, ttl_s=30.0, renew_s=1.0)
    a, b = first.want("relay"), second.want("relay")
    assert await first.tick() == {"relay"} and a.held
    assert await second.tick() == set() and not b.held
    assert await first.tick() == {"relay"}  # renewed by its holder
    a.valid_until = 0.0  # taken for lost (a late renewal), yet nobody took it meanwhile:
    assert await first.tick() == {"relay"} and a.held and a.term == 1  # the same term
    assert await first.holders() == {"relay": first.holder}

    # The holder dies without a word: its row stays until it expires (here: made to expire).
    async with lease_db.writer() as session, session.begin():
        await session.execute(update(table).where(table.c.name == "relay").values(expires_at=LONG_AGO))
    assert await second.tick() == {"relay"} and b.held
    assert await first.tick() == set() and not a.held  # the old holder learns it lost it

    # Released: the next one to try takes it at once.
    await second.release("relay")
    assert not b.held
    assert await first.tick() == {"relay"} and a.term == 2  # taken again: a new term


async def test_a_paused_holder_stops_before_its_lease_could_pass_on(lease_db):
    """`held` is local: a holder that renews no more (paused, its database away) takes its lease
    for lost a renew interval before the row expires for the others."""

    leases = Leases(lease_db, probe.messaging.leases, ttl_s=0.6, renew_s=0.2)
    lease = leases.want("sweep")
    await leases.tick()
    assert lease.held
    async with lease_db.reader() as session:
        expires = (await session.execute(select(probe.messaging.leases.c.expires_at))).scalar_one()
    await wait_until(lambda: not lease.held, what="the lease taken for lost")
    assert utcnow() < expires  # still its own in the table: nobody else can have it yet


async def test_work_under_a_lease_runs_in_one_replica_and_moves_when_its_lease_is_lost(lease_db):
    table = probe.messaging.leases
    first = Leases(lease_db, table, ttl_s=1.0, renew_s=0.2)
    second = Leases(lease_db, table, ttl_s=1.0, renew_s=0.2)
    running: list[str] = []

    def work(who: str):
        async def loop() -> None:
            running.append(who)
            await asyncio.sleep(3600)

        return loop

    first.start()
    one = asyncio.create_task(first.run_leased("schedule", work("first")))
    await wait_until(lambda: running == ["first"], what="the first replica runs it")
    second.start()
    two = asyncio.create_task(second.run_leased("schedule", work("second")))
    await asyncio.sleep(0.5)  # several ticks of the second: it stands by
    assert running == ["first"]

    # The first stops renewing (a pause, a dead database connection): its work is cancelled
    # as its lease runs out, and the second takes over once the row expires.
    assert first.task is not None
    first.task.cancel()
    await wait_until(lambda: running == ["first", "second"], timeout=10, what="the second takes over")
    assert await second.holders(["schedule"]) == {"schedule": second.holder}
    for task in (one, two):
        task.cancel()
    await asyncio.gather(one, two, return_exceptions=True)
    first.release_on_stop = False
    await first.stop()
    await second.stop()
    assert await second.holders() == {}  # given up as it stopped


async def _emit_created(handle, customer_ids: list[str]) -> list[str]:
    ids = []
    async with transaction(handle.runtime.db.writer) as session:
        for customer_id in customer_ids:
            event = emit(  # the subject the probe's NATS user may publish on
                session,
                DLQ,
                {
                    "consumer": "probe",
                    "event_id": None,
                    "event_type": None,
                    "error": "-",
                    "deliveries": 1,
                    "failed_at": utcnow(),
                    "raw": "-",
                },
                subject=customer_id,
            )
            ids.append(event.id)
    return ids


def _published(*handles) -> int:
    return sum(int(h.runtime.metrics.outbox_published.labels("probe")._value.get()) for h in handles)


async def test_two_relays_on_one_outbox_publish_each_event_once_in_commit_order(suite):
    first = await suite.start_definition(probe.DEFINITION, **FAST)
    second = await suite.replica(first)
    ids: list[str] = []
    for round_ in range(10):  # commits through both replicas: each wakes its own relay
        ids += await _emit_created(first, [f"a-{round_}-{i}" for i in range(5)])
        ids += await _emit_created(second, [f"b-{round_}-{i}" for i in range(5)])
    await wait_until(lambda: _published(first, second) >= len(ids), what="every event published")
    events = await wait_until(
        lambda: _when_all(stream_events(suite.nats.url, DLQ), len(ids)),
        what="every event in the stream",
    )
    assert [event["id"] for event in events] == ids  # the outbox's order
    assert _published(first, second) == len(ids)  # one relay published them: none twice
    relay = {first.runtime.relay.lease.held, second.runtime.relay.lease.held}
    assert relay == {True, False}
    # Both are ready; readiness says which stands by.
    ready = [(await handle.client.get("/readyz")) for handle in (first, second)]
    assert [answer.status_code for answer in ready] == [200, 200]
    states = sorted(answer.json()["checks"]["leases"] for answer in ready)
    assert states == ["holds 2, stands by for 0", "stands by for 2"]


async def _when_all(found, expected: int):
    events = await found
    return events if len(events) >= expected else None


async def test_a_standby_relay_takes_over_when_the_holder_dies_or_stops_renewing(suite):
    first = await suite.start_definition(probe.DEFINITION, **FAST)
    second = await suite.replica(first)
    await wait_until(lambda: first.runtime.relay.lease.held or second.runtime.relay.lease.held, what="a relay")
    holder, standby = (first, second) if first.runtime.relay.lease.held else (second, first)

    # Stops renewing (a pause): its relay stops publishing before the standby may begin.
    assert holder.runtime.leases.task is not None
    holder.runtime.leases.task.cancel()
    await wait_until(lambda: standby.runtime.relay.lease.held, timeout=10, what="the standby takes the relay")
    before = _published(holder)
    ids = await _emit_created(holder, ["c-1", "c-2"])  # committed through the paused one
    events = await wait_until(lambda: _when_all(stream_events(suite.nats.url, DLQ), 2), what="published")
    assert [event["id"] for event in events] == ids
    assert _published(holder) == before  # the paused one published nothing more

    # The new holder dies without giving its leases up (as SIGKILL): a third replica takes over
    # once they expire.
    standby.runtime.leases.release_on_stop = False
    await stop_runtime(standby.runtime)
    third = await suite.replica(first)
    await wait_until(lambda: third.runtime.relay.lease.held, timeout=10, what="the third takes the relay")
    more = await _emit_created(third, ["c-3"])
    events = await wait_until(lambda: _when_all(stream_events(suite.nats.url, DLQ), 3), what="published")
    assert [event["id"] for event in events] == ids + more


async def _applied_order(handle) -> list[str]:
    async with handle.runtime.db.reader() as session:
        rows = await session.execute(select(probe.applied.c.event_id).order_by(probe.applied.c.id))
        return list(rows.scalars())


async def test_a_consumer_shared_by_two_replicas_applies_one_customers_events_once_in_order(suite, probe_definition):
    first = await suite.start_definition(probe_definition, consumer_ack_wait_s=1.0, consumer_batch=5, **FAST)
    second = await suite.replica(first)
    events = [_created("c-1", i) for i in range(60)]
    for event in events[:30]:
        await publish_raw(suite.nats.url, event.type, event.to_json(), event.id)
    await wait_until(lambda: _count(first, 30), timeout=15, what="the first half applied")
    runners = [first.runtime.consumers[0], second.runtime.consumers[0]]
    assert sorted(runner.lease.held for runner in runners) == [False, True]  # one pulls

    # The puller dies without giving its lease up; the other takes over.
    puller = first if runners[0].lease.held else second
    other = second if puller is first else first
    puller.runtime.leases.release_on_stop = False
    await stop_runtime(puller.runtime)
    for event in events[30:]:
        await publish_raw(suite.nats.url, event.type, event.to_json(), event.id)
    await wait_until(lambda: _count(other, 60), timeout=20, what="all applied by the other")
    assert await _applied_order(other) == [event.id for event in events]


def _created(customer_id: str, n: int):
    from shared.events.envelope import make_event

    return make_event(
        service="identify",
        type="crm.identify.customer.created",
        data={"id": customer_id, "name": f"v{n}", "created_at": "2024-01-01T00:00:00Z"},
        subject=customer_id,
    )


async def _count(handle, expected: int) -> bool:
    return await probe.applied_count(handle) >= expected


async def test_a_jobs_lease_is_claimed_with_its_row_and_gone_when_the_job_ends(lease_db):
    table = probe.messaging.leases
    leases = Leases(lease_db, table, ttl_s=30.0, renew_s=1.0)
    async with lease_db.writer() as session, session.begin():
        claimed = await leases.claim(session, "import:1")
    leases.adopt("import:1", claimed)
    assert await leases.holders() == {"import:1": leases.holder}

    async def job() -> str:
        return "done"

    assert await leases.run_leased("import:1", job, standby=False) == "done"
    async with lease_db.reader() as session:
        assert (await session.execute(select(table.c.name))).all() == []  # no row left behind


async def test_a_job_outlives_a_late_renewal_and_stops_only_when_its_lease_is_gone(lease_db):
    table = probe.messaging.leases
    leases = Leases(lease_db, table, ttl_s=30.0, renew_s=1.0)
    async with lease_db.writer() as session, session.begin():
        claimed = await leases.claim(session, "import:2")
    lease = leases.adopt("import:2", claimed)
    started, release = asyncio.Event(), asyncio.Event()

    async def job() -> str:
        started.set()
        await release.wait()
        return "done"

    running = asyncio.create_task(leases.run_leased("import:2", job, standby=False))
    await started.wait()
    lease.valid_until = 0.0  # its renewal waited behind a long write: lost by the clock only
    await asyncio.sleep(0.05)
    assert not running.done()
    assert await leases.tick() == {"import:2"}  # renewed late, still its own: the job goes on
    async with lease_db.writer() as session, session.begin():  # the table gives it to another
        await session.execute(update(table).values(holder="another"))
    await leases.tick()
    assert await running is None  # cancelled: its reaper reports it failed


async def test_a_row_committed_after_a_later_one_was_published_goes_out_while_marks_are_pending(suite):
    """On PostgreSQL a transaction that took a lower outbox seq can commit after one with a
    higher seq was published. The relay must not read only past what it published while marks
    wait (`outbox_mark_delay_s`): such a row waited for a lull. Here the late commit is played
    by hiding the lower row (published_at set) until the higher one is out, its mark held 5 s."""

    handle = await suite.start_definition(probe.DEFINITION, outbox_mark_delay_s=5.0)
    relay, outbox = handle.runtime.relay, handle.runtime.relay.outbox
    relay.paused = True
    early, late = await _emit_created(handle, ["early"]) + await _emit_created(handle, ["late"])
    async with transaction(handle.runtime.db.writer) as session:  # `early` not committed yet
        await session.execute(update(outbox).where(outbox.c.event_id == early).values(published_at=utcnow()))
    relay.paused = False
    relay.notify()
    await wait_until(lambda: _when_all(stream_events(suite.nats.url, DLQ), 1), what="the later row published")
    async with transaction(handle.runtime.db.writer) as session:  # `early` commits now
        await session.execute(update(outbox).where(outbox.c.event_id == early).values(published_at=None))
    relay.notify()
    events = await wait_until(
        lambda: _when_all(stream_events(suite.nats.url, DLQ), 2), timeout=2, what="the early row, before the marks"
    )
    assert [event["id"] for event in events] == [late, early]
