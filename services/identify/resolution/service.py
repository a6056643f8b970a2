"""Identity resolution's rules: duplicate candidates and their scores, merges (the match
keys they read are kept by services/identify/customers/service.py).

The rules are documented for API users in docs/identity-resolution.md.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.identify.customers import normalize
from services.identify.customers.service import refresh_match_keys, refuse_merged
from services.identify.models import Customer
from services.identify.portfolio.scoring import rescore_customers
from services.identify.portfolio.summaries import rebuild_summaries
from services.identify.resolution import repository
from shared.db.database import utcnow
from shared.events.messaging import emit
from shared.http.errors import NotFound, field_error

# --- duplicate candidates -----------------------------------------------------------

# Weight of each kind of evidence; a candidate's score is 1 - prod(1 - weight).
EMAIL_WEIGHT = 0.7
PHONE_WEIGHT = 0.6
NAME_WEIGHT = 0.4
SIMILAR_NAME_WEIGHT = {1: 0.3, 2: 0.2}
MAX_CANDIDATES = 50


def name_distance_allowed(key: str) -> int:
    """How many edits still read as a typo: none for very short names, two for long ones."""

    return 0 if len(key) < 4 else 1 if len(key) < 10 else 2


def _evidence(customer: Customer, other: Customer) -> list[tuple[str, float]]:
    found: list[tuple[str, float]] = []
    if customer.email_match_key and customer.email_match_key == other.email_match_key:
        found.append(("same email after normalisation", EMAIL_WEIGHT))
    if customer.phone_key and customer.phone_key == other.phone_key:
        found.append(("same phone (E.164)", PHONE_WEIGHT))
    if customer.name_key and other.name_key:
        if customer.name_key == other.name_key:
            found.append(("same name", NAME_WEIGHT))
        else:
            limit = name_distance_allowed(min(customer.name_key, other.name_key, key=len))
            distance = normalize.edit_distance(customer.name_key, other.name_key, limit) if limit else limit + 1
            if distance <= limit:
                found.append((f"similar name (distance {distance})", SIMILAR_NAME_WEIGHT[distance]))
    return found


def score(weights: list[float]) -> float:
    remaining = 1.0
    for weight in weights:
        remaining *= 1.0 - weight
    return round(1.0 - remaining, 3)


async def find_duplicates(*, session: AsyncSession, customer_id: str) -> list[dict]:
    """Active customers that may be the same person, best first, with the evidence."""

    customer = await session.get(Customer, customer_id)
    if customer is None:
        raise NotFound(f"no customer with id {customer_id}")
    candidates = {
        c.id: c
        for c in await repository.customers_sharing_a_key(
            session,
            customer_id=customer.id,
            email_match_key=customer.email_match_key,
            phone_key=customer.phone_key,
            name_key=customer.name_key,
        )
    }
    if customer.name_key:
        for c in await repository.customers_sharing_a_name_token(
            session, customer_id=customer.id, tokens=set(customer.name_key.split())
        ):
            candidates.setdefault(c.id, c)
    found: list[dict[str, Any]] = []  # {customer, score, reasons}
    for other in candidates.values():
        evidence = _evidence(customer, other)
        if evidence:
            found.append(
                {"customer": other, "score": score([w for _, w in evidence]), "reasons": [r for r, _ in evidence]}
            )
    found.sort(key=lambda item: (-item["score"], item["customer"].id))
    return found[:MAX_CANDIDATES]


# --- merging ------------------------------------------------------------------------

# Fields a survivor takes from the merged customers when it has none (oldest first).
FILLED_FIELDS = ("name", "phone", "email", "external_id", "referred_by")


async def _group(session: AsyncSession, survivor_id: str, merged_ids: list[str]) -> tuple[Customer, list[Customer]]:
    if len(set(merged_ids)) != len(merged_ids):
        raise field_error("body.merge", "an id is listed more than once")
    if survivor_id in merged_ids:
        raise field_error("body.merge", f"a customer cannot be merged into itself ({survivor_id})")
    found = {c.id: c for c in await repository.lock_customers(session, [survivor_id, *merged_ids])}
    if survivor_id not in found:
        raise NotFound(f"no customer with id {survivor_id}")
    unknown = [cid for cid in merged_ids if cid not in found]
    if unknown:
        raise NotFound(f"no customer with id {', '.join(unknown)}")
    survivor = found[survivor_id]
    refuse_merged(survivor)
    merged = [found[cid] for cid in merged_ids]
    for customer in merged:
        refuse_merged(customer)
    merged.sort(key=lambda c: (c.created_at, c.id))
    return survivor, merged


async def _fill_survivor(session: AsyncSession, survivor: Customer, merged: list[Customer]) -> dict:
    """Fill the survivor's empty fields from the merged customers, oldest first.

    email and external_id are unique: one moves (and leaves its merged record)
    only when the survivor has none; otherwise it stays on the merged record.
    """

    group = {survivor.id, *(c.id for c in merged)}
    changes: dict = {}
    if survivor.referred_by in group:
        changes["referred_by"] = None  # a merge cannot make a customer its own referrer
    for field in FILLED_FIELDS:
        if getattr(survivor, field) is not None and field not in changes:
            continue
        for customer in merged:
            value = getattr(customer, field)
            if value is None or (field == "referred_by" and value in group):
                continue
            if field in ("email", "external_id"):
                setattr(customer, field, None)
                if field == "email":
                    customer.email_key = None
                await session.flush()  # free the unique value before the survivor takes it
            changes[field] = value
            break
    for field, value in changes.items():
        setattr(survivor, field, value)
    if "email" in changes:
        survivor.email_key = changes["email"].lower()
    return changes


async def merge(*, session: AsyncSession, survivor_id: str, merged_ids: list[str]) -> Customer:
    """Merge `merged_ids` into `survivor_id` in one transaction with its event."""

    survivor, merged = await _group(session, survivor_id, merged_ids)
    ids = [c.id for c in merged]
    now = utcnow()
    changes = await _fill_survivor(session, survivor, merged)
    survivor.purchase_count += sum(c.purchase_count for c in merged)
    for customer in merged:
        customer.purchase_count = 0
        customer.merged_into = survivor.id
        customer.merged_at = now
        customer.updated_at = now
        await refresh_match_keys(session, customer, name_changed=False)
    survivor.updated_at = now
    await refresh_match_keys(session, survivor, name_changed="name" in changes)
    await session.flush()

    await repository.move_transactions(session, from_ids=ids, to_id=survivor.id)
    await repository.repoint_customers(session, from_ids=ids, to_id=survivor.id)
    await repository.repoint_referrals_seen(session, from_ids=ids, to_id=survivor.id)
    await repository.repoint_shipped_ideas(session, from_ids=ids, to_id=survivor.id)
    await repository.repoint_service_costs(session, from_ids=ids, to_id=survivor.id)
    await repository.drop_derived_rows(session, ids)
    await repository.add_up_costs(session, from_ids=ids, to_id=survivor.id, now=now)
    await rebuild_summaries(session, [survivor.id, *ids])
    await rescore_customers(session, [survivor.id])  # its purchases changed: score them under the current model

    if changes:
        emit(
            session,
            "crm.identify.customer.updated",
            {"id": survivor.id, "changes": changes, "updated_at": now},
            subject=survivor.id,
        )
    emit(
        session,
        "crm.identify.customer.merged",
        {"survivor_id": survivor.id, "merged_ids": ids, "merged_at": now, "purchase_count": survivor.purchase_count},
        subject=survivor.id,
    )
    return survivor
