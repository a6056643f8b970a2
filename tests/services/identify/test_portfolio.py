"""Portfolio analysis through the identify service: refits, the model, scores, views."""

from __future__ import annotations

import asyncio
import json

import nats
import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy

from tests.support import cdnow_dir, wait_until

CDNOW_SAMPLE = cdnow_dir() / "CDNOW_sample.txt"
PUBLISHED = {
    "bgnbd": {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426},
    "pareto_nbd": {"r": 0.553, "alpha": 10.578, "s": 0.606, "beta": 11.669},
    "gamma_gamma": {"p": 6.25, "q": 3.74, "gamma": 15.44},
}


def same_to_3_significant_digits(value: float, published: float) -> bool:
    return float(f"{value:.3g}") == float(f"{published:.3g}")


async def create_customer(client, **fields) -> str:
    response = await client.post("/v1/customers", json=fields)
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def record(client, items: list[dict]) -> None:
    for start in range(0, len(items), 1000):
        response = await client.post("/v1/transactions:batch", json={"items": items[start : start + 1000]})
        assert response.status_code == 200, response.text[:500]
        errors = [item for item in response.json()["items"] if item["status"] == "error"]
        assert not errors, errors[:3]


async def refit(client, **body) -> dict:
    response = await client.post("/v1/portfolio/refits", json=body)
    assert response.status_code == 202, response.text
    refit_id = response.json()["id"]

    async def finished():
        state = (await client.get(f"/v1/portfolio/refits/{refit_id}")).json()
        return state if state["status"] in ("done", "failed") else None

    return await wait_until(finished, timeout=120, interval=0.1, what="the refit to finish")


async def import_cdnow_sample(client) -> dict:
    """The 1/10 CDNOW sample (6,919 transactions, 2,357 customers) through an import job."""

    response = await client.post(
        "/v1/imports",
        files={"file": ("CDNOW_sample.txt", CDNOW_SAMPLE.read_bytes())},
        data={
            "columns": "master_id,sample_id,date,cds,dollars",
            "currency": "USD",
            "create_customers": "true",
            "mapping": json.dumps({"master_id": "customer_external_id", "date": "occurred_at", "dollars": "amount"}),
        },
    )
    assert response.status_code == 202, response.text

    async def finished():
        state = (await client.get(f"/v1/imports/{response.json()['id']}")).json()
        return state if state["status"] != "running" else None

    job = await wait_until(finished, timeout=120, interval=0.1, what="the CDNOW import")
    assert (job["status"], job["recorded"], job["rejected"], job["customers_created"]) == ("done", 6919, 0, 2357), job
    return job


async def test_a_refit_on_cdnow_reproduces_the_published_parameters_and_scores_everyone(suite):
    identify = await suite.start("identify")
    client = identify.client
    assert (await client.get("/v1/portfolio/model")).status_code == 404
    await import_cdnow_sample(client)

    done = await refit(client, calibration_end="1997-09-30", time_unit="week")
    assert done["status"] == "done", done
    assert done["customers_scored"] == 2357
    model = (await client.get("/v1/portfolio/model")).json()
    assert model["version"] == done["model_version"] == 1
    assert model["time_unit"] == "week" and model["calibration_end"] == "1997-09-30"
    assert model["as_of"] == "1998-06-30" and model["customers"] == 2357
    for family, params in PUBLISHED.items():
        for name, published in params.items():
            assert same_to_3_significant_digits(model[family][name], published), (family, name, model[family])
    assert round(model["bgnbd"]["log_likelihood"], 1) == -9582.4
    assert round(model["pareto_nbd"]["log_likelihood"], 1) == -9595.0

    # Every customer carries scores now, shown on the customer itself.
    first = (await client.get("/v1/customers", params={"limit": 1})).json()["items"][0]
    some = (await client.get(f"/v1/customers/{first['id']}")).json()
    scores = some["scores"]
    assert scores["model_version"] == 1
    assert all(1 <= scores[key] <= 5 for key in ("recency", "frequency", "monetary"))
    assert 0 <= scores["probability_alive"] <= 1 and scores["predicted_clv"] >= 0
    assert scores["segment"]

    segments = (await client.get("/v1/portfolio/segments")).json()
    assert segments["customers"] == 2357 and segments["model_version"] == 1
    assert round(sum(s["revenue"] for s in segments["segments"]), 2) == pytest.approx(244091.94, abs=0.05)
    assert {s["segment"] for s in segments["segments"]} >= {"champions", "lost", "hibernating", "at_risk"}

    pareto = (await client.get("/v1/portfolio/pareto", params=[("top", 0.2), ("top", 1.0)])).json()
    assert pareto["customers"] == 2357
    assert pareto["revenue"] == pytest.approx(244091.94, abs=0.05)
    top20, everyone = pareto["shares"]
    assert top20["top"] == 0.2 and top20["customers"] == 472
    assert 0.5 < top20["revenue_share"] < 0.9 and everyone["revenue_share"] == pytest.approx(1.0)
    assert 0 < pareto["gini"] < 1
    assert pareto["lorenz"][0] == [0.0, 0.0] and pareto["lorenz"][-1] == [1.0, 1.0]

    high, cursor = [], None
    while True:
        params = {"kind": "high_future_value", "limit": 100, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/portfolio/significant", params=params)).json()
        high += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # The top 10% by predicted CLV (ties at the cut may add a few).
    assert 230 <= len(high) <= 250 and len({item["customer_id"] for item in high}) == len(high)
    values = [item["evidence"]["predicted_clv"] for item in high]
    assert values == sorted(values, reverse=True)
    assert all(v >= item["evidence"]["threshold"] for v, item in zip(values, high))
    inspiration = (await client.get("/v1/portfolio/significant", params={"kind": "inspiration"})).json()
    assert inspiration["items"] == [] and inspiration["note"].startswith("inspiration: customers with at least 1")


# small_portfolio's purchases end in June 2026: a refit calibrated at "today" would
# fit a different model every day (and Pareto/NBD stops converging as they age).
SMALL_PORTFOLIO_END = "2026-07-01"


async def small_portfolio(client, count: int = 30) -> list[str]:
    """`count` customers buying on a few days each, enough for a model to fit."""

    ids = [await create_customer(client, external_id=f"c{i}") for i in range(count)]
    items = []
    for i, customer_id in enumerate(ids):
        for day in range(1, 2 + i % 5):
            items.append(
                {
                    "customer_id": customer_id,
                    "amount": str(10 + i),
                    "currency": "USD",
                    "occurred_at": f"2026-0{1 + day}-{10 + i % 15}T10:00:00Z",
                    "margin": f"{(10 + i) * (0.05 if i % 3 else 0.5):.2f}",
                    "external_id": f"t-{i}-{day}",
                }
            )
    await record(client, items)
    return ids


async def test_each_recorded_purchase_rescores_its_customer_and_emits_scored(suite):
    identify = await suite.start("identify")
    client = identify.client
    ids = await small_portfolio(client)
    before = (await client.get(f"/v1/customers/{ids[0]}")).json()
    assert before["scores"] is None  # no model yet: nothing is scored
    assert (await refit(client, calibration_end=SMALL_PORTFOLIO_END, time_unit="day"))["status"] == "done"
    scored = (await client.get(f"/v1/customers/{ids[0]}")).json()["scores"]
    assert scored["frequency"] is not None

    nc = await nats.connect(suite.nats.url)
    try:
        js = nc.jetstream()
        # Only what comes next: the refit emitted an event for everyone it scored.
        sub = await js.pull_subscribe(
            "crm.identify.customer.scored",
            durable="probe-scored",
            config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW),
        )
        response = await client.post(
            "/v1/transactions",
            json={
                "customer_id": ids[0],
                "amount": "500",
                "currency": "USD",
                "occurred_at": "2026-06-20T10:00:00Z",
            },
        )
        assert response.status_code == 201
        message = (await sub.fetch(1, timeout=10))[0]
        event = json.loads(message.data)
    finally:
        await nc.close()
    assert event["subject"] == ids[0] and event["data"]["model_version"] == 1
    after = (await client.get(f"/v1/customers/{ids[0]}")).json()["scores"]
    assert after["scored_at"] > scored["scored_at"]
    assert after["monetary"] >= scored["monetary"] and after["recency"] >= scored["recency"]
    assert event["data"]["segment"] == after["segment"]
    assert event["data"]["predicted_clv"] == after["predicted_clv"]


async def test_costs_lower_historic_value_and_validate(suite):
    identify = await suite.start("identify")
    client = identify.client
    ids = await small_portfolio(client)
    await refit(client, calibration_end=SMALL_PORTFOLIO_END, time_unit="week")
    before = (await client.get(f"/v1/customers/{ids[3]}")).json()["scores"]["historic_clv"]
    assert (await client.get(f"/v1/customers/{ids[3]}/costs")).json()["acquisition"] == "0"
    response = await client.put(f"/v1/customers/{ids[3]}/costs", json={"acquisition": "25.50", "service": "4"})
    assert response.status_code == 200, response.text
    assert response.json()["acquisition"] == "25.5" and response.json()["selling"] == "0"
    after = (await client.get(f"/v1/customers/{ids[3]}")).json()["scores"]["historic_clv"]
    assert after < before - 29.5  # 29.50 of costs, compounded from the first purchase
    bad = await client.put(f"/v1/customers/{ids[3]}/costs", json={"acquisition": "-1"})
    assert bad.status_code == 422 and "acquisition" in bad.text
    unknown = await client.put("/v1/customers/nobody/costs", json={"acquisition": "1"})
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
    extra = await client.put(f"/v1/customers/{ids[3]}/costs", json={"acquisiton": "1"})
    assert extra.status_code == 422


async def test_thin_margin_volume_buyers_are_cost_absorbers(suite):
    identify = await suite.start("identify")
    client = identify.client
    await small_portfolio(client, count=30)
    await refit(client, calibration_end=SMALL_PORTFOLIO_END, time_unit="day")
    absorbers = (await client.get("/v1/portfolio/significant", params={"kind": "cost_absorber"})).json()
    assert absorbers["items"], absorbers
    for item in absorbers["items"]:
        evidence = item["evidence"]
        assert evidence["margin_ratio"] <= evidence["thin_margin"]
        assert evidence["purchases"] >= evidence["volume_threshold"]
        customer = (await client.get(f"/v1/customers/{item['customer_id']}")).json()
        assert "cost_absorber" in customer["scores"]["kinds"]
        assert customer["scores"]["evidence"]["cost_absorber"] == evidence


async def test_customers_others_follow_are_benchmarks_from_network_referrals(suite):
    identify = await suite.start("identify")
    await suite.start("network")
    client = identify.client
    ids = await small_portfolio(client)
    friends = [await create_customer(client, external_id=f"friend-{i}", referred_by=ids[5]) for i in range(3)]

    async def referrals_seen():
        async with identify.runtime.db.reader() as session:
            from sqlalchemy import text

            return (await session.execute(text("SELECT COUNT(*) FROM referrals_seen"))).scalar() == 3

    await wait_until(referrals_seen, timeout=20, what="network's referrals to reach identify")
    await refit(client, calibration_end=SMALL_PORTFOLIO_END, time_unit="week")
    page = (await client.get("/v1/portfolio/significant", params={"kind": "benchmark"})).json()
    assert [item["customer_id"] for item in page["items"]] == [ids[5]]
    evidence = page["items"][0]["evidence"]
    assert evidence["referrals"] == 3 and sorted(evidence["referred"]) == sorted(friends)
    assert (evidence["rules"], evidence["sources"]) == (["referrals"], ["crm.network.referral.recorded"])
    assert "helpful_marks" not in evidence


async def test_what_referred_customers_spend_makes_their_referrer_a_benchmark(suite):
    identify = await suite.start("identify")
    await suite.start("network")
    client = identify.client
    ids = await small_portfolio(client)
    await refit(client, calibration_end=SMALL_PORTFOLIO_END, time_unit="week")
    # One referral (the referrals rule needs 2): only the money it brings can make ids[2] a benchmark.
    friend = await create_customer(client, external_id="friend", referred_by=ids[2])

    async def referral_seen():
        async with identify.runtime.db.reader() as session:
            from sqlalchemy import text

            return (await session.execute(text("SELECT COUNT(*) FROM referrals_seen"))).scalar() == 1

    await wait_until(referral_seen, timeout=20, what="network's referral to reach identify")

    async def benchmark_evidence():
        customer = (await client.get(f"/v1/customers/{ids[2]}")).json()
        return customer["scores"]["evidence"].get("benchmark")

    def buy(amount: str, n: int) -> dict:
        return {
            "customer_id": friend,
            "amount": amount,
            "currency": "USD",
            "occurred_at": f"2026-06-0{n}T10:00:00Z",
            "external_id": f"friend-{n}",
        }

    await record(client, [buy("600", 1)])  # 600 of the default 1000: not yet
    assert await benchmark_evidence() is None
    await record(client, [buy("450", 2)])  # the friend's purchase re-scores its referrer
    evidence = await benchmark_evidence()
    assert evidence == {
        "rules": ["referred_revenue"],
        "sources": ["crm.identify.transaction.recorded"],
        "referred_revenue": 1050.0,
        "min_referred_revenue": 1000.0,
        "referred": [friend],
    }
    # A refit judges it the same way.
    await refit(client, calibration_end=SMALL_PORTFOLIO_END, time_unit="week")
    page = (await client.get("/v1/portfolio/significant", params={"kind": "benchmark"})).json()
    assert [(item["customer_id"], item["evidence"]) for item in page["items"]] == [(ids[2], evidence)]


def _helpfulness(customer_id: str, marks: int, at: str):
    from shared.events.contracts import CATALOG
    from shared.events.envelope import make_event

    subject = "crm.engage.community.helpfulness.changed"
    data = {"customer_id": customer_id, "helpful_marks": marks, "changed_at": at}
    return make_event(
        service="engage", type=subject, data=data, subject=customer_id, dataschema=CATALOG[subject].dataschema
    )


async def test_helpful_marks_in_communities_make_a_benchmark_customer_and_rescore_it(suite):
    identify = await suite.start("identify")
    client = identify.client
    ids = await small_portfolio(client)
    await refit(client, calibration_end=SMALL_PORTFOLIO_END, time_unit="week")
    nc = await nats.connect(suite.nats.url)

    async def send(event) -> None:
        await nc.jetstream().publish(event.type, event.to_json(), headers={"Nats-Msg-Id": event.id})

    async def benchmarks() -> dict[str, dict]:
        page = (await client.get("/v1/portfolio/significant", params={"kind": "benchmark"})).json()
        return {item["customer_id"]: item["evidence"] for item in page["items"]}

    try:
        # 12 marks (the default threshold is 10) make ids[3] a benchmark; 9 leave ids[4] as it was.
        await send(_helpfulness(ids[3], 12, "2026-08-01T00:00:00Z"))
        await send(_helpfulness(ids[4], 9, "2026-08-01T00:00:00Z"))
        [found] = await wait_until(lambda: _when(benchmarks, lambda b: ids[3] in b), what="ids[3] a benchmark")
        assert list(found) == [ids[3]]
        assert found[ids[3]] == {
            "rules": ["helpful_marks"],
            "sources": ["crm.engage.community.helpfulness.changed"],
            "helpful_marks": 12,
            "min_helpful_marks": 10,
        }
        customer = (await client.get(f"/v1/customers/{ids[3]}")).json()
        assert "benchmark" in customer["scores"]["kinds"]

        # An older total read late changes nothing (ids[4]'s later event proves it was read);
        # a newer, lower one takes the kind away.
        await send(_helpfulness(ids[3], 3, "2026-07-01T00:00:00Z"))
        await send(_helpfulness(ids[4], 10, "2026-08-02T00:00:00Z"))
        [found] = await wait_until(lambda: _when(benchmarks, lambda b: ids[4] in b), what="ids[4] a benchmark")
        assert (found[ids[3]]["helpful_marks"], found[ids[4]]["helpful_marks"]) == (12, 10)
        await send(_helpfulness(ids[3], 4, "2026-08-02T00:00:00Z"))
        await wait_until(lambda: _when(benchmarks, lambda b: list(b) == [ids[4]]), what="ids[3] no benchmark")
        scored = await _scored_events(nc, ids[3])
        assert [("benchmark" in e["data"]["kinds"]) for e in scored][-2:] == [True, False]
    finally:
        await nc.close()


async def _when(read, predicate):
    """`(value,)` once `predicate(value)` holds (truthy even for an empty value), else None."""
    value = await read()
    return (value,) if predicate(value) else None


async def _scored_events(nc, customer_id: str) -> list[dict]:
    sub = await nc.jetstream().pull_subscribe("crm.identify.customer.scored", stream="CRM")
    seen: list[dict] = []
    while True:
        try:
            msgs = await sub.fetch(500, timeout=0.5)
        except (TimeoutError, nats.errors.TimeoutError):
            break
        for msg in msgs:
            await msg.ack()
            event = json.loads(msg.data)
            if event["data"]["customer_id"] == customer_id:
                seen.append(event)
    return seen


async def test_customers_whose_ideas_shipped_are_inspirations_with_the_ideas_as_evidence(suite):
    identify = await suite.start("identify")
    value = await suite.start("value")
    client = identify.client
    ids = await small_portfolio(client)
    await refit(client, calibration_end=SMALL_PORTFOLIO_END, time_unit="week")

    async def known(customer_id):
        return (await value.client.get(f"/v1/customers/{customer_id}/ideas")).status_code == 200

    await wait_until(lambda: known(ids[7]), what="value knows the customer")
    idea = {"customer_id": ids[7], "title": "Gift wrapping", "description": "For birthdays", "product_area": "service"}
    shipped = (await value.client.post("/v1/ideas", json=idea)).json()
    unshipped = (await value.client.post("/v1/ideas", json={**idea, "customer_id": ids[8]})).json()
    for step in ("under_review", "planned", "shipped"):
        response = await value.client.post(f"/v1/ideas/{shipped['id']}/status", json={"status": step})
        assert response.status_code == 200, response.text
    await value.client.post(f"/v1/ideas/{unshipped['id']}/status", json={"status": "under_review"})

    async def inspirations():
        page = (await client.get("/v1/portfolio/significant", params={"kind": "inspiration"})).json()
        return page if page["items"] else None

    # The shipped idea re-scores its proposer at once, under the current model.
    page = await wait_until(inspirations, timeout=20, what="the shipped idea to reach identify")
    assert [item["customer_id"] for item in page["items"]] == [ids[7]]
    assert page["items"][0]["evidence"] == {
        "shipped_ideas": 1,
        "min_shipped_ideas": 1,
        "ideas": [shipped["id"]],
        "source": "crm.value.idea.shipped",
    }
    assert "inspiration" in (await client.get(f"/v1/customers/{ids[7]}")).json()["scores"]["kinds"]
    # A refit keeps it, and a merge hands the evidence to the survivor.
    await refit(client, calibration_end=SMALL_PORTFOLIO_END, time_unit="week")
    assert (await inspirations())["items"][0]["customer_id"] == ids[7]
    merged = await client.post(f"/v1/customers/{ids[9]}/merge", json={"merge": [ids[7]]})
    assert merged.status_code == 200, merged.text
    page = await inspirations()
    assert [item["customer_id"] for item in page["items"]] == [ids[9]]
    assert page["items"][0]["evidence"]["ideas"] == [shipped["id"]]


async def test_refit_errors_are_clear(suite):
    identify = await suite.start("identify")
    client = identify.client
    failed = await refit(client, time_unit="week")
    assert failed["status"] == "failed" and "no purchases" in failed["failure"]
    assert (await client.post("/v1/portfolio/refits", json={"time_unit": "month"})).status_code == 422
    assert (await client.post("/v1/portfolio/refits", json={"calibration_end": "soon"})).status_code == 422
    missing = await client.get("/v1/portfolio/refits/nope")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert (await client.get("/v1/portfolio/significant", params={"kind": "vip"})).status_code == 422
    assert (await client.get("/v1/portfolio/pareto", params={"top": 0})).status_code == 422
    listing = (await client.get("/v1/portfolio/refits")).json()
    assert [item["id"] for item in listing["items"]] == [failed["id"]]
    empty = (await client.get("/v1/portfolio/pareto")).json()
    assert empty["customers"] == 0 and empty["gini"] == 0.0


async def test_a_pareto_nbd_fit_without_optimum_leaves_the_refit_its_bgnbd_model():
    from services.identify.portfolio.refits import _pareto_nbd_outcome

    async def diverging():
        raise ArithmeticError("fit did not converge: no step decreases the objective")

    assert await _pareto_nbd_outcome(asyncio.ensure_future(diverging())) == (
        None,
        "fit did not converge: no step decreases the objective",
    )

    async def fitted():
        return {"r": 0.55}

    assert await _pareto_nbd_outcome(asyncio.ensure_future(fitted())) == ({"r": 0.55}, None)
