"""webhooks' queries: all their SQL lives here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.network.webhooks.models import WebhookDelivery, WebhookSubscription
from shared.db.database import InlineSession

_subscriptions = WebhookSubscription.__table__
_deliveries = WebhookDelivery.__table__


async def read(session: AsyncSession | InlineSession, subscription_id: str) -> WebhookSubscription | None:
    return await session.get(WebhookSubscription, subscription_id)


async def page(session: AsyncSession, *, partner_id: str | None, only_partner: bool, after_id: str | None, limit: int):
    query = select(WebhookSubscription).order_by(WebhookSubscription.id).limit(limit)
    if only_partner:
        query = query.where(WebhookSubscription.partner_id == partner_id)
    if after_id:
        query = query.where(WebhookSubscription.id > after_id)
    return list((await session.execute(query)).scalars())


async def everything(session: AsyncSession | InlineSession) -> list[WebhookSubscription]:
    return list((await session.execute(select(WebhookSubscription).order_by(WebhookSubscription.id))).scalars())


async def remove(session: AsyncSession, subscription_id: str) -> None:
    await session.execute(delete(_deliveries).where(_deliveries.c.subscription_id == subscription_id))
    await session.execute(delete(_subscriptions).where(_subscriptions.c.id == subscription_id))


async def set_state(session: AsyncSession, subscription_id: str, **values: Any) -> None:
    await session.execute(update(_subscriptions).where(_subscriptions.c.id == subscription_id).values(**values))


async def record(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert(_deliveries), list(rows))


async def deliveries(session: AsyncSession, *, subscription_id: str, after_id: str | None, limit: int):
    """A subscription's attempts, newest first."""

    query = (
        select(_deliveries)
        .where(_deliveries.c.subscription_id == subscription_id)
        .order_by(_deliveries.c.id.desc())
        .limit(limit)
    )
    if after_id:
        query = query.where(_deliveries.c.id < after_id)
    return list((await session.execute(query)).mappings())


_DELIVERY = select(_deliveries).where(
    _deliveries.c.subscription_id == bindparam("subscription_id"), _deliveries.c.id == bindparam("delivery_id")
)


async def delivery(session: AsyncSession, *, subscription_id: str, delivery_id: str):
    params = {"subscription_id": subscription_id, "delivery_id": delivery_id}
    return (await session.execute(_DELIVERY, params)).mappings().first()


async def move_customers(session: AsyncSession, *, merged: Sequence[str], survivor: str) -> None:
    await session.execute(
        update(_deliveries).where(_deliveries.c.customer_id.in_(list(merged))).values(customer_id=survivor)
    )
