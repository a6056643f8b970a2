"""value's rules: offers, issued by people or automatically, and their redemption."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TypedDict

from sqlalchemy.ext.asyncio import AsyncSession

from services.value import repository
from services.value.models import aliases, known_customers
from services.value.nbo import counts
from services.value.offers.codes import new_codes, normalized
from services.value.schemas import OfferCreate, RedeemRequest
from shared.db.database import utcnow
from shared.db.ids import uuid7
from shared.events.consumer import caused_by
from shared.events.contracts import CustomerCreated, StageChanged
from shared.events.customer_aliases import Merge
from shared.events.envelope import Event
from shared.events.messaging import emit
from shared.http.errors import Conflict, MergedCustomer, NotFound, field_error


class AutomaticOffer(TypedDict):
    """An offer value issues by itself: what it is, and how long it is valid."""

    kind: str
    title: str
    discount_percent: Decimal
    valid_for: timedelta


WELCOME: AutomaticOffer = {
    "kind": "welcome",
    "title": "Welcome — 10% off your next purchase",
    "discount_percent": Decimal("10"),
    "valid_for": timedelta(days=30),
}


def decimal_text(value) -> str | None:
    return None if value is None else format(Decimal(value).normalize(), "f")


# The columns of an offer issued without a template (by hand, or the welcome offer).
NO_TEMPLATE = {
    "template_id": None,
    "amount_off": None,
    "currency": None,
    "free_item": None,
    "points": None,
    "cost": None,
    "starts_at": None,
    "segment": None,
    "campaign_id": None,
    "playbook_id": None,
    "redeemed_transaction_id": None,
}


def present(offer) -> dict:
    """An offer as the API shows it; an issued offer past its expiry reads as expired."""

    status = offer["status"]
    if status == "issued" and offer["expires_at"] is not None and offer["expires_at"] <= utcnow():
        status = "expired"
    return {
        "id": offer["id"],
        "customer_id": offer["customer_id"],
        "kind": offer["kind"],
        "title": offer["title"],
        "discount_percent": decimal_text(offer["discount_percent"]),
        "status": status,
        "issued_at": offer["issued_at"],
        "expires_at": offer["expires_at"],
        "redeemed_at": offer["redeemed_at"],
        "template_id": offer["template_id"],
        "coupon_code": offer["coupon_code"],
        "amount_off": decimal_text(offer["amount_off"]),
        "currency": offer["currency"],
        "free_item": offer["free_item"],
        "points": offer["points"],
        "cost": decimal_text(offer["cost"]),
        "starts_at": offer["starts_at"],
        "segment": offer["segment"],
        "campaign_id": offer["campaign_id"],
        "playbook_id": offer["playbook_id"],
        "redeemed_transaction_id": offer["redeemed_transaction_id"],
    }


def _issue(session: AsyncSession, row: dict) -> None:
    emit(
        session,
        "crm.value.offer.issued",
        {
            "id": row["id"],
            "customer_id": row["customer_id"],
            "kind": row["kind"],
            "title": row["title"],
            "discount_percent": decimal_text(row["discount_percent"]),
            "expires_at": row["expires_at"],
            "issued_at": row["issued_at"],
            "coupon_code": row["coupon_code"],
        },
        subject=row["customer_id"],
    )


async def create_offer(*, session: AsyncSession, data: OfferCreate) -> dict:
    await aliases.refuse_merged(session, data.customer_id)
    if not await known_customers.contains(session, data.customer_id):
        raise field_error("body.customer_id", f"no customer with id {data.customer_id}")
    row = {
        "id": uuid7(),
        "customer_id": data.customer_id,
        "kind": data.kind,
        "title": data.title,
        "discount_percent": data.discount_percent,
        "status": "issued",
        "automatic_kind": None,
        "issued_at": utcnow(),
        "expires_at": data.expires_at.astimezone(UTC) if data.expires_at else None,
        "redeemed_at": None,
        **NO_TEMPLATE,
        "coupon_code": new_codes(1)[0],
    }
    await repository.insert_offers(session, [row])
    _issue(session, row)
    return present(row)


async def get_offer(*, session: AsyncSession, offer_id: str) -> dict:
    offer = await repository.read_offer(session, offer_id)
    if offer is None:
        raise NotFound(f"no offer with id {offer_id}")
    return present(offer)


async def redeem(*, session: AsyncSession, offer_id: str, data: RedeemRequest | None = None) -> dict:
    """Redeem an issued offer, optionally naming the coupon code shown (it must be the
    offer's) and the purchase it applied to."""

    data = data or RedeemRequest()
    offer = await get_offer(session=session, offer_id=offer_id)
    if data.code is not None and (offer["coupon_code"] is None or normalized(data.code) != offer["coupon_code"]):
        raise field_error("body.code", f"not the coupon code of offer {offer_id}")
    if offer["status"] == "redeemed":
        raise Conflict(f"offer {offer_id} was already redeemed at {offer['redeemed_at'].isoformat()}")
    if offer["status"] == "expired":
        raise Conflict(f"offer {offer_id} expired at {offer['expires_at'].isoformat()}")
    now = utcnow()
    if offer["starts_at"] is not None and offer["starts_at"] > now:
        raise Conflict(f"offer {offer_id} is valid from {offer['starts_at'].isoformat()}", error="not_yet_valid")
    if not await repository.mark_redeemed(session, offer_id, now, data.transaction_id):
        raise Conflict(f"offer {offer_id} was already redeemed")
    offer.update(status="redeemed", redeemed_at=now, redeemed_transaction_id=data.transaction_id)
    await counts.count_redeemed(session, offer["template_id"], offer["segment"])
    emit(
        session,
        "crm.value.offer.redeemed",
        {
            "id": offer_id,
            "customer_id": offer["customer_id"],
            "kind": offer["kind"],
            "redeemed_at": now,
            "transaction_id": data.transaction_id,
            "template_id": offer["template_id"],
            "coupon_code": offer["coupon_code"],
            "campaign_id": offer["campaign_id"],
            "playbook_id": offer["playbook_id"],
        },
        subject=offer["customer_id"],
    )
    return offer


async def offers_of(*, session: AsyncSession, customer_id: str, before_id: str | None, limit: int) -> list[dict]:
    rows = await repository.list_offers(session, customer_id=customer_id, before_id=before_id, limit=limit)
    if not rows and await _unknown_customer(session, customer_id):
        raise await aliases.not_found_or_merged(session, customer_id)
    return [present(row) for row in rows]


async def search_offers(
    *,
    session: AsyncSession,
    customer_id: str | None,
    kind: str | None,
    status: str | None,
    before_id: str | None,
    limit: int,
) -> list[dict]:
    """Offers across customers, newest first; every filter optional. A customer value does
    not know is 404 naming `query.customer_id`; one merged away is 409 `customer_merged`,
    as its own list is."""

    rows = await repository.list_offers(
        session, customer_id=customer_id, before_id=before_id, limit=limit, kind=kind, status=status, now=utcnow()
    )
    if not rows and customer_id is not None and await _unknown_customer(session, customer_id):
        error = await aliases.not_found_or_merged(session, customer_id)
        if isinstance(error, MergedCustomer):
            raise error
        raise NotFound(
            [{"field": "query.customer_id", "message": error.detail, "type": "value_error"}], error=error.error
        )
    return [present(row) for row in rows]


async def _unknown_customer(session: AsyncSession, customer_id: str) -> bool:
    return bool(await aliases.survivor_of(session, customer_id)) or not await known_customers.contains(
        session, customer_id
    )


CREATED = "crm.identify.customer.created"


async def remember_suppressed(*, session: AsyncSession, events: list[Event[CustomerCreated]]) -> None:
    """Customers identify flagged `suppressed` (an erased person's email or phone): no automatic offers."""

    await repository.add_suppressed(session, [e.data.id for e in events if e.data.suppressed], utcnow())


async def suppress_erased(session: AsyncSession, ids: list[str]) -> dict[str, int]:
    """An erasure step: an erased customer is never marketed to again."""

    return {"suppressed_customers": await repository.add_suppressed(session, ids, utcnow())}


async def welcome_new_buyers(*, session: AsyncSession, events: list[Event[StageChanged]]) -> None:
    """A customer who just became a buyer (stage `new`) gets one welcome offer, once.

    A stage change read after a merge of its customer arrives naming the survivor;
    a stage value does not know is no `new`: it gets no offer.
    """

    # A stage change proves identify created the customer: if value-customers has
    # not caught up yet, know the customer now (its creation time approximated by
    # the change's) so that offers can be issued to it by hand too.
    first_seen: dict[str, datetime] = {}
    for event in events:
        first_seen.setdefault(event.data.customer_id, event.at)
    await known_customers.add(session, [{"id": cid, "created_at": at} for cid, at in first_seen.items()])
    becoming_new = [e for e in events if e.data.to_stage == "new"]
    customers = {e.data.customer_id for e in becoming_new}
    already = await repository.customers_with_automatic(session, customers, WELCOME["kind"])
    already |= await repository.suppressed_among(session, customers)
    rows = []
    now = utcnow()
    codes = iter(new_codes(len(becoming_new)))
    for event in becoming_new:
        customer_id = event.data.customer_id
        code = next(codes)
        if customer_id in already:
            continue
        already.add(customer_id)
        row = {
            "id": uuid7(),
            "customer_id": customer_id,
            "kind": WELCOME["kind"],
            "title": WELCOME["title"],
            "discount_percent": WELCOME["discount_percent"],
            "status": "issued",
            "automatic_kind": WELCOME["kind"],
            "issued_at": now,
            "expires_at": now + WELCOME["valid_for"],
            "redeemed_at": None,
            **NO_TEMPLATE,
            "coupon_code": code,
        }
        rows.append(row)
        with caused_by(event):
            _issue(session, row)
    await repository.insert_offers(session, rows)


async def follow_merge(session: AsyncSession, merge: Merge) -> None:
    """A merge step: offers of merged customers become the survivor's.

    The survivor keeps one automatic offer of each kind (its own, else the earliest
    issued): the others stay as ordinary offers, so no offer a customer holds is lost.
    """

    survivor, merged = merge.survivor_id, merge.merged_ids
    automatic = sorted(
        await repository.automatic_offers_of(session, [survivor, *merged]),
        key=lambda o: (o["customer_id"] != survivor, o["issued_at"], o["id"]),
    )
    kept: set[str] = set()
    demoted = []
    for offer in automatic:
        if offer["automatic_kind"] in kept:
            demoted.append(offer["id"])
        kept.add(offer["automatic_kind"])
    await repository.demote_automatic(session, demoted)
    await repository.move_offers(session, merged_ids=merged, survivor_id=survivor)
