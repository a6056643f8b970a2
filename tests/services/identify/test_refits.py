"""Refits: a bounded queue, scores reaching other services as events, math that stays finite."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta

import nats
import numpy as np
from sqlalchemy import event, inspect, text

from services.identify.portfolio.scoring import CLV_BANDS, clv_band_codes
from services.identify.settings import portfolio_settings
from shared.db.uow import transaction
from tests.services.identify.test_portfolio import SMALL_PORTFOLIO_END, create_customer, record, refit, small_portfolio
from tests.support import wait_until

SCORED, FITTED = "crm.identify.customer.scored", "crm.identify.model.fitted"


async def refit_rows(identify) -> list[tuple]:
    async with identify.runtime.db.reader() as session:
        return [
            tuple(row)
            for row in (await session.execute(text("SELECT id, status FROM portfolio_refits ORDER BY id"))).all()
        ]


async def test_requests_while_a_refit_is_queued_join_it_or_are_refused(suite):
    identify = await suite.start("identify")
    client = identify.client
    await small_portfolio(client)
    body = {"calibration_end": SMALL_PORTFOLIO_END, "time_unit": "day"}
    # Nothing can start while the runner's lock is held: every request meets the queued one.
    async with identify.runtime.state.refits.lock:
        answers = await asyncio.gather(*(client.post("/v1/portfolio/refits", json=body) for _ in range(10)))
        assert {answer.status_code for answer in answers} == {202}
        bodies = [answer.json() for answer in answers]
        assert len({item["id"] for item in bodies}) == 1  # everyone got the one queued refit
        assert sorted(item["joined"] for item in bodies) == [False] + [True] * 9
        assert {item["status"] for item in bodies} == {"queued"}
        queued_id = bodies[0]["id"]
        other = await client.post("/v1/portfolio/refits", json={**body, "time_unit": "week"})
        assert other.status_code == 409, other.text
        assert other.json()["error"] == "refit_queued"
        assert (
            f"refit {queued_id} is already queued (time_unit=day, calibration_end=2026-07-01)" in other.json()["detail"]
        )
        assert await refit_rows(identify) == [(queued_id, "queued")]

    async def finished():
        return (await refit_rows(identify)) == [(queued_id, "done")]

    await wait_until(finished, timeout=60, interval=0.05, what="the one queued refit to run")
    # Free of the lock: one may run while the next waits, and the rest join that one.
    answers = await asyncio.gather(*(client.post("/v1/portfolio/refits", json=body) for _ in range(8)))
    assert {answer.status_code for answer in answers} == {202}
    fresh = [answer.json() for answer in answers if not answer.json()["joined"]]
    assert 1 <= len(fresh) <= 2 and len({answer.json()["id"] for answer in answers}) == len(fresh)

    async def all_done():
        rows = await refit_rows(identify)
        return rows if all(status == "done" for _, status in rows) else None

    rows = await wait_until(all_done, timeout=120, interval=0.05, what="the refits to finish")
    assert len(rows) == 1 + len(fresh)  # eight requests ran at most two refits


async def test_a_refit_left_queued_by_a_stopped_process_is_failed_by_the_reaper(suite):
    from services.identify.models import Refit
    from services.identify.portfolio import refits
    from shared.db.database import utcnow

    identify = await suite.start("identify")
    async with transaction(identify.runtime.db.writer) as session:
        session.add(
            Refit(id="left-queued", status="queued", time_unit="week", customers_scored=0, requested_at=utcnow())
        )
        session.add(
            Refit(id="left-running", status="running", time_unit="week", customers_scored=0, requested_at=utcnow())
        )
    # Nobody holds their leases: what one replica's reaper does at start-up and every lease TTL.
    # The service's own reaper (it holds the lease `refit-reaper`) may get there first: then
    # this call finds nothing left, and the two are failed all the same.
    failed_here = await refits.fail_interrupted_refits(identify.runtime)
    assert failed_here in (0, 2)  # all at once, in one transaction: never one of the two
    for refit_id in ("left-queued", "left-running"):
        state = (await identify.client.get(f"/v1/portfolio/refits/{refit_id}")).json()
        assert state["status"] == "failed" and "replica running it stopped" in state["failure"]
    answer = await identify.client.post("/v1/portfolio/refits", json={"time_unit": "day"})
    assert answer.status_code == 202 and not answer.json()["joined"]  # not joined to the dead one
    assert answer.json()["id"] not in ("left-queued", "left-running")


class Probe:
    """Durable pull consumers on the suite's stream: scored events and fitted models."""

    def __init__(self, js):
        self.js = js

    async def start(self):
        self.scored = await self.js.pull_subscribe(SCORED, durable="probe-scored", stream="CRM")
        self.fitted = await self.js.pull_subscribe(FITTED, durable="probe-fitted", stream="CRM")
        return self

    async def after_refit(self) -> tuple[dict, list[dict]]:
        """The next model.fitted and the scored events published before it."""

        [fitted] = await self.fitted.fetch(1, timeout=30)
        await fitted.ack()
        # The relay publishes the outbox in order: every scored event of the refit is in
        # the stream once its model.fitted is.
        pending = (await self.js.consumer_info("CRM", "probe-scored")).num_pending
        events = []
        while len(events) < pending:
            for message in await self.scored.fetch(pending - len(events), timeout=10):
                assert message.metadata.sequence.stream < fitted.metadata.sequence.stream
                events.append(json.loads(message.data))
                await message.ack()
        return json.loads(fitted.data), events

    async def nothing_pending(self) -> bool:
        return (await self.js.consumer_info("CRM", "probe-scored")).num_pending == 0


def band_of(scores: dict) -> str | None:
    [code] = clv_band_codes([scores["predicted_clv"]], portfolio_settings().clv_band_edges)
    return CLV_BANDS[code] if code >= 0 else None


async def test_a_refit_emits_scored_events_only_for_customers_whose_segment_kinds_or_band_changed(suite):
    identify = await suite.start("identify")
    client = identify.client
    ids = await small_portfolio(client)
    nc = await nats.connect(suite.nats.url)
    try:
        probe = await Probe(nc.jetstream()).start()
        body = {"calibration_end": SMALL_PORTFOLIO_END, "time_unit": "day"}

        # First refit: nobody was scored, so everyone changed.
        assert (await refit(client, **body))["status"] == "done"
        fitted, events = await probe.after_refit()
        assert fitted["data"]["version"] == 1
        assert sorted(event["subject"] for event in events) == sorted(ids)
        one = next(event["data"] for event in events if event["subject"] == ids[7])
        scores = (await client.get(f"/v1/customers/{ids[7]}")).json()["scores"]
        assert {
            key: one[key] for key in ("segment", "kinds", "predicted_clv", "historic_clv", "probability_alive")
        } == {key: scores[key] for key in ("segment", "kinds", "predicted_clv", "historic_clv", "probability_alive")}
        assert one["model_version"] == 1 and one["clv_band"] == band_of(scores) in CLV_BANDS
        assert (one["previous_segment"], one["previous_kinds"], one["previous_clv_band"]) == (None, None, None)

        # The same data again: the same scores, no event.
        assert (await refit(client, **body))["status"] == "done"
        fitted, events = await probe.after_refit()
        assert fitted["data"]["version"] == 2 and events == []

        # One customer's stored segment differs from what the refit computes: one event.
        async with transaction(identify.runtime.db.writer) as session:
            await session.execute(
                text("UPDATE customer_scores SET segment = 'hibernating' WHERE customer_id = :id"), {"id": ids[3]}
            )
        assert (await refit(client, **body))["status"] == "done"
        _fitted, events = await probe.after_refit()
        assert [event["subject"] for event in events] == [ids[3]]
        data = events[0]["data"]
        assert data["previous_segment"] == "hibernating" != data["segment"]
        assert data["previous_kinds"] == data["kinds"] and data["previous_clv_band"] == data["clv_band"]
        assert data["model_version"] == 3
    finally:
        await nc.close()


async def test_a_purchase_emits_scored_only_when_it_changes_segment_kinds_or_band(suite):
    identify = await suite.start("identify")
    client = identify.client
    ids = await small_portfolio(client)
    assert (await refit(client, calibration_end=SMALL_PORTFOLIO_END, time_unit="day"))["status"] == "done"
    nc = await nats.connect(suite.nats.url)
    try:
        js = nc.jetstream()
        probe = await Probe(js).start()
        await probe.after_refit()  # the refit's own events
        before = (await client.get(f"/v1/customers/{ids[0]}")).json()["scores"]
        # Costs lower historic CLV only: the customer is re-scored, its segment, kinds and band stay.
        response = await client.put(f"/v1/customers/{ids[0]}/costs", json={"service": "1"})
        assert response.status_code == 200
        assert (await client.get(f"/v1/customers/{ids[0]}")).json()["scores"]["scored_at"] > before["scored_at"]
        assert await probe.nothing_pending()
        # A large purchase moves the customer: one event, with what it was.
        response = await client.post(
            "/v1/transactions",
            json={
                "customer_id": ids[0],
                "amount": "5000",
                "currency": "USD",
                "occurred_at": "2026-06-20T10:00:00Z",
            },
        )
        assert response.status_code == 201
        [message] = await probe.scored.fetch(1, timeout=10)
        event = json.loads(message.data)
        await message.ack()
    finally:
        await nc.close()
    after = (await client.get(f"/v1/customers/{ids[0]}")).json()["scores"]
    assert (before["segment"], before["kinds"], band_of(before)) != (after["segment"], after["kinds"], band_of(after))
    data = event["data"]
    assert event["subject"] == ids[0] and data["model_version"] == 1
    assert (data["segment"], data["kinds"], data["clv_band"]) == (after["segment"], after["kinds"], band_of(after))
    assert (data["previous_segment"], data["previous_kinds"], data["previous_clv_band"]) == (
        before["segment"],
        before["kinds"],
        band_of(before),
    )
    assert data["predicted_clv"] == after["predicted_clv"]


def test_scoring_stays_finite_for_any_date_from_1970_to_tomorrow_and_never_overflows():
    from services.identify.analysis import BGNBDParams, GammaGammaParams
    from services.identify.portfolio.repository import CustomerArrays, day_number
    from services.identify.portfolio.scoring import score, score_columns
    from services.identify.settings import PortfolioSettings

    tomorrow = day_number(date.today() + timedelta(days=1))
    # First and last purchase days at both ends, a purchase every day since 1970, huge spend.
    first = np.array([0, 0, 0, tomorrow, tomorrow - 1, 0, 10_000, 0], dtype=float)
    last = np.array([tomorrow, 0, tomorrow, tomorrow, tomorrow, tomorrow - 1, tomorrow, 5], dtype=float)
    days = np.array([tomorrow + 1, 1, 2, 1, 2, 5_000, 3, 6], dtype=float)
    spend = np.array([1e6, 10, 1e12, 5, 10, 1e5, 30, 50])
    n = len(first)
    edges = {"recency": [1, 2, 3, 4], "frequency": [1, 2, 3, 4], "monetary": [1, 2, 3, 4]}

    def arrays():
        return CustomerArrays(
            [str(i) for i in range(n)],
            first,
            last,
            days,
            days,
            spend,
            spend / days,
            np.full(n, np.nan),
            np.zeros(n),
            np.full(n, 1e12),
            spend * 3,
            np.zeros(n),
            np.zeros(n),
        )

    for rate in (0.1, 1.0):  # the default and the highest rate the settings allow
        settings = PortfolioSettings(discount_rate=rate)
        for unit_days in (1, 7):
            for params in (
                BGNBDParams(0.243, 4.414 * 7 / unit_days, 0.793, 2.426, 0.0),
                BGNBDParams(50, 0.01, 0.01, 100, 0.0),
                BGNBDParams(0.01, 1000, 100, 0.01, 0.0),
            ):
                customers = arrays()
                customers.compound_to(tomorrow, rate)
                scores = score(
                    customers,
                    bgnbd=params,
                    gamma_gamma=GammaGammaParams(6.25, 3.74, 15.44),
                    rfm_edges=edges,
                    unit_days=unit_days,
                    as_of_day=tomorrow,
                    settings=settings,
                )
                for name in ("historic_clv", "predicted_clv", "expected_purchases", "probability_alive"):
                    assert np.isfinite(getattr(scores, name)).all(), (rate, unit_days, params, name)

    # A 9999-12-31 purchase stored before dates were bounded: no OverflowError (Python's
    # float power raised one), and what is not finite is written as null, never inf or NaN.
    customers = arrays()
    far = day_number(date(9999, 12, 31))
    customers.last_day = customers.last_day.copy()
    customers.last_day[0] = far
    customers.compound_to(far, 0.1)
    scores = score(
        customers,
        bgnbd=BGNBDParams(0.243, 4.414, 0.793, 2.426, 0.0),
        gamma_gamma=GammaGammaParams(6.25, 3.74, 15.44),
        rfm_edges=edges,
        unit_days=7,
        as_of_day=far,
        settings=PortfolioSettings(),
    )
    columns = score_columns(customers, scores, [[] for _ in range(n)], [{} for _ in range(n)], version=1)
    for name in ("historic_clv", "predicted_clv", "expected_purchases", "probability_alive"):
        assert all(value is None or np.isfinite(value) for value in columns[name]), name


async def test_a_refit_over_purchases_from_1970_to_now_scores_everyone_with_finite_values(suite):
    identify = await suite.start("identify")
    client = identify.client
    await small_portfolio(client)
    now = datetime.now(UTC).replace(microsecond=0)
    early = await create_customer(client, external_id="since-1970")
    await record(
        client,
        [
            {"customer_id": early, "amount": "99999", "currency": "USD", "occurred_at": at, "external_id": f"e-{i}"}
            for i, at in enumerate(
                (
                    "1970-01-01T12:00:00Z",
                    "1985-06-01T12:00:00Z",
                    (now - timedelta(minutes=1)).isoformat().replace("+00:00", "Z"),
                )
            )
        ],
    )
    for unit in ("day", "week"):
        assert (await refit(client, time_unit=unit))["status"] == "done"  # as of now: the last purchase
        async with identify.runtime.db.reader() as session:
            rows = (
                await session.execute(
                    text(
                        "SELECT historic_clv, predicted_clv, expected_purchases, probability_alive FROM customer_scores"
                    )
                )
            ).all()
        assert len(rows) == 31
        assert all(value is not None and np.isfinite(value) for row in rows for value in row), rows


async def clv_indexes_on(connection) -> set[str]:
    """The CLV indexes customer_scores has, as this connection sees it (on either database)."""

    indexes = await connection.run_sync(lambda sync: inspect(sync).get_indexes("customer_scores"))
    return {index["name"] for index in indexes} & {"ix_customer_scores_clv", "ix_customer_scores_segment_clv"}


async def clv_indexes(identify) -> set[str]:
    async with identify.runtime.db.writer_engine.connect() as connection:
        return await clv_indexes_on(connection)


async def test_a_refit_writes_scores_without_the_clv_indexes_and_leaves_them_in_place_even_when_it_fails(
    suite, monkeypatch
):
    from services.identify.portfolio import refits, repository

    both = {"ix_customer_scores_clv", "ix_customer_scores_segment_clv"}
    identify = await suite.start("identify")
    client = identify.client
    await small_portfolio(client)
    assert await clv_indexes(identify) == both  # at head
    during: list[set[str]] = []
    write_scores = repository.write_scores

    async def observed(session, columns, *, at):
        during.append(await clv_indexes_on(await session.connection()))
        await write_scores(session, columns, at=at)

    monkeypatch.setattr(repository, "write_scores", observed)
    assert (await refit(client, calibration_end=SMALL_PORTFOLIO_END, time_unit="day"))["status"] == "done"
    assert during == [set()]  # the bulk write ran without them
    assert await clv_indexes(identify) == both  # and they were built again after it

    async def failing(session, columns, *, at):
        raise RuntimeError("disk full")

    monkeypatch.setattr(repository, "write_scores", failing)
    state = await refit(client, calibration_end=SMALL_PORTFOLIO_END, time_unit="day")
    assert state["status"] == "failed" and state["failure"] == "disk full"
    assert await clv_indexes(identify) == both

    # A process killed mid-write leaves them dropped: the next start-up builds them.
    async with transaction(identify.runtime.db.writer) as session:
        await repository.drop_rank_indexes(session)
    assert await clv_indexes(identify) == set()
    await refits.fail_interrupted_refits(identify.runtime, rebuild_indexes=True)  # the reaper's first turn
    assert await clv_indexes(identify) == both
    # And lists sorted by CLV still answer in CLV order.
    listed = (await client.get("/v1/customers", params={"sort": "-clv", "limit": 50})).json()["items"]
    clvs = [item["scores"]["predicted_clv"] for item in listed if item["scores"]]
    assert clvs == sorted(clvs, reverse=True) and len(clvs) == 30


async def test_the_reapers_first_turn_sends_no_ddl_when_the_clv_indexes_are_in_place(suite):
    # Any DDL through SQLAlchemy's asyncpg dialect makes every pooled connection drop the
    # statements it prepared, at its next statement: a start-up with nothing to build sends none.
    from services.identify.portfolio import refits

    identify = await suite.start("identify")
    engine = identify.runtime.db.writer_engine.sync_engine
    sent: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        await refits.fail_interrupted_refits(identify.runtime, rebuild_indexes=True)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert sent, "the reaper's turn went through this engine"
    assert not [statement for statement in sent if "CREATE INDEX" in statement.upper()], sent
    assert await clv_indexes(identify) == {"ix_customer_scores_clv", "ix_customer_scores_segment_clv"}
