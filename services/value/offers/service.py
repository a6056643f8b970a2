"""Offer templates and the offers issued from them: validity, budget, per-customer caps,
coupon codes, and the segment each offer was issued in (next best offer learns from it)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.value.models import aliases, known_customers, profiles
from services.value.nbo import counts
from services.value.offers import repository
from services.value.offers.codes import new_codes
from services.value.offers.schemas import OfferTemplateCreate
from services.value.service import decimal_text, present
from shared.db.database import utcnow
from shared.db.ids import uuid7, uuid7_many
from shared.events.contracts import LoyaltyPointsRedeemed
from shared.events.messaging import emit, emit_many, payload_in_contract_order
from shared.http.errors import Conflict, NotFound, field_error

ISSUED = "crm.value.offer.issued"
TEMPLATE_CHANGED = "crm.value.offer_template.changed"
REDEMPTION_REFUSED = "crm.value.loyalty_redemption.refused"


async def create_template(*, session: AsyncSession, data: OfferTemplateCreate) -> dict[str, Any]:
    row = {
        "id": uuid7(),
        "kind": data.kind,
        "title": data.title,
        "percent_off": data.percent_off,
        "amount_off": data.amount_off.amount if data.amount_off else None,
        "currency": data.amount_off.currency if data.amount_off else None,
        "free_item": data.free_item,
        "points": data.points,
        "points_price": data.points_price,
        "valid_from": data.valid_from.astimezone(UTC) if data.valid_from else None,
        "valid_until": data.valid_until.astimezone(UTC) if data.valid_until else None,
        "valid_days": data.valid_days,
        "budget": data.budget,
        "per_customer_cap": data.per_customer_cap,
        "cost": data.cost,
        "issued": 0,
        "created_at": utcnow(),
    }
    await repository.insert_template(session, row)
    # lifecycle's loyalty programme sells templates for points from what this says.
    emit(
        session,
        TEMPLATE_CHANGED,
        {
            "id": row["id"],
            "kind": row["kind"],
            "title": row["title"],
            "points_price": row["points_price"],
            "valid_from": row["valid_from"],
            "valid_until": row["valid_until"],
            "changed_at": row["created_at"],
        },
    )
    return present_template(row)


def present_template(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "kind": row["kind"],
        "title": row["title"],
        "percent_off": decimal_text(row["percent_off"]),
        "amount_off": (
            {"amount": decimal_text(row["amount_off"]), "currency": row["currency"]}
            if row["amount_off"] is not None
            else None
        ),
        "free_item": row["free_item"],
        "points": row["points"],
        "points_price": row["points_price"],
        "valid_from": row["valid_from"],
        "valid_until": row["valid_until"],
        "valid_days": row["valid_days"],
        "budget": row["budget"],
        "per_customer_cap": row["per_customer_cap"],
        "cost": decimal_text(row["cost"]) or "0",
        "issued": row["issued"],
        "created_at": row["created_at"],
    }


async def find_template(session: AsyncSession, template_id: str) -> dict[str, Any] | None:
    row = await repository.read_template(session, template_id)
    return dict(row) if row is not None else None


async def template(session: AsyncSession, template_id: str) -> dict[str, Any]:
    row = await repository.read_template(session, template_id)
    if row is None:
        raise NotFound(f"no offer template with id {template_id}")
    return dict(row)


async def get_template(*, session: AsyncSession, template_id: str) -> dict[str, Any]:
    return present_template(await template(session, template_id))


async def list_templates(*, session: AsyncSession, before_id: str | None, limit: int) -> list[dict[str, Any]]:
    return [present_template(row) for row in await repository.list_templates(session, before_id=before_id, limit=limit)]


def refuse_closed(tpl: dict[str, Any], now: datetime) -> None:
    """A template past its window issues nothing: 409 `template_expired`."""

    if tpl["valid_until"] is not None and tpl["valid_until"] <= now:
        raise Conflict(
            f"offer template {tpl['id']} was valid until {tpl['valid_until'].isoformat()}", error="template_expired"
        )


async def take_budget(session: AsyncSession, tpl: dict[str, Any], n: int) -> None:
    """Count n offers against the template's budget, or refuse all of them: 409 `budget_exhausted`."""

    if n and not await repository.take_budget(session, tpl["id"], n):
        left = max(tpl["budget"] - tpl["issued"], 0) if tpl["budget"] is not None else 0
        raise Conflict(
            f"offer template {tpl['id']} has a budget of {tpl['budget']} offers and {left} left; {n} asked for",
            error="budget_exhausted",
        )


async def at_cap(session: AsyncSession, tpl: dict[str, Any], customer_ids: list[str] | None = None) -> set[str]:
    """The customers who already hold as many offers of the template as its per-customer cap allows."""

    cap = tpl["per_customer_cap"]
    if cap is None:
        return set()
    held = await repository.held_counts(session, tpl["id"], customer_ids)
    return {customer for customer, count in held.items() if count >= cap}


async def issue_one(*, session: AsyncSession, template_id: str, customer_id: str) -> dict[str, Any]:
    """Issue the template's offer to one customer, within its window, budget and cap."""

    await aliases.refuse_merged(session, customer_id)
    if not await known_customers.contains(session, customer_id):
        raise field_error("body.customer_id", f"no customer with id {customer_id}")
    tpl = await template(session, template_id)
    now = utcnow()
    refuse_closed(tpl, now)
    if customer_id in await at_cap(session, tpl, [customer_id]):
        raise Conflict(
            f"customer {customer_id} already holds {tpl['per_customer_cap']} offer(s) of template {template_id}, "
            "its per-customer cap",
            error="customer_cap",
        )
    await take_budget(session, tpl, 1)
    profile = await profiles.get(session, customer_id)
    rows = await issue(session, tpl, [(customer_id, profile["segment"] if profile else None)], now=now)
    return present(rows[0])


async def issue(
    session: AsyncSession,
    tpl: dict[str, Any],
    customers: Sequence[tuple[str, str | None]],
    *,
    now: datetime,
    campaign_id: str | None = None,
    playbook_id: str | None = None,
    redemption_id: str | None = None,
    referral_id: str | None = None,
) -> list[dict[str, Any]]:
    """issue_many() for a few customers: the offers' rows as dicts, in the customers' order."""

    issued = await issue_many(
        session,
        tpl,
        customers,
        now=now,
        campaign_id=campaign_id,
        playbook_id=playbook_id,
        redemption_id=redemption_id,
        referral_id=referral_id,
    )
    return [dict(zip(repository.OFFER_COLUMNS, values)) for values in issued]


# Where issue_many's tuples keep the offer's id, customer and coupon code.
OFFER_ID, OFFER_CUSTOMER, OFFER_CODE = (repository.OFFER_COLUMNS.index(c) for c in ("id", "customer_id", "coupon_code"))
_OFFER_SEGMENT = repository.OFFER_COLUMNS.index("segment")


async def issue_many(
    session: AsyncSession,
    tpl: dict[str, Any],
    customers: Sequence[tuple[str, str | None]],
    *,
    now: datetime,
    campaign_id: str | None = None,
    playbook_id: str | None = None,
    ids: Sequence[str] | None = None,
    redemption_id: str | None = None,
    referral_id: str | None = None,
) -> list[tuple[Any, ...]]:
    """Insert one offer of the template per (customer, segment) and emit their
    `crm.value.offer.issued` events, in bulk (a campaign's in chunks). The budget and caps are
    the caller's to have checked. `ids`: the offers' ids when the caller chose them (a
    campaign's plan), else new ones. Answers the rows as tuples in OFFER_COLUMNS' order
    (OFFER_ID, OFFER_CUSTOMER, OFFER_CODE), in the customers' order.

    A campaign issues a million: every row and payload is a copy of one made for the
    template, with the offer's own fields set, in the order the table and the contract
    list them (emit_many then takes each payload as it is)."""

    if not customers:
        return []
    expires_at = _expiry(tpl, now)
    starts_at = tpl["valid_from"] if tpl["valid_from"] is not None and tpl["valid_from"] > now else None
    ids = uuid7_many(len(customers)) if ids is None else ids
    codes = new_codes(len(customers))
    shared_row = {
        "kind": tpl["kind"],
        "title": tpl["title"],
        "discount_percent": tpl["percent_off"],
        "status": "issued",
        "automatic_kind": None,
        "issued_at": now,
        "expires_at": expires_at,
        "redeemed_at": None,
        "template_id": tpl["id"],
        "amount_off": tpl["amount_off"],
        "currency": tpl["currency"],
        "free_item": tpl["free_item"],
        "points": tpl["points"],
        "cost": tpl["cost"],
        "starts_at": starts_at,
        "campaign_id": campaign_id,
        "playbook_id": playbook_id,
        "redeemed_transaction_id": None,
    }
    template_row = [shared_row.get(column) for column in repository.OFFER_COLUMNS]
    rows: list[tuple[Any, ...]] = []
    for offer_id, (customer_id, segment), code in zip(ids, customers, codes):
        row: list[Any] = template_row.copy()
        row[OFFER_ID], row[OFFER_CUSTOMER], row[OFFER_CODE], row[_OFFER_SEGMENT] = offer_id, customer_id, code, segment
        rows.append(tuple(row))
    # 60 random bits a code: a clash among a million new and a million held is about 1 in 10^6;
    # the unique key turns one into a refused (rolled back) issue, never a shared code.
    await repository.insert_offer_rows(session, rows)
    await counts.count_issued(session, tpl["id"], (segment for _, segment in customers))
    shared_payload = {
        "kind": tpl["kind"],
        "title": tpl["title"],
        "discount_percent": decimal_text(tpl["percent_off"]),
        "expires_at": expires_at,
        "issued_at": now,
        "template_id": tpl["id"],
        "points": tpl["points"],
        "amount_off": decimal_text(tpl["amount_off"]),
        "currency": tpl["currency"],
        "free_item": tpl["free_item"],
        "cost": decimal_text(tpl["cost"]),
        "starts_at": starts_at,
        "campaign_id": campaign_id,
        "playbook_id": playbook_id,
        "redemption_id": redemption_id,
        "referral_id": referral_id,
    }
    template_payload = payload_in_contract_order(ISSUED, shared_payload)
    payloads = []
    for values in rows:
        payload = template_payload.copy()
        payload["id"], payload["customer_id"], payload["coupon_code"] = (
            values[OFFER_ID],
            values[OFFER_CUSTOMER],
            values[OFFER_CODE],
        )
        payloads.append(payload)
    emit_many(session, ISSUED, payloads, [values[OFFER_CUSTOMER] for values in rows])
    return rows


async def issue_redeemed(*, session: AsyncSession, redemption: LoyaltyPointsRedeemed) -> None:
    """Issue the offer a loyalty redemption paid for, or refuse it with an event (nothing issued)."""

    tpl = await find_template(session, redemption.template_id)
    now = utcnow()
    reason = None
    if tpl is None:
        reason = "unknown_template"
    elif tpl["points_price"] != redemption.points:
        reason = "price_changed"
    else:
        try:
            refuse_closed(tpl, now)
            if redemption.customer_id in await at_cap(session, tpl, [redemption.customer_id]):
                raise Conflict("at the customer's cap", error="customer_cap")
            await take_budget(session, tpl, 1)
        except Conflict as refused:
            reason = refused.error
    if reason is not None:
        emit(
            session,
            REDEMPTION_REFUSED,
            {
                "redemption_id": redemption.redemption_id,
                "customer_id": redemption.customer_id,
                "template_id": redemption.template_id,
                "points": redemption.points,
                "reason": reason,
                "refused_at": now,
            },
            subject=redemption.customer_id,
        )
        return
    assert tpl is not None
    profile = await profiles.get(session, redemption.customer_id)
    segment = profile["segment"] if profile else None
    await issue(session, tpl, [(redemption.customer_id, segment)], now=now, redemption_id=redemption.redemption_id)


def _expiry(tpl: dict[str, Any], now: datetime) -> datetime | None:
    ends = [tpl["valid_until"]] if tpl["valid_until"] is not None else []
    if tpl["valid_days"] is not None:
        ends.append(max(now, tpl["valid_from"] or now) + timedelta(days=tpl["valid_days"]))
    return min(ends, default=None)


def offer_cost(tpl: dict[str, Any]) -> Decimal:
    return Decimal(tpl["cost"] or 0)
