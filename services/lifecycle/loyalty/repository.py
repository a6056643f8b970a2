"""The loyalty programme's queries."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Select, bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.lifecycle.loyalty.models import (
    LoyaltyAccount,
    LoyaltyEntry,
    LoyaltyProgramme,
    LoyaltyRedemption,
    LoyaltyReward,
)
from shared.db.bulk import bulk_upsert, one_of
from shared.db.database import dialect_name

_programme = LoyaltyProgramme.__table__
_accounts = LoyaltyAccount.__table__
_entries = LoyaltyEntry.__table__
_rewards = LoyaltyReward.__table__
_redemptions = LoyaltyRedemption.__table__
_INSERT_ACCOUNTS = _accounts.insert()
_INSERT_ENTRIES = _entries.insert()

# The kinds of entries that are lots (bring points in that can be spent, taken back, expire).
LOT_KINDS = ("earned", "credited")

# The reads each micro-batch of purchases makes are built once (per dialect where they take a
# list of keys, `one_of`): building a statement and its cache key cost about twice what
# running it did.
_PROGRAMME = select(_programme).where(_programme.c.id == 1)


@cache
def _accounts_of(dialect: str) -> Select[Any]:
    query = select(_accounts).where(one_of(_accounts.c.customer_id, dialect)).order_by(_accounts.c.customer_id)
    return query.with_for_update()


@cache
def _open_lots_of(dialect: str) -> Select[Any]:
    return select(_entries).where(one_of(_entries.c.customer_id, dialect), _entries.c.remaining > 0)


@cache
def _lots(dialect: str) -> Select[Any]:
    return select(_entries).where(one_of(_entries.c.entry_id, dialect))


@cache
def _purchase_lots(dialect: str) -> Select[Any]:
    return select(_entries).where(one_of(_entries.c.source_id, dialect), _entries.c.kind == "earned")


@cache
def _keys(dialect: str) -> Select[Any]:
    return select(_entries.c.source_key).where(one_of(_entries.c.source_key, dialect))


@cache
def _points_since(dialect: str) -> Select[Any]:
    e = _entries
    return (
        select(e.c.customer_id, func.sum(e.c.points - e.c.taken_back))
        .where(one_of(e.c.customer_id, dialect), e.c.kind.in_(LOT_KINDS), e.c.at > bindparam("since"))
        .group_by(e.c.customer_id)
    )


@cache
def _redemptions_of(dialect: str) -> Select[Any]:
    return select(_redemptions).where(one_of(_redemptions.c.redemption_id, dialect))


async def _read(session: AsyncSession, statement: Callable[[str], Select[Any]], ids: list[str], **params: Any) -> Any:
    """`statement`, built for the session's dialect, run with `ids` as its list of keys."""

    return await session.execute(statement(dialect_name(session)), {"ids": ids, **params})


# --- the programme ---------------------------------------------------------------------


async def read_programme(session: AsyncSession, *, lock: bool = False) -> dict[str, Any] | None:
    query = _PROGRAMME
    if lock:
        query = query.with_for_update()
    row = (await session.execute(query)).mappings().first()
    return dict(row) if row is not None else None


async def save_programme(session: AsyncSession, row: dict[str, Any], *, exists: bool) -> None:
    if exists:
        await session.execute(update(_programme).where(_programme.c.id == 1).values(**row))
    else:
        await session.execute(_programme.insert(), [{"id": 1, **row}])


# --- accounts --------------------------------------------------------------------------


async def lock_accounts(session: AsyncSession, customer_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The customers' accounts, locked (PostgreSQL) in id order so two writers never deadlock."""

    ids = sorted(set(customer_ids))
    if not ids:
        return {}
    rows = await _read(session, _accounts_of, ids)
    return {row["customer_id"]: dict(row) for row in rows.mappings()}


async def read_account(session: AsyncSession, customer_id: str) -> dict[str, Any] | None:
    row = (await session.execute(select(_accounts).where(_accounts.c.customer_id == customer_id))).mappings().first()
    return dict(row) if row is not None else None


async def tier_members(session: AsyncSession) -> dict[str, int]:
    """How many accounts each tier holds, as the last judgement left them: one grouped read of
    the accounts, a full scan (only GET /v1/loyalty/programme asks it, e.g. the console's
    Lifecycle page; nothing polls it)."""

    query = select(_accounts.c.tier, func.count()).where(_accounts.c.tier.is_not(None)).group_by(_accounts.c.tier)
    return dict((await session.execute(query)).all())


async def accounts_after(session: AsyncSession, after_id: str | None, limit: int) -> list[dict[str, Any]]:
    query = select(_accounts).order_by(_accounts.c.customer_id).limit(limit)
    if after_id is not None:
        query = query.where(_accounts.c.customer_id > after_id)
    return [dict(row) for row in (await session.execute(query)).mappings()]


async def insert_accounts(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(_INSERT_ACCOUNTS, rows)


_UPDATE_ACCOUNT = (
    update(_accounts)
    .where(_accounts.c.customer_id == bindparam("key"))
    .values(
        balance=bindparam("balance"),
        tier=bindparam("tier"),
        tier_since=bindparam("tier_since"),
        updated_at=bindparam("updated_at"),
    )
)


async def update_accounts(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(
            _UPDATE_ACCOUNT,
            [
                {
                    "key": r["customer_id"],
                    "balance": r["balance"],
                    "tier": r["tier"],
                    "tier_since": r["tier_since"],
                    "updated_at": r["updated_at"],
                }
                for r in rows
            ],
        )


# --- the ledger ------------------------------------------------------------------------


async def open_lots(session: AsyncSession, customer_ids: Iterable[str]) -> list[dict[str, Any]]:
    ids = sorted(set(customer_ids))
    if not ids:
        return []
    return [dict(row) for row in (await _read(session, _open_lots_of, ids)).mappings()]


async def lots_by_id(session: AsyncSession, entry_ids: Iterable[str]) -> list[dict[str, Any]]:
    ids = sorted(set(entry_ids))
    if not ids:
        return []
    return [dict(row) for row in (await _read(session, _lots, ids)).mappings()]


async def purchase_lots(session: AsyncSession, transaction_ids: Iterable[str]) -> list[dict[str, Any]]:
    """The lots purchases earned (their refunds and voids take back from them)."""

    ids = sorted(set(transaction_ids))
    if not ids:
        return []
    return [dict(row) for row in (await _read(session, _purchase_lots, ids)).mappings()]


async def existing_keys(session: AsyncSession, keys: Iterable[str]) -> set[str]:
    wanted = sorted(set(keys))
    if not wanted:
        return set()
    return {key for (key,) in await _read(session, _keys, wanted)}


async def insert_entries(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(_INSERT_ENTRIES, rows)


_UPDATE_LOT = (
    update(_entries)
    .where(_entries.c.entry_id == bindparam("key"))
    .values(remaining=bindparam("remaining"), taken_back=bindparam("taken_back"))
)


async def update_lots(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(
            _UPDATE_LOT,
            [{"key": r["entry_id"], "remaining": r["remaining"], "taken_back": r["taken_back"]} for r in rows],
        )


async def customers_with_due_lots(session: AsyncSession, now: datetime, limit: int) -> list[str]:
    query = (
        select(_entries.c.customer_id)
        .where(_entries.c.expires_at <= now, _entries.c.remaining > 0)
        .group_by(_entries.c.customer_id)
        .order_by(_entries.c.customer_id)
        .limit(limit)
    )
    return [cid for (cid,) in await session.execute(query)]


async def due_points(session: AsyncSession, customer_id: str, now: datetime) -> int:
    """Points of the customer's lots past their expiry that no expiry entry took yet."""

    query = select(func.coalesce(func.sum(_entries.c.remaining), 0)).where(
        _entries.c.customer_id == customer_id, _entries.c.expires_at <= now, _entries.c.remaining > 0
    )
    return int((await session.execute(query)).scalar_one())


async def points_since(session: AsyncSession, customer_ids: Iterable[str], since: datetime) -> dict[str, int]:
    """Points earned and credited since `since`, less what refunds and voids took back of them."""

    ids = sorted(set(customer_ids))
    if not ids:
        return {}
    return {cid: int(points or 0) for cid, points in await _read(session, _points_since, ids, since=since)}


async def ledger_page(session: AsyncSession, customer_id: str, *, before_id: str | None, limit: int):
    """The customer's entries, newest first."""

    query = (
        select(_entries).where(_entries.c.customer_id == customer_id).order_by(_entries.c.entry_id.desc()).limit(limit)
    )
    if before_id is not None:
        query = query.where(_entries.c.entry_id < before_id)
    return [dict(row) for row in (await session.execute(query)).mappings()]


# --- rewards: value's offer templates sold for points -------------------------------


async def upsert_rewards(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """The newest announcement of each template wins (events may repeat or reorder)."""

    def on_conflict(insert: Any) -> Any:
        newer = insert.excluded.changed_at >= _rewards.c.changed_at
        columns = ("kind", "title", "points_price", "valid_from", "valid_until", "changed_at")
        return insert.on_conflict_do_update(
            index_elements=["template_id"],
            set_={name: insert.excluded[name] for name in columns},
            where=newer,
        )

    await bulk_upsert(session, _rewards, list(_rewards.c.keys()), rows, on_conflict)


async def read_reward(session: AsyncSession, template_id: str) -> dict[str, Any] | None:
    row = (await session.execute(select(_rewards).where(_rewards.c.template_id == template_id))).mappings().first()
    return dict(row) if row is not None else None


# --- redemptions -----------------------------------------------------------------------


async def insert_redemption(session: AsyncSession, row: dict[str, Any]) -> None:
    await session.execute(_redemptions.insert(), [row])


async def redemptions_by_id(session: AsyncSession, redemption_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    ids = sorted(set(redemption_ids))
    if not ids:
        return {}
    return {row["redemption_id"]: dict(row) for row in (await _read(session, _redemptions_of, ids)).mappings()}


async def settle_redemption(session: AsyncSession, row: dict[str, Any]) -> None:
    await session.execute(
        update(_redemptions)
        .where(_redemptions.c.redemption_id == row["redemption_id"])
        .values(status=row["status"], offer_id=row["offer_id"], reason=row["reason"], settled_at=row["settled_at"])
    )


# --- merges ----------------------------------------------------------------------------


async def move_to_survivor(session: AsyncSession, *, merged_ids: list[str], survivor_id: str) -> None:
    """The merged customers' ledger entries and redemptions become the survivor's; their accounts go."""

    for table in (_entries, _redemptions):
        await session.execute(update(table).where(table.c.customer_id.in_(merged_ids)).values(customer_id=survivor_id))
    await session.execute(delete(_accounts).where(_accounts.c.customer_id.in_(merged_ids)))
