"""The consumer framework's typed events against a real nats-server: payloads parsed once
by their contract's tolerant reader, broken payloads parked at once, and merged customers
handed to handlers as their survivors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import select

from shared.events import consumer
from shared.events.contracts import CATALOG
from shared.events.envelope import make_event
from tests.shared import probe
from tests.shared.test_backbone import _dead_letters, publish_raw
from tests.support import wait_until


def raw_event(type: str, data: dict, subject: str | None = None):
    """An event as a producer might send it, its payload not checked against the catalog."""

    return make_event(service="x", type=type, data=data, subject=subject)


async def publish(suite, event) -> None:
    await publish_raw(suite.nats.url, event.type, event.to_json(), event.id)


# --- reading -------------------------------------------------------------------------------


def test_the_reader_gives_aware_utc_times_decimal_amounts_and_ignores_unknown_fields():
    event = raw_event(
        "crm.identify.transaction.recorded",
        {
            "id": "t",
            "customer_id": "c1",
            "amount": "12.50",
            "currency": "EUR",
            "purchase_count": 1,
            "occurred_at": "2024-05-01T12:00:00+02:00",
            "loyalty_tier": "gold",
        },
    )
    typed = CATALOG[event.type].read(event)
    assert typed.data.amount == Decimal("12.50") and isinstance(typed.data.amount, Decimal)
    assert typed.at == datetime(2024, 5, 1, 10, tzinfo=UTC) and typed.at.tzinfo is UTC
    assert typed.customer_id == "c1" and not hasattr(typed.data, "loyalty_tier")

    naive = CATALOG["crm.network.referral.recorded"].read(
        raw_event(
            "crm.network.referral.recorded",
            {"id": "r", "referrer_id": "a", "referred_id": "b", "recorded_at": "2024-05-01T12:00:00"},
        )
    )
    assert naive.at == datetime(2024, 5, 1, 12, tzinfo=UTC)


# --- on a real nats-server ---------------------------------------------------------------


async def test_a_broken_payload_is_dead_lettered_at_once_with_its_validation_error(suite, probe_definition):
    probe_service = await suite.start_definition(probe_definition)
    broken = raw_event("crm.identify.customer.created", {"id": "c-broken", "name": "no created_at"}, "c-broken")
    wrong_type = raw_event("crm.identify.customer.created", {"id": ["c-1"], "created_at": "2024-01-01T00:00:00Z"})
    good = raw_event("crm.identify.customer.created", {"id": "c-good", "created_at": "2024-01-01T00:00:00Z"})
    for event in (broken, wrong_type, good):
        await publish(suite, event)

    await wait_until(lambda: probe.applied_count(probe_service, good.id), what="the good event applied")
    letters = await wait_until(
        lambda: _at_least(_dead_letters(probe_service), 2), what="both broken events dead-lettered"
    )
    by_id = {letter["event_id"]: letter for letter in letters}
    assert set(by_id) == {broken.id, wrong_type.id}
    assert by_id[broken.id]["deliveries"] == 1  # parked at once: no retry can mend it
    assert "created_at" in by_id[broken.id]["error"] and "Field required" in by_id[broken.id]["error"]
    assert "invalid crm.identify.customer.created payload" in by_id[wrong_type.id]["error"]
    assert "id" in by_id[wrong_type.id]["error"] and "valid string" in by_id[wrong_type.id]["error"]
    assert json.loads(by_id[broken.id]["body"])["id"] == broken.id
    assert await probe.applied_count(probe_service, broken.id) == 0


async def _at_least(letters, count: int):
    found = await letters
    return found if len(found) >= count else None


async def test_unknown_fields_and_enum_values_are_read_never_dead_lettered(suite):
    engage = await suite.start("engage")
    value = await suite.start("value")
    at = "2024-05-01T10:00:00Z"
    # A newer lifecycle with a stage this code does not know, and a field it does not know.
    stage = raw_event(
        "crm.lifecycle.stage.changed",
        {
            "customer_id": "c-9",
            "from_stage": "active",
            "to_stage": "hibernating",
            "at": at,
            "cause_event_id": "e",
            "reason": "quiet for a year",
        },
        "c-9",
    )
    await publish(suite, stage)

    async def on_timeline():
        response = await engage.client.get("/v1/customers/c-9/timeline")
        return response.json()["items"] if response.status_code == 200 else None

    # engage records it; value skips it (no welcome offer) but knows the customer from it.
    items = await wait_until(on_timeline, what="the stage change on engage's timeline")
    assert [(i["type"], i["summary"], i["time"]) for i in items] == [
        ("crm.lifecycle.stage.changed", "Stage active → hibernating", at)
    ]

    async def known_to_value():
        response = await value.client.get("/v1/customers/c-9/offers")
        return response.json() if response.status_code == 200 else None

    assert (await wait_until(known_to_value, what="value to know the customer"))["items"] == []
    assert await _dead_letters(engage) == [] and await _dead_letters(value) == []


async def _referrals_seen(probe_service, count: int) -> list[tuple[str, str]] | None:
    """(referrer, referred) of each referral the probe applied, once there are `count`."""

    async with probe_service.runtime.db.reader() as session:
        rows = (await session.execute(select(probe.referrals_seen))).all()
    return [(r.referrer_id, r.referred_id) for r in rows] if len(rows) == count else None


async def test_merged_customers_reach_handlers_as_survivors_and_every_merge_step_runs(suite):
    probe_service = await suite.start_definition(probe.MERGING_DEFINITION)
    merge = raw_event(
        "crm.identify.customer.merged",
        {"survivor_id": "s-1", "merged_ids": ["m-1", "m-2"], "merged_at": "2024-05-01T10:00:00Z"},
        "s-1",
    )
    referral = raw_event(
        "crm.network.referral.recorded",
        {"id": "r", "referrer_id": "m-1", "referred_id": "other", "recorded_at": "2024-05-01T11:00:00Z"},
        "m-1",
    )
    await publish(suite, merge)

    async def steps_run():
        async with probe_service.runtime.db.reader() as session:
            rows = (await session.execute(select(probe.merge_steps_run).order_by("id"))).all()
        return [(r.step, r.survivor_id, r.merged_ids) for r in rows] or None

    assert await wait_until(steps_run, what="the merge steps") == [
        ("first", "s-1", "m-1,m-2"),
        ("second", "s-1", "m-1,m-2"),
    ]

    await publish(suite, referral)
    assert await wait_until(lambda: _referrals_seen(probe_service, 1), what="the referral applied") == [
        ("s-1", "other")
    ]


async def test_specs_following_merges_share_one_alias_lookup_per_micro_batch(suite, monkeypatch):
    """Each spec holds its own bound method of the alias table; the runner still looks a
    batch's customers up once, not once per spec (docs/benchmarks.md, "CPU per purchase").
    Counted where the runner asks, as the lookup runs on the asyncpg connection on
    PostgreSQL, where SQLAlchemy's statement events do not see it."""

    probe_service = await suite.start_definition(probe.TWO_FOLLOWING_DEFINITION)
    lookups: list[set[str]] = []
    looked_up = consumer.to_survivors

    async def counted(session, survivors, events):
        lookups.append({cid for event in events for cid in event.named_ids()})
        return await looked_up(session, survivors, events)

    monkeypatch.setattr(consumer, "to_survivors", counted)
    referral = raw_event(
        "crm.network.referral.recorded",
        {"id": "r", "referrer_id": "a-1", "referred_id": "a-2", "recorded_at": "2024-05-01T11:00:00Z"},
        "a-1",
    )
    await publish(suite, referral)
    applied = await wait_until(lambda: _referrals_seen(probe_service, 2), what="both specs applied the referral")
    assert applied == [("a-1", "a-2")] * 2
    assert lookups == [{"a-1", "a-2"}]
