"""Campaigns: an audience over value's read models, a holdout assigned by hash, the offer
issued to the treatment group and engage asked to deliver it, each member's promotion and
delivery outcome, and the results against the holdout."""

from __future__ import annotations

import secrets
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.value.campaigns import repository
from services.value.campaigns.schemas import CampaignCreate, CampaignUpdate
from services.value.models import aliases, known_customers, profiles
from services.value.offers import service as offers
from shared import statistics
from shared.db.database import Database, utcnow
from shared.db.ids import uuid7, uuid7_many
from shared.db.uow import transaction
from shared.events.consumer import caused_by
from shared.events.contracts import (
    MAX_RECIPIENTS,
    ConsentChanged,
    DeliveryReported,
    PlaybookOfferRequested,
    TransactionRecorded,
)
from shared.events.customer_aliases import Merge
from shared.events.envelope import Event
from shared.events.messaging import emit_many
from shared.holdout import in_holdout
from shared.http.errors import Conflict, NotFound, field_error

REQUESTED = "crm.value.messages.requested"
CONSENT_CHANGED = "crm.engage.consent.changed"
DELIVERY_REPORTED = "crm.engage.delivery.reported"
RECORDED = "crm.identify.transaction.recorded"
REFUNDED = "crm.identify.transaction.refunded"
VOIDED = "crm.identify.transaction.voided"
PLAYBOOK_ENTERED = "crm.lifecycle.playbook.entered"
PLAYBOOK_OFFER_REQUESTED = "crm.lifecycle.playbook.offer_requested"

TRANSITIONS: dict[str, tuple[str, ...]] = {
    "draft": ("scheduled", "running", "cancelled"),
    "scheduled": ("draft", "running", "cancelled"),
    # Its offers being issued (POST /launch again finishes a launch cut short).
    "launching": ("running",),
    "running": ("completed", "cancelled"),
    "completed": (),
    "cancelled": (),
}
EDITABLE = ("draft", "scheduled")
SAMPLE = 10
# The delivery outcomes engage reports (anything else is recorded as it comes: a tolerant reader).
OUTCOMES = ("sent", "failed", "bounced", "refused")


def present(row: Any) -> dict[str, Any]:
    campaign = dict(row)
    campaign["allowed_transitions"] = list(TRANSITIONS.get(campaign["status"], ()))
    return campaign


async def _campaign(session: AsyncSession, campaign_id: str, *, for_update: bool = False) -> dict[str, Any]:
    row = await repository.read_campaign(session, campaign_id, for_update=for_update)
    if row is None:
        raise NotFound(f"no campaign with id {campaign_id}")
    return dict(row)


def _refuse_transition(campaign: dict[str, Any], to: str) -> None:
    allowed = TRANSITIONS[campaign["status"]]
    if to not in allowed:
        can = ", ".join(allowed) if allowed else "nothing: it is final"
        raise Conflict(
            f"campaign {campaign['id']} is {campaign['status']}: it cannot become {to}; it can become {can}",
            error="illegal_transition",
        )


def _audience_json(audience: Any) -> dict[str, Any]:
    return audience.model_dump(mode="json", exclude_none=True)


def _audience_args(stored: dict[str, Any]) -> dict[str, Any]:
    """The stored criteria, with their times as datetimes again (for the SQL comparisons)."""

    found = dict(stored)
    for name in ("last_purchase_after", "last_purchase_before"):
        if found.get(name):
            found[name] = datetime.fromisoformat(found[name]).astimezone(UTC)
    return found


async def create(*, session: AsyncSession, data: CampaignCreate) -> dict[str, Any]:
    if await offers.find_template(session, data.template_id) is None:
        raise field_error("body.template_id", f"no offer template with id {data.template_id}")
    row = {
        "id": uuid7(),
        "name": data.name,
        "channel": data.channel,
        "status": "draft",
        "template_id": data.template_id,
        "message_template_id": data.message_template_id,
        "subject": data.subject,
        "body": data.body,
        "audience": _audience_json(data.audience),
        "holdout_share": data.holdout_share,
        "attribution_days": data.attribution_days,
        "seed": secrets.token_hex(16),
        "scheduled_at": None,
        "launched_at": None,
        "ended_at": None,
        "launch_error": None,
        "treatment": 0,
        "holdout": 0,
        "created_at": utcnow(),
    }
    await repository.insert_campaign(session, row)
    return present(row)


async def get(*, session: AsyncSession, campaign_id: str) -> dict[str, Any]:
    return present(await _campaign(session, campaign_id))


async def search(*, session: AsyncSession, status: str | None, before_id: str | None, limit: int) -> list[dict]:
    rows = await repository.list_campaigns(session, status=status, before_id=before_id, limit=limit)
    return [present(row) for row in rows]


async def change(*, session: AsyncSession, campaign_id: str, data: CampaignUpdate) -> dict[str, Any]:
    """Change a draft or scheduled campaign; a running, completed or cancelled one is 409."""

    campaign = await _campaign(session, campaign_id, for_update=True)
    if campaign["status"] not in EDITABLE:
        raise Conflict(
            f"campaign {campaign_id} is {campaign['status']}: only a draft or scheduled campaign changes",
            error="campaign_not_editable",
        )
    values: dict[str, Any] = {}
    for name in data.model_fields_set:
        value = getattr(data, name)
        if value is None:
            continue
        values[name] = _audience_json(value) if name == "audience" else value
    if values:
        await repository.update_campaign(session, campaign_id, values)
        campaign.update(values)
    return present(campaign)


async def preview(*, session: AsyncSession, campaign_id: str) -> dict[str, Any]:
    campaign = await _campaign(session, campaign_id)
    criteria = _audience_args(campaign["audience"])
    count = await repository.audience_count(session, criteria, campaign["channel"])
    sample = await repository.audience_sample(session, criteria, campaign["channel"], SAMPLE)
    return {"count": count, "sample": [dict(row) for row in sample]}


async def schedule(*, session: AsyncSession, campaign_id: str, at: datetime) -> dict[str, Any]:
    campaign = await _campaign(session, campaign_id, for_update=True)
    _refuse_transition(campaign, "scheduled")
    values = {"status": "scheduled", "scheduled_at": at.astimezone(UTC)}
    await repository.update_campaign(session, campaign_id, values)
    campaign.update(values)
    return present(campaign)


async def refuse_scheduled(session: AsyncSession, campaign_id: str, refused: Conflict) -> None:
    """The schedule could not launch it (a 409: nobody in the audience, the budget, the
    template's window): back to draft with the reason, for staff to see and fix."""

    campaign = await _campaign(session, campaign_id, for_update=True)
    if campaign["status"] == "scheduled":
        values = {"status": "draft", "scheduled_at": None, "launch_error": f"{refused.error}: {refused.detail}"[:500]}
        await repository.update_campaign(session, campaign_id, values)


async def end(*, session: AsyncSession, campaign_id: str, to: str) -> dict[str, Any]:
    """complete or cancel (or a scheduled campaign back to draft)."""

    campaign = await _campaign(session, campaign_id, for_update=True)
    _refuse_transition(campaign, to)
    values: dict[str, Any] = {"status": to}
    if to in ("completed", "cancelled"):
        values["ended_at"] = utcnow()
    if to == "draft":
        values["scheduled_at"] = None
    await repository.update_campaign(session, campaign_id, values)
    campaign.update(values)
    return present(campaign)


# A launch issues its offers this many customers to a transaction: the outbox relay publishes
# one chunk's events while the next is written, and value's other writers (its consumers, the
# relay's bookkeeping) get the SQLite writer between chunks instead of waiting a minute.
LAUNCH_CHUNK = 50_000
# Campaigns this process is launching now: a second POST /launch meanwhile is 409.
_launching: set[str] = set()


@dataclass(frozen=True)
class _Plan:
    """A launch's work: the campaign, its template, when, and the treatment customers still
    to get their offers: (customer_id, segment, offer id, request id), in id order."""

    campaign: dict[str, Any]
    template: dict[str, Any]
    at: datetime
    pending: list[tuple[str, str | None, str, str]]


async def launch(*, db: Database, campaign_id: str, only_from: str | None = None) -> dict[str, Any] | None:
    """Assign every eligible customer to treatment or holdout, issue the template's offer to
    treatment customers (all of them, or none: over the budget is 409 `budget_exhausted`), ask
    engage to deliver each one's message, and record every member. An audience matching nobody
    is 409 `empty_audience`. Refused, it writes nothing.

    The plan commits first: every member with its group, offer id and request id, the budget
    taken, status `launching`. The offers and their events then commit LAUNCH_CHUNK customers
    at a time, and the campaign is `running` once the last has. A launch cut short (the process
    stopped) is finished by launching the campaign again: the members whose offer is missing
    get it, under the ids the plan gave them, so nothing is issued twice.

    `only_from`: launch only a campaign in that status (the schedule's `scheduled`), else do
    nothing and answer None: another process got to it first."""

    if campaign_id in _launching:
        raise Conflict(f"campaign {campaign_id} is being launched now", error="launch_in_progress")
    _launching.add(campaign_id)
    try:
        async with transaction(db.writer) as session:
            plan = await _plan_launch(session, campaign_id, only_from)
        if plan is None:
            return None
        for start in range(0, len(plan.pending), LAUNCH_CHUNK):
            async with transaction(db.writer) as session:
                await _issue_chunk(session, plan, plan.pending[start : start + LAUNCH_CHUNK])
        async with transaction(db.writer) as session:
            await repository.update_campaign(session, campaign_id, {"status": "running"})
            return present(await _campaign(session, campaign_id))
    finally:
        _launching.discard(campaign_id)


async def _plan_launch(session: AsyncSession, campaign_id: str, only_from: str | None) -> _Plan | None:
    campaign = await _campaign(session, campaign_id, for_update=True)
    if only_from is not None and campaign["status"] != only_from:
        return None
    if campaign["status"] == "launching":  # cut short: finish it
        tpl = await offers.template(session, campaign["template_id"])
        pending = await repository.unissued_members(session, campaign_id)
        return _Plan(campaign, tpl, campaign["launched_at"], pending)
    _refuse_transition(campaign, "running")
    tpl = await offers.template(session, campaign["template_id"])
    now = utcnow()
    offers.refuse_closed(tpl, now)
    everyone = await repository.audience(session, _audience_args(campaign["audience"]), campaign["channel"])
    if not everyone:
        raise Conflict(f"campaign {campaign_id}'s audience matches no customer", error="empty_audience")
    seed, share = campaign["seed"], campaign["holdout_share"]
    treatment: list[tuple[str, str | None]] = []
    holdout: list[str] = []
    for customer_id, segment in everyone:
        if in_holdout(seed, customer_id, share):
            holdout.append(customer_id)
        else:
            treatment.append((customer_id, segment))
    capped = await offers.at_cap(session, tpl) if tpl["per_customer_cap"] is not None else set()
    issuable = [pair for pair in treatment if pair[0] not in capped]
    await offers.take_budget(session, tpl, len(issuable))
    offer_ids, request_ids = uuid7_many(len(issuable)), uuid7_many(len(issuable))
    pending = [(cid, segment, oid, rid) for (cid, segment), oid, rid in zip(issuable, offer_ids, request_ids)]

    channel, title = campaign["channel"], tpl["title"]
    members: list[tuple[Any, ...]] = [
        # MEMBER_COLUMNS: campaign_id, customer_id, group, offer_id, promoted, channel, promoted_at,
        # request_id, outcome, outcome_reason, outcome_at
        (campaign_id, cid, "treatment", oid, title, channel, now, rid, "requested", None, None)
        for cid, _segment, oid, rid in pending
    ]
    members += [
        (campaign_id, cid, "treatment", None, title, channel, now, None, "capped", "per_customer_cap", now)
        for cid, _segment in treatment
        if cid in capped
    ]
    members += [(campaign_id, cid, "holdout", None, None, channel, now, None, "holdout", None, None) for cid in holdout]
    assert repository.MEMBER_COLUMNS == (
        "campaign_id",
        "customer_id",
        "group",
        "offer_id",
        "promoted",
        "channel",
        "promoted_at",
        "request_id",
        "outcome",
        "outcome_reason",
        "outcome_at",
    )
    await repository.insert_members(session, members)
    values = {
        "status": "launching",
        "launched_at": now,
        "treatment": len(treatment),
        "holdout": len(holdout),
        "launch_error": None,
    }
    await repository.update_campaign(session, campaign_id, values)
    campaign.update(values)
    return _Plan(campaign, tpl, now, pending)


async def _issue_chunk(session: AsyncSession, plan: _Plan, chunk: list[tuple[str, str | None, str, str]]) -> None:
    """The offers of `chunk`'s customers under their planned ids, their events, and their messages' requests."""

    campaign = plan.campaign
    issued = await offers.issue_many(
        session,
        plan.template,
        [(cid, segment) for cid, segment, _oid, _rid in chunk],
        now=plan.at,
        campaign_id=campaign["id"],
        ids=[oid for _cid, _segment, oid, _rid in chunk],
    )
    _request_messages(session, campaign, plan.template, issued, [rid for *_, rid in chunk], plan.at)


def _request_messages(
    session: AsyncSession,
    campaign: dict[str, Any],
    tpl: dict[str, Any],
    issued: list[tuple[Any, ...]],
    request_ids: list[str],
    now: datetime,
) -> None:
    """engage is asked to deliver each offer's message (a request id per customer), up to
    MAX_RECIPIENTS customers to a crm.value.messages.requested: engage applies consent and caps
    to each, sends, and answers each with crm.engage.delivery.reported."""

    fixed = {
        "channel": campaign["channel"],
        "purpose": "marketing",
        "template_id": campaign["message_template_id"],
        "subject": campaign["subject"],
        "body": campaign["body"],
        "source_kind": "campaign",
        "source_id": campaign["id"],
        "requested_at": now,
    }
    title = tpl["title"]
    recipients = [
        {
            "request_id": rid,
            "customer_id": offer[offers.OFFER_CUSTOMER],
            "fields": {"offer_code": offer[offers.OFFER_CODE], "offer_title": title},
        }
        for offer, rid in zip(issued, request_ids)
    ]
    payloads = [
        {**fixed, "recipients": recipients[start : start + MAX_RECIPIENTS]}
        for start in range(0, len(recipients), MAX_RECIPIENTS)
    ]
    emit_many(session, REQUESTED, payloads, [None] * len(payloads))


async def members(*, session: AsyncSession, campaign_id: str, after_customer: str | None, limit: int) -> list[dict]:
    await _campaign(session, campaign_id)
    return [
        dict(row) for row in await repository.members(session, campaign_id, after_customer=after_customer, limit=limit)
    ]


async def promotions_of(
    *, session: AsyncSession, customer_id: str, before_campaign: str | None, limit: int
) -> list[dict[str, Any]]:
    rows = await repository.promotions_of(session, customer_id, before_campaign=before_campaign, limit=limit)
    if not rows and (
        await aliases.survivor_of(session, customer_id) or not await known_customers.contains(session, customer_id)
    ):
        raise await aliases.not_found_or_merged(session, customer_id)
    return [dict(row) for row in rows]


# --- results ------------------------------------------------------------------------------


def _estimate(estimate: statistics.Estimate) -> dict[str, float | None]:
    return {"value": estimate.value, "low": estimate.low, "high": estimate.high}


async def results(*, session: AsyncSession, campaign_id: str) -> dict[str, Any]:
    """Treatment against holdout over purchases in [launch, launch + attribution window)."""

    campaign = await _campaign(session, campaign_id)
    start, end = campaign["launched_at"], None
    groups: dict[str, dict[str, float]] = {}
    if start is not None:
        end = start + timedelta(days=campaign["attribution_days"])
        groups = await repository.group_results(session, campaign_id, start, end)
    redeemed, cost = await repository.redemptions(session, campaign_id=campaign_id)
    return compare(
        groups,
        redemptions={"treatment": redeemed, "holdout": 0},
        offer_cost=cost,
        head={"id": campaign_id, "status": campaign["status"], "window_from": start, "window_until": end},
    )


def compare(
    groups: dict[str, dict[str, float]],
    *,
    redemptions: dict[str, int],
    offer_cost: float,
    head: dict[str, Any],
) -> dict[str, Any]:
    """The comparison of two groups from their sums (shared/statistics.py): conversion with
    Wilson intervals, the uplift in conversion (difference of proportions) and in revenue per
    customer (Welch), the incremental revenue and what the offers cost. Playbooks use it too."""

    empty = {"n": 0, "converted": 0, "total": 0.0, "squares": 0.0}
    t, h = groups.get("treatment", empty), groups.get("holdout", empty)
    summaries = {
        name: statistics.Summary.from_sums(int(g["n"]), g["total"], g["squares"]) for name, g in (("t", t), ("h", h))
    }

    def group(g: dict[str, float], name: str) -> dict[str, Any]:
        n = int(g["n"])
        return {
            "customers": n,
            "converted": int(g["converted"]),
            "conversion_rate": _estimate(statistics.proportion(int(g["converted"]), n)),
            "revenue": round(g["total"], 2),
            "revenue_per_customer": g["total"] / n if n else None,
            "redemptions": redemptions.get(name, 0),
        }

    conversion = statistics.proportion_difference(int(t["converted"]), int(t["n"]), int(h["converted"]), int(h["n"]))
    revenue = statistics.welch_difference(summaries["t"], summaries["h"])
    incremental = revenue.value * t["n"] if revenue.value is not None else None
    return {
        **head,
        "treatment": group(t, "treatment"),
        "holdout": group(h, "holdout"),
        "uplift": {"conversion": _estimate(conversion), "revenue_per_customer": _estimate(revenue)},
        "incremental_revenue": incremental,
        "offer_cost": offer_cost,
        "net_incremental_revenue": incremental - offer_cost if incremental is not None else None,
    }


# --- read models -------------------------------------------------------------------------


async def apply_consents(session: AsyncSession, events: list[Event[ConsentChanged]]) -> None:
    """Marketing consent per channel, the newest change winning (other purposes are not audiences')."""

    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for event in events:
        data = event.data
        if data.purpose != "marketing":
            continue
        key = (data.customer_id, data.channel)
        row = {
            "customer_id": data.customer_id,
            "channel": data.channel,
            "granted": data.granted,
            "changed_at": data.changed_at,
        }
        if key not in latest or latest[key]["changed_at"] <= data.changed_at:
            latest[key] = row
    await repository.upsert_consents(session, list(latest.values()))


async def apply_deliveries(session: AsyncSession, events: list[Event[DeliveryReported]]) -> None:
    """engage's delivery reports on the members whose messages they answer."""

    rows = [
        {
            "rid": e.data.request_id,
            "new_outcome": e.data.outcome[:20],
            "reason": (e.data.reason or None) and e.data.reason[:500],
            "at": e.data.reported_at,
        }
        for e in events
        if e.data.source_kind == "campaign"
    ]
    await repository.record_outcomes(session, rows)


async def apply_purchases(session: AsyncSession, events: list[Event[Any]]) -> None:
    """Purchases in the reporting currency; refunds lower them, voids take them out (decisions.md)."""

    recorded: dict[str, dict[str, Any]] = {}
    refunds: dict[str, dict[str, Any]] = {}
    voids: dict[str, dict[str, Any]] = {}
    for event in events:
        data = event.data
        if event.type == RECORDED:
            recorded[data.id] = _purchase_row(data)
        elif event.type == REFUNDED:
            amount = data.reporting_amount if data.reporting_amount is not None else data.amount
            row = refunds.setdefault(data.transaction_id, _placeholder(data.transaction_id, data.customer_id, event.at))
            row["refunded"] += abs(amount)
        elif event.type == VOIDED:
            voids[data.transaction_id] = {
                **_placeholder(data.transaction_id, data.customer_id, event.at),
                "voided": True,
            }
    # A refund or void read before its purchase (a redelivery) leaves a placeholder the purchase fills.
    await repository.upsert_purchases(session, list(recorded.values()))
    await repository.add_refunds(session, list(refunds.values()))
    await repository.mark_voided(session, list(voids.values()))


def _purchase_row(data: TransactionRecorded) -> dict[str, Any]:
    amount = data.reporting_amount if data.reporting_amount is not None else data.amount
    return {
        "transaction_id": data.id,
        "customer_id": data.customer_id,
        "amount": amount,
        "refunded": 0,
        "voided": False,
        "occurred_at": data.occurred_at,
    }


def _placeholder(transaction_id: str, customer_id: str, at: datetime) -> dict[str, Any]:
    return {
        "transaction_id": transaction_id,
        "customer_id": customer_id,
        "amount": 0,
        "refunded": 0,
        "voided": False,
        "occurred_at": at,
    }


# --- playbooks -----------------------------------------------------------------------------


async def apply_playbooks(session: AsyncSession, events: list[Event[Any]]) -> None:
    """lifecycle's playbooks: who entered in which group, and the offers asked for their
    treatment customers (issued within the template's window, budget and cap; a refusal is
    recorded on the member, never retried)."""

    entries = [
        {
            "playbook_id": e.data.playbook_id,
            "customer_id": e.data.customer_id,
            "group": e.data.group,
            "entered_at": e.data.entered_at,
        }
        for e in events
        if e.type == PLAYBOOK_ENTERED and e.data.group in ("treatment", "holdout")
    ]
    await repository.enter_playbooks(session, entries)
    for event in events:
        if event.type == PLAYBOOK_OFFER_REQUESTED:
            with caused_by(event):
                await _playbook_offer(session, event)


async def _playbook_offer(session: AsyncSession, event: Event[PlaybookOfferRequested]) -> None:
    data = event.data
    member = await repository.playbook_member(session, data.playbook_id, data.customer_id)
    if member is None:  # the request came without its entry: a treatment customer from now
        entry = {
            "playbook_id": data.playbook_id,
            "customer_id": data.customer_id,
            "group": "treatment",
            "entered_at": data.requested_at,
        }
        await repository.enter_playbooks(session, [entry])
    elif member["group"] != "treatment" or member["offer_id"] is not None:
        return  # never an offer to the holdout; one offer per member
    tpl = await offers.find_template(session, data.template_id)
    outcome, offer_id = "unknown_template", None
    if tpl is not None:
        now = utcnow()
        try:
            offers.refuse_closed(tpl, now)
            if data.customer_id in await offers.at_cap(session, tpl, [data.customer_id]):
                raise Conflict("at the cap", error="customer_cap")
            await offers.take_budget(session, tpl, 1)
        except Conflict as refused:
            outcome = refused.error
        else:
            profile = await profiles.get(session, data.customer_id)
            segment = profile["segment"] if profile else None
            rows = await offers.issue(
                session, tpl, [(data.customer_id, segment)], now=now, playbook_id=data.playbook_id
            )
            outcome, offer_id = "issued", rows[0]["id"]
    await repository.record_playbook_offer(session, data.playbook_id, data.customer_id, offer_id, outcome)


async def playbook_results(*, session: AsyncSession, playbook_id: str, attribution_days: int) -> dict[str, Any]:
    """A playbook's treatment against its holdout: win-back (a purchase within the window after
    entering) and revenue, with the same statistics as a campaign's."""

    if not await repository.playbook_known(session, playbook_id):
        raise NotFound(f"no customer has entered playbook {playbook_id}")
    groups = await repository.playbook_group_results(session, playbook_id, attribution_days)
    redeemed, cost = await repository.redemptions(session, playbook_id=playbook_id)
    return compare(
        groups,
        redemptions={"treatment": redeemed, "holdout": 0},
        offer_cost=cost,
        head={"id": playbook_id, "status": None, "window_from": None, "window_until": None},
    )


# --- merges -------------------------------------------------------------------------------


async def follow_merge(session: AsyncSession, merge: Merge) -> None:
    """A merge step: campaign and playbook memberships, consents and purchases of the merged
    customers become the survivor's. In a campaign or playbook that had several of them the
    survivor keeps one membership (its own, else a treatment one / the earliest entered); per
    channel the newest consent change holds."""

    ids = [merge.survivor_id, *merge.merged_ids]
    survivor = merge.survivor_id
    await _fold_members(
        session, merge, playbooks=False, rank=lambda r: (r["customer_id"] != survivor, r["group"] != "treatment")
    )
    await _fold_members(session, merge, playbooks=True, rank=lambda r: (r["customer_id"] != survivor, r["entered_at"]))

    consents: dict[str, dict[str, Any]] = {}
    for row in await repository.rows_of(session, "consents", ids):
        held = consents.get(row["channel"])
        if held is None or row["changed_at"] > held["changed_at"]:
            consents[row["channel"]] = {**row, "customer_id": merge.survivor_id}
    if consents:
        await repository.replace_consents(session, ids, list(consents.values()))
    await repository.move_purchases(session, merge.merged_ids, merge.survivor_id)


async def _fold_members(session: AsyncSession, merge: Merge, *, playbooks: bool, rank: Any) -> None:
    """One membership per campaign (or playbook) for the survivor: the best by `rank` (the
    survivor's own first), the others dropped; then the merged ids' rows become the survivor's."""

    owner = "playbook_id" if playbooks else "campaign_id"
    rows_by_owner: dict[str, list[dict[str, Any]]] = defaultdict(list)
    ids = [merge.survivor_id, *merge.merged_ids]
    for row in await repository.rows_of(session, "playbook_members" if playbooks else "members", ids):
        rows_by_owner[row[owner]].append(row)
    dropped = []
    for owner_id, rows in rows_by_owner.items():
        rows.sort(key=lambda r: (*rank(r), r["customer_id"]))
        dropped += [(owner_id, r["customer_id"]) for r in rows[1:]]
    await repository.drop_members(session, dropped, playbooks=playbooks)
    await repository.move_members(session, merge.merged_ids, merge.survivor_id, playbooks=playbooks)
