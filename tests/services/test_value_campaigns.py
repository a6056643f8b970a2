"""value's offer templates and campaigns against a real nats-server and database: the read
models fed by crafted events on the real bus (identify's customers, scores and purchases,
engage's consent and delivery reports), as tests/services/test_customer_profiles.py does."""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime, timedelta

import nats
import numpy as np
from scipy import stats
from sqlalchemy import func, select

from services.value.campaigns import service as campaign_service
from services.value.campaigns.models import CampaignMember
from services.value.models import Offer, messaging
from tests.services.test_engage import catalog_event, start
from tests.services.test_value import _read_stream
from tests.support import wait_until

NOW = datetime.now(UTC)


def _id(n: int) -> str:
    return f"00000000-0000-7000-8000-{n:012d}"


async def _publish_all(url: str, events) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        for event in events:
            await js.publish(event.type, event.to_json(), headers={"Nats-Msg-Id": event.id})
    finally:
        await nc.close()


def _created(cid):
    data = {"id": cid, "created_at": "2026-01-01T00:00:00Z"}
    return catalog_event("identify", "crm.identify.customer.created", data, cid)


def _scored(cid, segment, clv=100.0):
    data = {
        "customer_id": cid,
        "model_version": 1,
        "segment": segment,
        "kinds": [],
        "predicted_clv": clv,
        "probability_alive": 0.7,
        "scored_at": "2026-06-01T00:00:00Z",
    }
    return catalog_event("identify", "crm.identify.customer.scored", data, cid)


def _consent(cid, granted=True, channel="email", at="2026-06-01T00:00:00Z"):
    data = {
        "id": f"c-{cid}-{at}",
        "customer_id": cid,
        "purpose": "marketing",
        "channel": channel,
        "granted": granted,
        "legal_basis": "consent",
        "source": "api",
        "changed_at": at,
    }
    return catalog_event("engage", "crm.engage.consent.changed", data, cid)


def _purchase(tid, cid, amount, at):
    data = {
        "id": tid,
        "customer_id": cid,
        "amount": amount,
        "currency": "USD",
        "reporting_amount": amount,
        "reporting_currency": "USD",
        "occurred_at": at.isoformat(),
        "purchase_count": 1,
    }
    return catalog_event("identify", "crm.identify.transaction.recorded", data, cid)


def _correction(kind, tid, cid, amount, at):
    data = {
        "transaction_id": tid,
        "customer_id": cid,
        "amount": amount,
        "currency": "USD",
        "reporting_amount": amount,
        "reporting_currency": "USD",
        "reason": "test",
    }
    if kind == "refunded":
        data.update(refund_id=f"r-{tid}", occurred_at=at.isoformat())
    else:
        data.update(voided_at=at.isoformat(), purchase_count=0)
    return catalog_event("identify", f"crm.identify.transaction.{kind}", data, cid)


async def _count(value, table, *where) -> int:
    async with value.runtime.db.reader() as session:
        return (await session.execute(select(func.count()).select_from(table).where(*where))).scalar_one()


async def _template(value, **body) -> dict:
    body = {"kind": "percent_off", "title": "10% off", "percent_off": "10", "cost": "2.50", **body}
    response = await value.client.post("/v1/offer-templates", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def _known(value, cids) -> None:
    async def known():
        for cid in cids:
            if (await value.client.get(f"/v1/customers/{cid}/offers")).status_code != 200:
                return False
        return True

    await wait_until(known, what="value knows the customers")


async def test_templates_issue_coupons_within_budget_and_caps_and_redeem_naming_the_purchase(suite):
    value = await start(suite, "value")
    a, b, c = _id(1), _id(2), _id(3)
    await _publish_all(suite.nats.url, [_created(x) for x in (a, b, c)] + [_scored(a, "champions")])
    await _known(value, [a, b, c])

    bad = await value.client.post("/v1/offer-templates", json={"kind": "points", "title": "Points"})
    assert bad.status_code == 422 and "points" in bad.text
    mixed = await value.client.post(
        "/v1/offer-templates", json={"kind": "points", "title": "P", "points": 5, "percent_off": "3"}
    )
    assert mixed.status_code == 422
    tpl = await _template(
        value,
        kind="points",
        title="500 points",
        percent_off=None,
        points=500,
        budget=2,
        per_customer_cap=1,
        valid_days=10,
    )

    first = await value.client.post(f"/v1/offer-templates/{tpl['id']}/offers", json={"customer_id": a})
    assert first.status_code == 201, first.text
    offer = first.json()
    assert offer["points"] == 500 and offer["template_id"] == tpl["id"] and offer["segment"] == "champions"
    assert len(offer["coupon_code"]) == 14 and offer["coupon_code"].count("-") == 2
    assert offer["cost"] == "2.5" and offer["expires_at"] is not None

    capped = await value.client.post(f"/v1/offer-templates/{tpl['id']}/offers", json={"customer_id": a})
    assert capped.status_code == 409 and capped.json()["error"] == "customer_cap"
    second = await value.client.post(f"/v1/offer-templates/{tpl['id']}/offers", json={"customer_id": b})
    assert second.status_code == 201
    assert second.json()["coupon_code"] != offer["coupon_code"]
    over = await value.client.post(f"/v1/offer-templates/{tpl['id']}/offers", json={"customer_id": c})
    assert over.status_code == 409 and over.json()["error"] == "budget_exhausted"
    # Refused, it wrote nothing: two offers, the template counts two.
    assert await _count(value, Offer.__table__, Offer.__table__.c.template_id == tpl["id"]) == 2
    assert (await value.client.get(f"/v1/offer-templates/{tpl['id']}")).json()["issued"] == 2
    unknown = await value.client.post(f"/v1/offer-templates/{tpl['id']}/offers", json={"customer_id": _id(99)})
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["field"] == "body.customer_id"

    issued = await _read_stream(suite.nats.url, "crm.value.offer.issued", 2)
    assert {e["data"]["coupon_code"] for e in issued} == {offer["coupon_code"], second.json()["coupon_code"]}
    assert {e["data"]["points"] for e in issued} == {500}

    wrong = await value.client.post(f"/v1/offers/{offer['id']}/redeem", json={"code": "AAAA-AAAA-AAAA"})
    assert wrong.status_code == 422 and wrong.json()["detail"][0]["field"] == "body.code"
    typed = offer["coupon_code"].lower().replace("-", " ")
    redeemed = await value.client.post(
        f"/v1/offers/{offer['id']}/redeem", json={"code": typed, "transaction_id": "t-1"}
    )
    assert redeemed.status_code == 200, redeemed.text
    assert redeemed.json()["status"] == "redeemed" and redeemed.json()["redeemed_transaction_id"] == "t-1"
    event = (await _read_stream(suite.nats.url, "crm.value.offer.redeemed", 1))[0]
    assert event["data"]["transaction_id"] == "t-1" and event["data"]["template_id"] == tpl["id"]
    # The old body-less redemption still works.
    assert (await value.client.post(f"/v1/offers/{second.json()['id']}/redeem")).status_code == 200


def _holdout(seed, cid, share):
    """decisions.md's assignment, computed here on its own."""
    return int(hashlib.sha256(f"{seed}:{cid}".encode()).hexdigest()[:16], 16) / 16**16 < share


async def test_a_campaign_launches_to_its_audience_with_a_holdout_and_measures_uplift(suite, monkeypatch):
    # A bulk message request carries at most MAX_RECIPIENTS: 4 here, so the launch makes several.
    monkeypatch.setattr(campaign_service, "MAX_RECIPIENTS", 4)
    value = await start(suite, "value")
    champions = [_id(n) for n in range(1, 41)]
    others = [_id(n) for n in range(41, 46)]
    no_consent, withdrew, sms_only = champions[:3], champions[3], champions[4]
    events = [_created(c) for c in champions + others]
    events += [_scored(c, "champions", clv=200.0 + i) for i, c in enumerate(champions)]
    events += [_scored(c, "hibernating") for c in others]
    events += [_consent(c) for c in champions + others if c not in no_consent and c != sms_only]
    events += [_consent(sms_only, channel="sms"), _consent(withdrew, granted=False, at="2026-07-01T00:00:00Z")]
    await _publish_all(suite.nats.url, events)
    await _known(value, champions + others)
    tpl = await _template(value)

    body = {
        "name": "Champions spring",
        "channel": "email",
        "template_id": tpl["id"],
        "subject": "A gift",
        "body": "Your code: {{ offer_code }}",
        "audience": {"segments": ["champions"], "predicted_clv": {"min": 200}},
        "holdout_share": 0.51,
    }
    assert (await value.client.post("/v1/campaigns", json=body)).status_code == 422
    assert (await value.client.post("/v1/campaigns", json={**body, "holdout_share": -0.1})).status_code == 422
    unknown = await value.client.post("/v1/campaigns", json={**body, "holdout_share": 0.5, "template_id": "nope"})
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["field"] == "body.template_id"
    created = await value.client.post("/v1/campaigns", json={**body, "holdout_share": 0.5})
    assert created.status_code == 201, created.text
    campaign = created.json()
    assert campaign["status"] == "draft" and campaign["allowed_transitions"] == ["scheduled", "running", "cancelled"]
    cid = campaign["id"]
    eligible = [c for c in champions if c not in no_consent and c not in (withdrew, sms_only)]

    async def previewed():
        answer = (await value.client.post(f"/v1/campaigns/{cid}/preview")).json()
        return answer if answer["count"] == len(eligible) else None

    preview = await wait_until(previewed, what="the audience's consents")
    assert len(preview["sample"]) == 10 and {m["segment"] for m in preview["sample"]} == {"champions"}
    changed = await value.client.patch(f"/v1/campaigns/{cid}", json={"holdout_share": 0.3})
    assert changed.status_code == 200 and changed.json()["holdout_share"] == 0.3

    launched = await value.client.post(f"/v1/campaigns/{cid}/launch")
    assert launched.status_code == 200, launched.text
    campaign = launched.json()
    seed = campaign["seed"]
    holdout = {c for c in eligible if _holdout(seed, c, 0.3)}
    treatment = [c for c in eligible if c not in holdout]
    assert campaign["status"] == "running"
    assert (campaign["treatment"], campaign["holdout"]) == (len(treatment), len(holdout))
    assert 0 < len(holdout) < len(eligible)

    again = await value.client.post(f"/v1/campaigns/{cid}/launch")
    assert again.status_code == 409 and again.json()["error"] == "illegal_transition"
    assert "completed, cancelled" in again.json()["detail"]
    edit = await value.client.patch(f"/v1/campaigns/{cid}", json={"audience": {"segments": ["loyal"]}})
    assert edit.status_code == 409 and edit.json()["error"] == "campaign_not_editable"

    # Bulk requests of up to MAX_RECIPIENTS each ask engage to deliver every treatment message.
    bulks = await _read_stream(
        suite.nats.url, "crm.value.messages.requested", math.ceil(len(treatment) / 4), settle=True
    )
    recipients = [r for bulk in bulks for r in bulk["data"]["recipients"]]
    assert sorted(r["customer_id"] for r in recipients) == sorted(treatment)
    assert max(len(bulk["data"]["recipients"]) for bulk in bulks) == 4
    for bulk in bulks:
        shared = bulk["data"]
        assert shared["purpose"] == "marketing" and shared["source_kind"] == "campaign" and shared["source_id"] == cid
    assert all(set(r["fields"]) == {"offer_code", "offer_title"} for r in recipients)
    assert len({r["request_id"] for r in recipients}) == len(treatment)
    request = recipients[0]

    members, cursor = [], None
    while True:
        page = (
            await value.client.get(
                f"/v1/campaigns/{cid}/members", params={"limit": 10, **({"cursor": cursor} if cursor else {})}
            )
        ).json()
        members += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert {m["customer_id"] for m in members if m["group"] == "holdout"} == holdout
    assert all(m["offer_id"] for m in members if m["group"] == "treatment")

    # engage reports a delivery: the member's outcome, and the customer's promotions.
    reached = request["customer_id"]
    report = catalog_event(
        "engage",
        "crm.engage.delivery.reported",
        {
            "request_id": request["request_id"],
            "customer_id": reached,
            "channel": "email",
            "outcome": "bounced",
            "reason": "550 no such user",
            "source_kind": "campaign",
            "source_id": cid,
            "reported_at": NOW.isoformat(),
        },
        reached,
    )
    await _publish_all(suite.nats.url, [report])

    async def delivered():
        items = (await value.client.get(f"/v1/customers/{reached}/promotions")).json()["items"]
        return items if items and items[0]["outcome"] == "bounced" else None

    promotions = await wait_until(delivered, what="the delivery outcome")
    assert promotions[0]["campaign_id"] == cid and promotions[0]["channel"] == "email"
    assert promotions[0]["promoted"] == tpl["title"] and promotions[0]["outcome_reason"] == "550 no such user"
    assert (await value.client.get(f"/v1/customers/{_id(999)}/promotions")).status_code == 404

    # Purchases after launch: some of each group; a refund lowers revenue, a void removes one,
    # and one before launch does not count.
    after = datetime.now(UTC) + timedelta(minutes=1)
    revenue: dict[str, float] = {}
    purchases = []
    # A third of each group buys (at least one of each, whatever the drawn seed put in the holdout).
    buyers = set(treatment[::3]) | set(sorted(holdout)[::3])
    for n, customer in enumerate(eligible):
        if customer in buyers:
            amount = 10 + 7 * (n % 5) + (25 if customer in treatment else 0)
            purchases.append(_purchase(f"t-{n}", customer, f"{amount}.00", after))
            revenue[customer] = float(amount)
    refunded_customer = next(c for c in revenue if c in treatment)
    voided_customer = next(c for c in revenue if c in holdout)
    refund_tid = next(e.data["id"] for e in purchases if e.data["customer_id"] == refunded_customer)
    void_tid = next(e.data["id"] for e in purchases if e.data["customer_id"] == voided_customer)
    corrections = [
        _correction("refunded", refund_tid, refunded_customer, "5.00", after),
        _correction("voided", void_tid, voided_customer, "0", after),
        _purchase("t-early", treatment[-1], "99.00", NOW - timedelta(days=2)),
    ]
    revenue[refunded_customer] -= 5
    del revenue[voided_customer]
    offer_of_reached = next(m["offer_id"] for m in members if m["customer_id"] == reached)
    assert (await value.client.post(f"/v1/offers/{offer_of_reached}/redeem")).status_code == 200
    await _publish_all(suite.nats.url, purchases + corrections)

    t = np.array([revenue.get(c, 0.0) for c in treatment])
    h = np.array([revenue.get(c, 0.0) for c in holdout])

    async def measured():
        answer = (await value.client.get(f"/v1/campaigns/{cid}/results")).json()
        return (
            answer
            if math.isclose(answer["treatment"]["revenue"], t.sum())
            and math.isclose(answer["holdout"]["revenue"], h.sum())
            else None
        )

    results = await wait_until(measured, what="the purchases in the results")
    assert results["treatment"]["customers"] == len(t) and results["holdout"]["customers"] == len(h)
    assert results["treatment"]["converted"] == int((t > 0).sum()) and results["holdout"]["converted"] == int(
        (h > 0).sum()
    )
    assert results["treatment"]["redemptions"] == 1 and results["offer_cost"] == 2.5

    # Independently: the difference of proportions (unpooled normal) and Welch's t interval.
    pt, ph = (t > 0).mean(), (h > 0).mean()
    se = math.sqrt(pt * (1 - pt) / len(t) + ph * (1 - ph) / len(h))
    z = stats.norm.ppf(0.975)
    conversion = results["uplift"]["conversion"]
    assert math.isclose(conversion["value"], pt - ph, abs_tol=1e-9)
    assert math.isclose(conversion["low"], pt - ph - z * se, abs_tol=1e-9)
    assert math.isclose(conversion["high"], pt - ph + z * se, abs_tol=1e-9)
    welch = stats.ttest_ind(t, h, equal_var=False).confidence_interval(0.95)
    rpc = results["uplift"]["revenue_per_customer"]
    assert math.isclose(rpc["value"], t.mean() - h.mean(), abs_tol=1e-9)
    assert math.isclose(rpc["low"], welch.low, rel_tol=1e-9) and math.isclose(rpc["high"], welch.high, rel_tol=1e-9)
    assert math.isclose(results["incremental_revenue"], (t.mean() - h.mean()) * len(t), rel_tol=1e-9)
    assert math.isclose(results["net_incremental_revenue"], results["incremental_revenue"] - 2.5, rel_tol=1e-9)

    done = await value.client.post(f"/v1/campaigns/{cid}/complete")
    assert done.status_code == 200 and done.json()["status"] == "completed" and done.json()["allowed_transitions"] == []
    cancel = await value.client.post(f"/v1/campaigns/{cid}/cancel")
    assert cancel.status_code == 409 and "final" in cancel.json()["detail"]


async def _loyal_with_consent(suite, value, customers) -> None:
    """Customers value knows, in the loyal segment, who consented to marketing on email."""

    await _publish_all(
        suite.nats.url,
        [_created(c) for c in customers] + [_scored(c, "loyal") for c in customers] + [_consent(c) for c in customers],
    )
    await _known(value, customers)


async def test_a_launch_that_cannot_happen_writes_nothing(suite):
    value = await start(suite, "value")
    customers = [_id(n) for n in range(1, 6)]
    await _loyal_with_consent(suite, value, customers)
    small = await _template(value, budget=2)
    body = {
        "name": "N",
        "channel": "email",
        "template_id": small["id"],
        "message_template_id": "tpl-1",
        "holdout_share": 0,
    }

    nobody = (await value.client.post("/v1/campaigns", json={**body, "audience": {"segments": ["champions"]}})).json()
    refused = await value.client.post(f"/v1/campaigns/{nobody['id']}/launch")
    assert refused.status_code == 409 and refused.json()["error"] == "empty_audience"

    async def all_five():
        preview = (await value.client.post(f"/v1/campaigns/{everyone['id']}/preview")).json()
        return preview["count"] == 5

    everyone = (await value.client.post("/v1/campaigns", json=body)).json()
    await wait_until(all_five, what="the consents")
    over = await value.client.post(f"/v1/campaigns/{everyone['id']}/launch")
    assert over.status_code == 409 and over.json()["error"] == "budget_exhausted"

    for campaign in (nobody, everyone):
        assert (await value.client.get(f"/v1/campaigns/{campaign['id']}")).json()["status"] == "draft"
    assert await _count(value, CampaignMember.__table__) == 0
    assert await _count(value, Offer.__table__) == 0
    # The only event is the template's own announcement (crm.value.offer_template.changed).
    assert await _count(value, messaging.outbox, messaging.outbox.c.subject != "crm.value.offer_template.changed") == 0
    assert (await value.client.get(f"/v1/offer-templates/{small['id']}")).json()["issued"] == 0

    scheduled = await value.client.post(
        f"/v1/campaigns/{everyone['id']}/schedule", json={"scheduled_at": "2027-01-01T09:00:00Z"}
    )
    assert scheduled.status_code == 200 and scheduled.json()["status"] == "scheduled"
    completed = await value.client.post(f"/v1/campaigns/{everyone['id']}/complete")
    assert completed.status_code == 409 and "draft, running, cancelled" in completed.json()["detail"]


async def test_a_launch_commits_in_chunks_and_one_cut_short_is_finished_by_launching_again(suite, monkeypatch):
    value = await start(suite, "value")
    customers = [_id(n) for n in range(1, 12)]
    await _loyal_with_consent(suite, value, customers)
    tpl = await _template(value, budget=11)
    body = {"name": "C", "channel": "email", "template_id": tpl["id"], "message_template_id": "t", "holdout_share": 0}
    campaign = (await value.client.post("/v1/campaigns", json=body)).json()

    async def all_eleven():
        return (await value.client.post(f"/v1/campaigns/{campaign['id']}/preview")).json()["count"] == 11

    await wait_until(all_eleven, what="the consents")
    # The process stops after the plan and the first chunk of 4 committed (the second chunk fails).
    monkeypatch.setattr(campaign_service, "LAUNCH_CHUNK", 4)
    real_issue_chunk, chunks = campaign_service._issue_chunk, []

    async def stops_after_one(session, plan, chunk):
        if chunks:
            raise RuntimeError("the process stopped")
        chunks.append(chunk)
        await real_issue_chunk(session, plan, chunk)

    monkeypatch.setattr(campaign_service, "_issue_chunk", stops_after_one)
    try:
        await campaign_service.launch(db=value.runtime.db, campaign_id=campaign["id"])
    except RuntimeError:
        pass
    cut_short = (await value.client.get(f"/v1/campaigns/{campaign['id']}")).json()
    assert (cut_short["status"], cut_short["treatment"], cut_short["allowed_transitions"]) == (
        "launching",
        11,
        ["running"],
    )
    assert await _count(value, Offer.__table__) == 4
    assert await _count(value, CampaignMember.__table__) == 11  # the plan: every member, with its offer id
    assert (await value.client.get(f"/v1/offer-templates/{tpl['id']}")).json()["issued"] == 11  # budget taken once

    monkeypatch.setattr(campaign_service, "_issue_chunk", real_issue_chunk)
    finished = await value.client.post(f"/v1/campaigns/{campaign['id']}/launch")
    assert finished.status_code == 200 and finished.json()["status"] == "running", finished.text
    async with value.runtime.db.reader() as session:
        member_offers = dict((await session.execute(select(CampaignMember.customer_id, CampaignMember.offer_id))).all())
        offer_rows = dict((await session.execute(select(Offer.customer_id, Offer.id))).all())
    assert member_offers == offer_rows and len(offer_rows) == 11  # one offer each, under the planned ids
    issued = await _read_stream(suite.nats.url, "crm.value.offer.issued", 11, settle=True)
    assert sorted(e["data"]["customer_id"] for e in issued) == sorted(customers)
    bulks = await _read_stream(suite.nats.url, "crm.value.messages.requested", 3, settle=True)
    assert sorted(r["customer_id"] for b in bulks for r in b["data"]["recipients"]) == sorted(customers)
    again = await value.client.post(f"/v1/campaigns/{campaign['id']}/launch")
    assert again.status_code == 409 and again.json()["error"] == "illegal_transition"
    # While this process launches a campaign, a second launch of it waits for nothing: 409.
    monkeypatch.setattr(campaign_service, "_launching", {campaign["id"]})
    busy = await value.client.post(f"/v1/campaigns/{campaign['id']}/launch")
    assert busy.status_code == 409 and busy.json()["error"] == "launch_in_progress"


async def test_a_scheduled_campaign_launches_at_its_time_or_goes_back_to_draft_saying_why(suite):
    value = await suite.start("value", campaign_schedule_poll_s=0.1)
    customers = [_id(n) for n in range(1, 4)]
    await _loyal_with_consent(suite, value, customers)
    tpl = await _template(value)
    body = {"name": "S", "channel": "email", "template_id": tpl["id"], "message_template_id": "t", "holdout_share": 0}
    due = (await value.client.post("/v1/campaigns", json=body)).json()
    nobody = (await value.client.post("/v1/campaigns", json={**body, "audience": {"segments": ["lost"]}})).json()
    later = (await value.client.post("/v1/campaigns", json=body)).json()

    async def all_three():
        return (await value.client.post(f"/v1/campaigns/{due['id']}/preview")).json()["count"] == 3

    await wait_until(all_three, what="the consents")
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    for campaign, at in ((due, soon), (nobody, soon), (later, "2099-01-01T00:00:00Z")):
        scheduled = await value.client.post(f"/v1/campaigns/{campaign['id']}/schedule", json={"scheduled_at": at})
        assert scheduled.status_code == 200 and scheduled.json()["status"] == "scheduled"

    async def status_of(campaign, status):
        answer = (await value.client.get(f"/v1/campaigns/{campaign['id']}")).json()
        return answer if answer["status"] == status else None

    ran = await wait_until(lambda: status_of(due, "running"), what="the due campaign launched")
    assert (ran["treatment"], ran["launch_error"]) == (3, None)
    back = await wait_until(lambda: status_of(nobody, "draft"), what="the empty one back to draft")
    assert back["launch_error"].startswith("empty_audience: ") and back["scheduled_at"] is None
    assert (await value.client.get(f"/v1/campaigns/{later['id']}")).json()["status"] == "scheduled"
    assert await _count(value, Offer.__table__) == 3


def _entered(playbook, cid, group, at):
    data = {"playbook_id": playbook, "customer_id": cid, "group": group, "entered_at": at.isoformat()}
    return catalog_event("lifecycle", "crm.lifecycle.playbook.entered", data, cid)


def _offer_requested(playbook, cid, template_id, at):
    data = {
        "request_id": f"r-{playbook}-{cid}",
        "playbook_id": playbook,
        "customer_id": cid,
        "template_id": template_id,
        "requested_at": at.isoformat(),
    }
    return catalog_event("lifecycle", "crm.lifecycle.playbook.offer_requested", data, cid)


async def test_a_playbook_gets_its_offers_and_is_measured_against_its_holdout(suite):
    value = await start(suite, "value")
    customers = [_id(n) for n in range(1, 13)]
    await _publish_all(suite.nats.url, [_created(c) for c in customers] + [_scored(c, "at_risk") for c in customers])
    await _known(value, customers)
    tpl = await _template(value, kind="amount_off", percent_off=None, amount_off={"amount": "5", "currency": "EUR"})
    entered = datetime.now(UTC) - timedelta(days=10)
    treatment, holdout = customers[:8], customers[8:]
    events = [_entered("pb-1", c, "treatment", entered) for c in treatment]
    events += [_entered("pb-1", c, "holdout", entered) for c in holdout]
    events += [_offer_requested("pb-1", c, tpl["id"], entered) for c in treatment[:7]]
    events += [_offer_requested("pb-1", treatment[7], "no-such-template", entered)]
    events += [_offer_requested("pb-1", holdout[0], tpl["id"], entered)]  # never to the holdout
    # Purchases: within 30 days of entering count; one 40 days later does not; one voided.
    spend = {treatment[0]: 50.0, treatment[1]: 20.0, treatment[2]: 35.0, holdout[0]: 10.0}
    events += [_purchase(f"p-{c[-4:]}", c, f"{a}", entered + timedelta(days=2)) for c, a in spend.items()]
    events += [_purchase("p-late", treatment[3], "99", entered + timedelta(days=40))]
    events += [_purchase("p-void", holdout[1], "30", entered + timedelta(days=1))]
    events += [_correction("voided", "p-void", holdout[1], "30", entered + timedelta(days=3))]
    await _publish_all(suite.nats.url, events)

    async def issued():
        count = await _count(value, Offer.__table__, Offer.__table__.c.playbook_id == "pb-1")
        return count == 7

    await wait_until(issued, what="the playbook's offers")
    offers = (await value.client.get("/v1/offers", params={"customer_id": treatment[0]})).json()["items"]
    assert offers[0]["playbook_id"] == "pb-1" and offers[0]["amount_off"] == "5" and offers[0]["currency"] == "EUR"
    assert (await value.client.get("/v1/offers", params={"customer_id": holdout[0]})).json()["items"] == []

    async def measured():
        answer = await value.client.get("/v1/playbooks/pb-1/results")
        body = answer.json()
        return body if answer.status_code == 200 and body["holdout"]["customers"] == 4 else None

    await wait_until(measured, what="the playbook's members")

    async def all_purchases():
        body = (await value.client.get("/v1/playbooks/pb-1/results")).json()
        return body if body["treatment"]["revenue"] == 105.0 and body["holdout"]["revenue"] == 10.0 else None

    results = await wait_until(all_purchases, what="the purchases")
    assert results["treatment"]["customers"] == 8 and results["treatment"]["converted"] == 3
    assert results["holdout"]["converted"] == 1
    assert math.isclose(results["uplift"]["conversion"]["value"], 3 / 8 - 1 / 4)
    t = np.array([spend.get(c, 0.0) for c in treatment])
    h = np.array([spend.get(c, 0.0) for c in holdout])
    welch = stats.ttest_ind(t, h, equal_var=False).confidence_interval(0.95)
    assert math.isclose(results["uplift"]["revenue_per_customer"]["low"], welch.low, rel_tol=1e-9)
    longer = (await value.client.get("/v1/playbooks/pb-1/results", params={"attribution_days": 60})).json()
    assert longer["treatment"]["revenue"] == 204.0
    assert (await value.client.get("/v1/playbooks/pb-unknown/results")).status_code == 404
