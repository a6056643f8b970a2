"""The contact read model's rules: fill it from identify's events, answer who a customer is
and which customer an address belongs to, and stop mail to an address that bounced hard."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.engage.contacts.models import Contact
from shared.db.database import insert_ignoring
from shared.events.contracts import CustomerCreated, CustomerUpdated
from shared.events.customer_aliases import Merge
from shared.events.envelope import Event

CONTACT_FIELDS = ("name", "email", "phone")


def email_key(address: str | None) -> str | None:
    return address.strip().lower() if address else None


async def remember(session: AsyncSession, events: list[Event[Any]]) -> None:
    """A micro-batch of `customer.created` and `customer.updated`, in stream order."""

    table = Contact.__table__
    for event in events:
        data = event.data
        if isinstance(data, CustomerCreated) or event.type.endswith(".created"):
            row = {
                "customer_id": data.id,
                "name": data.name,
                "email": data.email,
                "email_key": email_key(data.email),
                "phone": data.phone,
                "updated_at": event.at,
            }
            await session.execute(insert_ignoring(session, table, ["customer_id"]), [row])
        else:
            await _apply_update(session, data, event.at)


async def _apply_update(session: AsyncSession, data: CustomerUpdated, at: datetime) -> None:
    changes = {name: value for name, value in data.changes.items() if name in CONTACT_FIELDS}
    if not changes:
        return
    values: dict[str, Any] = {**changes, "updated_at": at}
    if "email" in changes:
        # A new address is worth trying again: the hard bounce was the old one's.
        values.update(
            email_key=email_key(changes["email"]), email_undeliverable_at=None, email_undeliverable_reason=None
        )
    await session.execute(update(Contact).where(Contact.customer_id == data.id).values(**values))


async def follow_merge(session: AsyncSession, merge: Merge) -> None:
    """A merge step: the survivor keeps its own details and takes a merged customer's where
    it has none (identify announces the survivor's own changes separately)."""

    ids = [merge.survivor_id, *merge.merged_ids]
    rows = {
        c.customer_id: c for c in (await session.execute(select(Contact).where(Contact.customer_id.in_(ids)))).scalars()
    }
    survivor = rows.get(merge.survivor_id)
    merged = [rows[i] for i in merge.merged_ids if i in rows]
    if not merged:
        return
    if survivor is None:
        survivor = Contact(customer_id=merge.survivor_id, updated_at=merge.at)
        session.add(survivor)
    for other in merged:
        for name in (*CONTACT_FIELDS, "email_key", "email_undeliverable_at", "email_undeliverable_reason"):
            if getattr(survivor, name) is None and getattr(other, name) is not None:
                if name.startswith("email_undeliverable") and survivor.email_key != other.email_key:
                    continue
                setattr(survivor, name, getattr(other, name))
    await session.execute(delete(Contact).where(Contact.customer_id.in_(merge.merged_ids)))


async def contact_of(session: AsyncSession, customer_id: str) -> Contact | None:
    return await session.get(Contact, customer_id)


async def customers_with_email(session: AsyncSession, address: str) -> list[str]:
    """The customers whose email is `address` (case-insensitive): usually one."""

    query = select(Contact.customer_id).where(Contact.email_key == email_key(address)).order_by(Contact.customer_id)
    return list((await session.execute(query)).scalars())


async def mark_undeliverable(session: AsyncSession, address: str, reason: str, at: datetime) -> int:
    """A hard bounce for `address`: every contact with it stops getting mail. Rows changed."""

    result = await session.execute(
        update(Contact)
        .where(Contact.email_key == email_key(address), Contact.email_undeliverable_at.is_(None))
        .values(email_undeliverable_at=at, email_undeliverable_reason=reason[:500])
    )
    return int(getattr(result, "rowcount", 0) or 0)
