"""Campaigns' queries: audiences over the read models, members, delivery outcomes, results."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Float, Interval, and_, bindparam, case, cast, delete, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from services.value.campaigns.models import Campaign, CampaignMember, MarketingConsent, PlaybookMember, Purchase
from services.value.models import Offer, SuppressedCustomer, profiles
from shared.db.bulk import bulk_execute, bulk_insert, bulk_upsert, one_of
from shared.db.database import InlineSession, dialect_name

_campaigns = Campaign.__table__
_members = CampaignMember.__table__
_consents = MarketingConsent.__table__
_purchases = Purchase.__table__
_offers = Offer.__table__
_suppressed = SuppressedCustomer.__table__
_profiles = profiles.table

MEMBER_COLUMNS = tuple(c.name for c in _members.columns)


# --- campaigns ------------------------------------------------------------------------


async def insert_campaign(session: AsyncSession, row: dict[str, Any]) -> None:
    await session.execute(_campaigns.insert(), [row])


async def read_campaign(session: AsyncSession, campaign_id: str, *, for_update: bool = False):
    query = select(_campaigns).where(_campaigns.c.id == campaign_id)
    if for_update and dialect_name(session) == "postgresql":
        query = query.with_for_update()
    return (await session.execute(query)).mappings().first()


async def update_campaign(session: AsyncSession, campaign_id: str, values: dict[str, Any]) -> None:
    await session.execute(update(_campaigns).where(_campaigns.c.id == campaign_id).values(**values))


async def due_campaigns(session: AsyncSession | InlineSession, now: datetime) -> list[str]:
    """The scheduled campaigns whose time has come, the longest due first."""

    c = _campaigns.c
    query = select(c.id).where(c.status == "scheduled", c.scheduled_at <= now).order_by(c.scheduled_at, c.id)
    return list((await session.execute(query)).scalars())


async def list_campaigns(session: AsyncSession, *, status: str | None, before_id: str | None, limit: int):
    query = select(_campaigns).order_by(_campaigns.c.id.desc()).limit(limit)
    if status is not None:
        query = query.where(_campaigns.c.status == status)
    if before_id:
        query = query.where(_campaigns.c.id < before_id)
    return (await session.execute(query)).mappings().all()


# --- audiences ------------------------------------------------------------------------


def _audience_where(audience: dict[str, Any], channel: str) -> list[ColumnElement[bool]]:
    p = _profiles.c
    where: list[ColumnElement[bool]] = [
        _consents.c.channel == channel,
        _consents.c.granted.is_(True),
        ~p.customer_id.in_(select(_suppressed.c.customer_id)),
    ]
    if audience.get("segments"):
        where.append(p.segment.in_(audience["segments"]))
    if audience.get("kinds"):
        where.append(or_(*(profiles.has_kind(kind) for kind in audience["kinds"])))
    if audience.get("stages"):
        where.append(p.stage.in_(audience["stages"]))
    for name in ("predicted_clv", "probability_alive"):
        bounds = audience.get(name) or {}
        if bounds.get("min") is not None:
            where.append(p[name] >= bounds["min"])
        if bounds.get("max") is not None:
            where.append(p[name] <= bounds["max"])
    if audience.get("last_purchase_after") is not None:
        where.append(p.last_purchase_at > audience["last_purchase_after"])
    if audience.get("last_purchase_before") is not None:
        where.append(p.last_purchase_at < audience["last_purchase_before"])
    return where


def _audience_from():
    return _profiles.join(_consents, _consents.c.customer_id == _profiles.c.customer_id)


async def audience_count(session: AsyncSession, audience: dict[str, Any], channel: str) -> int:
    query = select(func.count()).select_from(_audience_from()).where(*_audience_where(audience, channel))
    return int((await session.execute(query)).scalar_one())


async def audience_sample(session: AsyncSession, audience: dict[str, Any], channel: str, limit: int):
    p = _profiles.c
    query = (
        select(p.customer_id, p.segment, p.stage, p.predicted_clv)
        .select_from(_audience_from())
        .where(*_audience_where(audience, channel))
        .order_by(p.customer_id)
        .limit(limit)
    )
    return (await session.execute(query)).mappings().all()


async def audience(session: AsyncSession, audience: dict[str, Any], channel: str) -> list[tuple[str, str | None]]:
    """Every eligible customer with its segment: (customer_id, segment), in id order."""

    p = _profiles.c
    query = (
        select(p.customer_id, p.segment)
        .select_from(_audience_from())
        .where(*_audience_where(audience, channel))
        .order_by(p.customer_id)
    )
    return [(customer_id, segment) for customer_id, segment in (await session.execute(query)).all()]


# --- members --------------------------------------------------------------------------


async def insert_members(session: AsyncSession, rows: list[tuple[Any, ...]]) -> None:
    """Rows as tuples in MEMBER_COLUMNS' order."""

    await bulk_insert(session, _members, MEMBER_COLUMNS, rows)


async def unissued_members(session: AsyncSession, campaign_id: str) -> list[tuple[str, str | None, str, str]]:
    """A launch cut short: the treatment members whose planned offer is not there yet, as
    (customer_id, segment, offer id, request id) in customer id order."""

    m, o, p = _members.c, _offers.c, _profiles.c
    query = (
        select(m.customer_id, p.segment, m.offer_id, m.request_id)
        .select_from(
            _members.outerjoin(_offers, o.id == m.offer_id).outerjoin(_profiles, p.customer_id == m.customer_id)
        )
        .where(m.campaign_id == campaign_id, m.group == "treatment", m.offer_id.is_not(None), o.id.is_(None))
        .order_by(m.customer_id)
    )
    return [(cid, segment, oid, rid) for cid, segment, oid, rid in (await session.execute(query)).all()]


async def members(session: AsyncSession, campaign_id: str, *, after_customer: str | None, limit: int):
    query = select(_members).where(_members.c.campaign_id == campaign_id).order_by(_members.c.customer_id).limit(limit)
    if after_customer:
        query = query.where(_members.c.customer_id > after_customer)
    return (await session.execute(query)).mappings().all()


async def promotions_of(session: AsyncSession, customer_id: str, *, before_campaign: str | None, limit: int):
    m = _members.c
    query = select(_members).where(m.customer_id == customer_id).order_by(m.campaign_id.desc()).limit(limit)
    if before_campaign:
        query = query.where(m.campaign_id < before_campaign)
    return (await session.execute(query)).mappings().all()


async def record_outcomes(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Each delivery report's outcome on the member row its request names
    (rows: rid, new_outcome, reason, at)."""

    statement = (
        update(_members)
        .where(_members.c.request_id == bindparam("rid"))
        .values(outcome=bindparam("new_outcome"), outcome_reason=bindparam("reason"), outcome_at=bindparam("at"))
    )
    await bulk_execute(session, statement, rows)


# --- read models: consent and purchases --------------------------------------------------


async def upsert_consents(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    t = _consents

    def on_conflict(insert: Any) -> Any:
        newer = insert.excluded.changed_at >= t.c.changed_at
        return insert.on_conflict_do_update(
            index_elements=["customer_id", "channel"],
            set_={
                "granted": case((newer, insert.excluded.granted), else_=t.c.granted),
                "changed_at": case((newer, insert.excluded.changed_at), else_=t.c.changed_at),
            },
        )

    await bulk_upsert(session, t, ("customer_id", "channel", "granted", "changed_at"), rows, on_conflict)


async def upsert_purchases(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Recorded purchases; a refund or void that arrived first left a placeholder to fill."""

    t = _purchases

    def on_conflict(insert: Any) -> Any:
        x = insert.excluded
        return insert.on_conflict_do_update(
            index_elements=["transaction_id"],
            set_={"customer_id": x.customer_id, "amount": x.amount, "occurred_at": x.occurred_at},
        )

    columns = ("transaction_id", "customer_id", "amount", "refunded", "voided", "occurred_at")
    await bulk_upsert(session, t, columns, rows, on_conflict)


async def add_refunds(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    t = _purchases

    def on_conflict(insert: Any) -> Any:
        return insert.on_conflict_do_update(
            index_elements=["transaction_id"], set_={"refunded": t.c.refunded + insert.excluded.refunded}
        )

    columns = ("transaction_id", "customer_id", "amount", "refunded", "voided", "occurred_at")
    await bulk_upsert(session, t, columns, rows, on_conflict)


async def mark_voided(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    t = _purchases

    def on_conflict(insert: Any) -> Any:
        return insert.on_conflict_do_update(index_elements=["transaction_id"], set_={"voided": True})

    columns = ("transaction_id", "customer_id", "amount", "refunded", "voided", "occurred_at")
    await bulk_upsert(session, t, columns, rows, on_conflict)


# --- results ----------------------------------------------------------------------------


async def group_results(
    session: AsyncSession, campaign_id: str, start: datetime, end: datetime
) -> dict[str, dict[str, float]]:
    """Per group: members, converted (a purchase in the window), and the sum and sum of
    squares of each member's net revenue in the window (refunds off, voids out): one
    aggregate over members and purchases, whatever their number."""

    p, m = _purchases.c, _members.c
    window = and_(m.campaign_id == campaign_id, p.occurred_at >= start, p.occurred_at < end)
    return await _by_group(session, _members, m.campaign_id == campaign_id, window)


async def _by_group(
    session: AsyncSession, members: Any, of_owner: ColumnElement[bool], in_window: ColumnElement[bool]
) -> dict[str, dict[str, float]]:
    """The campaign's or playbook's groups (`of_owner` picks its members) over the purchases
    `in_window` says count: count, converted, sum and sum of squares of net revenue."""

    p, m = _purchases.c, members.c
    net = cast(p.amount, Float) - cast(p.refunded, Float)
    per_customer = (
        select(p.customer_id, func.sum(net).label("revenue"))
        .select_from(_purchases.join(members, and_(m.customer_id == p.customer_id, in_window)))
        .where(p.voided.is_(False))
        .group_by(p.customer_id)
        .subquery()
    )
    revenue = func.coalesce(per_customer.c.revenue, 0.0)
    query = (
        select(
            m.group,
            func.count().label("n"),
            func.count(per_customer.c.customer_id).label("converted"),
            func.sum(revenue).label("total"),
            func.sum(revenue * revenue).label("squares"),
        )
        .select_from(members.outerjoin(per_customer, per_customer.c.customer_id == m.customer_id))
        .where(of_owner)
        .group_by(m.group)
    )
    return {
        row["group"]: {
            "n": int(row["n"]),
            "converted": int(row["converted"]),
            "total": float(row["total"] or 0),
            "squares": float(row["squares"] or 0),
        }
        for row in (await session.execute(query)).mappings()
    }


async def redemptions(session: AsyncSession, *, campaign_id: str | None = None, playbook_id: str | None = None):
    """The campaign's (or playbook's) redeemed offers and what they cost."""

    o = _offers.c
    owner = o.campaign_id == campaign_id if campaign_id is not None else o.playbook_id == playbook_id
    query = select(func.count(), func.coalesce(func.sum(cast(o.cost, Float)), 0.0)).where(owner, o.status == "redeemed")
    count, cost = (await session.execute(query)).one()
    return int(count), float(cost)


# --- merges -----------------------------------------------------------------------------


async def rows_of(session: AsyncSession, table_name: str, customer_ids: list[str]) -> list[dict[str, Any]]:
    table = {"members": _members, "consents": _consents, "playbook_members": PlaybookMember.__table__}[table_name]
    query = select(table).where(one_of(table.c.customer_id, dialect_name(session)))
    return [dict(row) for row in (await session.execute(query, {"ids": customer_ids})).mappings()]


async def replace_consents(session: AsyncSession, customer_ids: list[str], rows: list[dict[str, Any]]) -> None:
    await session.execute(delete(_consents).where(_consents.c.customer_id.in_(customer_ids)))
    if rows:
        await session.execute(_consents.insert(), rows)


async def drop_members(session: AsyncSession, keys: list[tuple[str, str]], *, playbooks: bool = False) -> None:
    table = PlaybookMember.__table__ if playbooks else _members
    owner = table.c.playbook_id if playbooks else table.c.campaign_id
    for owner_id, customer_id in keys:
        await session.execute(delete(table).where(owner == owner_id, table.c.customer_id == customer_id))


async def move_members(
    session: AsyncSession, merged_ids: list[str], survivor_id: str, *, playbooks: bool = False
) -> None:
    table = PlaybookMember.__table__ if playbooks else _members
    await session.execute(update(table).where(table.c.customer_id.in_(merged_ids)).values(customer_id=survivor_id))


async def move_purchases(session: AsyncSession, merged_ids: list[str], survivor_id: str) -> None:
    await session.execute(
        update(_purchases).where(_purchases.c.customer_id.in_(merged_ids)).values(customer_id=survivor_id)
    )


# --- playbooks ---------------------------------------------------------------------------

_playbook_members = PlaybookMember.__table__


async def enter_playbooks(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Members as they entered; entering again changes nothing (the first entry holds)."""

    t = _playbook_members

    def on_conflict(insert: Any) -> Any:
        return insert.on_conflict_do_nothing(index_elements=["playbook_id", "customer_id"])

    await bulk_upsert(session, t, ("playbook_id", "customer_id", "group", "entered_at"), rows, on_conflict)


async def playbook_member(session: AsyncSession, playbook_id: str, customer_id: str):
    t = _playbook_members
    query = select(t).where(t.c.playbook_id == playbook_id, t.c.customer_id == customer_id)
    return (await session.execute(query)).mappings().first()


async def record_playbook_offer(
    session: AsyncSession, playbook_id: str, customer_id: str, offer_id: str | None, outcome: str
) -> None:
    t = _playbook_members
    await session.execute(
        update(t)
        .where(t.c.playbook_id == playbook_id, t.c.customer_id == customer_id)
        .values(offer_id=offer_id, offer_outcome=outcome)
    )


def _within(occurred: Any, entered: Any, days: int, dialect: str) -> ColumnElement[bool]:
    """occurred in [entered, entered + days): an interval on PostgreSQL, Julian days on SQLite."""

    if dialect == "postgresql":
        end = entered + literal(timedelta(days=days), Interval())
        return and_(occurred >= entered, occurred < end)
    return and_(occurred >= entered, func.julianday(occurred) < func.julianday(entered) + days)


async def playbook_group_results(session: AsyncSession, playbook_id: str, days: int) -> dict[str, dict[str, float]]:
    """group_results() for a playbook: each member's own window after it entered."""

    p, m = _purchases.c, _playbook_members.c
    window = and_(m.playbook_id == playbook_id, _within(p.occurred_at, m.entered_at, days, dialect_name(session)))
    return await _by_group(session, _playbook_members, m.playbook_id == playbook_id, window)


async def playbook_known(session: AsyncSession, playbook_id: str) -> bool:
    t = _playbook_members
    return (
        await session.execute(select(t.c.playbook_id).where(t.c.playbook_id == playbook_id).limit(1))
    ).first() is not None
