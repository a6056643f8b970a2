"""The customer-profile read model engage and value keep (shared/events/customer_profiles.py),
filled from identify's and lifecycle's real events and folded on a merge."""

from __future__ import annotations

from datetime import UTC, datetime

import nats
import pytest
from sqlalchemy import func, select

from shared.events.envelope import make_event
from tests.support import wait_until


def _profiles(name):
    from services.engage.models import profiles as engage_profiles
    from services.value.models import profiles as value_profiles

    return engage_profiles if name == "engage" else value_profiles


async def _get(service, name, customer_id):
    async with service.runtime.db.reader() as session:
        return await _profiles(name).get(session, customer_id)


async def _publish(url, event):
    nc = await nats.connect(url)
    try:
        await nc.jetstream().publish(event.type, event.to_json(), headers={"Nats-Msg-Id": event.id})
    finally:
        await nc.close()


def _scored(customer_id, segment, kinds, at):
    return make_event(
        service="identify",
        type="crm.identify.customer.scored",
        data={
            "customer_id": customer_id,
            "model_version": 1,
            "segment": segment,
            "kinds": kinds,
            "predicted_clv": 420.5,
            "probability_alive": 0.8,
            "expected_purchases": 1.5,
            "clv_band": "high",
            "scored_at": at.isoformat(),
        },
        subject=customer_id,
    )


@pytest.mark.parametrize("name", ["engage", "value"])
async def test_scores_stages_and_purchases_reach_the_profile_and_a_merge_folds_them(suite, name):
    identify = await suite.start("identify")
    await suite.start("lifecycle")
    service = await suite.start(name)
    a = (await identify.client.post("/v1/customers", json={"email": f"a-{name}@example.com"})).json()
    b = (await identify.client.post("/v1/customers", json={"email": f"b-{name}@example.com"})).json()
    for customer, when in ((a, "2026-03-01T10:00:00Z"), (b, "2026-01-15T10:00:00Z"), (b, "2026-04-02T10:00:00Z")):
        response = await identify.client.post(
            "/v1/transactions",
            json={"customer_id": customer["id"], "amount": "25.00", "currency": "USD", "occurred_at": when},
        )
        assert response.status_code == 201, response.text

    async def bought(customer_id, purchases):
        profile = await _get(service, name, customer_id)
        # Lifecycle's stage: prospect at creation, new after the first purchase (either may land first).
        return (
            profile
            if profile and profile["purchases"] == purchases and profile["stage"] not in (None, "prospect")
            else None
        )

    profile_a = await wait_until(lambda: bought(a["id"], 1), what="a's first purchase and stage")
    assert profile_a["stage"] == "new"
    assert profile_a["last_purchase_at"] == datetime(2026, 3, 1, 10, tzinfo=UTC)

    # A newer score wins; an older one arriving late does not overwrite it.
    newer = _scored(a["id"], "champions", ["benchmark", "high_future_value"], datetime(2026, 5, 1, tzinfo=UTC))
    await _publish(suite.nats.url, newer)
    await _publish(suite.nats.url, _scored(a["id"], "hibernating", [], datetime(2026, 4, 1, tzinfo=UTC)))

    async def scored():
        profiles = _profiles(name)
        profile = await _get(service, name, a["id"])
        async with service.runtime.db.reader() as session:
            count = await session.scalar(
                select(func.count()).select_from(profiles.table).where(profiles.has_kind("benchmark"))
            )
        return profile if profile["segment"] and count == 1 else None

    profile_a = await wait_until(scored, what="a's score")
    assert (profile_a["segment"], profile_a["kinds"]) == ("champions", ["benchmark", "high_future_value"])
    assert profile_a["predicted_clv"] == pytest.approx(420.5)

    await wait_until(lambda: bought(b["id"], 2), what="b's two purchases")
    merged = await identify.client.post(f"/v1/customers/{a['id']}/merge", json={"merge": [b["id"]]})
    assert merged.status_code == 200, merged.text

    async def folded():
        survivor = await _get(service, name, a["id"])
        gone = await _get(service, name, b["id"])
        return survivor if survivor["purchases"] == 3 and gone is None else None

    survivor = await wait_until(folded, what="b folded into a")
    assert survivor["first_purchase_at"] == datetime(2026, 1, 15, 10, tzinfo=UTC)
    assert survivor["last_purchase_at"] == datetime(2026, 4, 2, 10, tzinfo=UTC)
    assert survivor["segment"] == "champions"


async def test_the_newest_score_wins_within_one_micro_batch(suite):
    # On PostgreSQL both scores of the test above came in one pull: the batch kept the
    # last one read (the older) instead of the newest.
    from shared.db.uow import transaction
    from shared.events.contracts import CATALOG

    value = await suite.start("value")
    profiles = _profiles("value")
    newer = _scored("c-1", "champions", ["benchmark"], datetime(2026, 5, 1, tzinfo=UTC))
    older = _scored("c-1", "hibernating", [], datetime(2026, 4, 1, tzinfo=UTC))
    contract = CATALOG["crm.identify.customer.scored"]
    async with transaction(value.runtime.db.writer) as session:
        await profiles.apply(session, [contract.read(newer), contract.read(older)])
    profile = await _get(value, "value", "c-1")
    assert (profile["segment"], profile["kinds"]) == ("champions", ["benchmark"])
