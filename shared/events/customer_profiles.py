"""What the suite says of each customer beyond its id: identify's scores, lifecycle's
stage, and when the customer bought; one read model engage and value each keep.

engage needs the segment and stage a customer had when answering a survey and to keep
communities' members; value needs them for campaign audiences and next best offer.
Neither asks identify or lifecycle: `consumer` (the `<service>-profiles` consumer) fills
the table from the events, in whole micro-batches, and `follow_merge` folds merged
customers into the survivor. Scores arrive only when a refit changes a customer's
segment, kinds or CLV band (shared/decisions.md), so `predicted_clv`,
`probability_alive` and `expected_purchases` are as of that customer's last change.

Kinds are kept as `,kind,kind,` so `has_kind()` is one LIKE on either database.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, and_, case, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from shared.db.bulk import bulk_upsert, one_of
from shared.db.database import UTCDateTime, dialect_name
from shared.events.consumer import ConsumerSpec
from shared.events.contracts import CustomerScored, TransactionRecorded
from shared.events.customer_aliases import Merge
from shared.events.envelope import Event
from shared.privacy.classification import about_customers

SCORED = "crm.identify.customer.scored"
STAGE_CHANGED = "crm.lifecycle.stage.changed"
PURCHASED = "crm.identify.transaction.recorded"
SUBJECTS = (SCORED, STAGE_CHANGED, PURCHASED)
_EPOCH = datetime.min.replace(tzinfo=UTC)

# identify's RFM segments (services/identify/analysis/rfm.py SEGMENTS; a test keeps the two
# equal): the values a profile's `segment` takes, for services that filter by it.
RFM_SEGMENTS: tuple[str, ...] = (
    "champions",
    "loyal",
    "potential_loyalists",
    "new_customers",
    "promising",
    "need_attention",
    "about_to_sleep",
    "at_risk",
    "cannot_lose",
    "hibernating",
    "lost",
)

SCORE_COLUMNS = (
    "segment",
    "kinds",
    "clv_band",
    "predicted_clv",
    "probability_alive",
    "expected_purchases",
    "expected_spend",
    "scored_at",
)


def kinds_text(kinds: Iterable[str]) -> str:
    return "," + ",".join(sorted(set(kinds))) + "," if kinds else ","


def kinds_of(text: str | None) -> list[str]:
    return [k for k in (text or "").split(",") if k]


class CustomerProfiles:
    def __init__(self, metadata: MetaData):
        self.table = Table(
            "customer_profiles",
            metadata,
            Column("customer_id", String(36), primary_key=True),
            Column("segment", String(50)),
            Column("kinds", String(200)),
            Column("clv_band", String(20)),
            Column("predicted_clv", Float),
            Column("probability_alive", Float),
            Column("expected_purchases", Float),
            Column("expected_spend", Float),
            Column("scored_at", UTCDateTime),
            Column("stage", String(20)),
            Column("stage_since", UTCDateTime),
            Column("purchases", Integer, nullable=False, server_default="0"),
            Column("first_purchase_at", UTCDateTime),
            Column("last_purchase_at", UTCDateTime),
            info=about_customers("the customer's segment, kinds, stage and purchase dates, for audiences and reports"),
        )

    # --- the consumer ----------------------------------------------------------------

    def consumer(self, description: str) -> ConsumerSpec:
        async def on_events(session: AsyncSession, events: list[Event[Any]]) -> None:
            await self.apply(session, events)

        return ConsumerSpec(purpose="profiles", batch_handler=on_events, subjects=SUBJECTS, description=description)

    async def apply(self, session: AsyncSession, events: list[Event[Any]]) -> None:
        """A micro-batch of scores, stage changes and purchases: the newest of each per customer."""

        scores: dict[str, dict[str, Any]] = {}
        stages: dict[str, dict[str, Any]] = {}
        purchases: dict[str, dict[str, Any]] = {}
        for event in events:
            data = event.data
            if event.type == SCORED:
                # The newest refit's score wins, within a batch as across batches.
                held = scores.get(data.customer_id)
                if held is None or data.scored_at >= held["scored_at"]:
                    scores[data.customer_id] = _score_row(data)
            elif event.type == STAGE_CHANGED:
                stages[data.customer_id] = {
                    "customer_id": data.customer_id,
                    "stage": data.to_stage,
                    "stage_since": data.at,
                }
            elif event.type == PURCHASED:
                _add_purchase(purchases, data)
        await self._upsert_scores(session, list(scores.values()))
        await self._upsert_stages(session, list(stages.values()))
        await self._upsert_purchases(session, list(purchases.values()))

    async def _upsert_scores(self, session: AsyncSession, rows: list[dict[str, Any]]) -> None:
        t = self.table

        def on_conflict(insert: Any) -> Any:
            newer = or_(t.c.scored_at.is_(None), insert.excluded.scored_at >= t.c.scored_at)
            return insert.on_conflict_do_update(
                index_elements=["customer_id"],
                set_={name: case((newer, insert.excluded[name]), else_=t.c[name]) for name in SCORE_COLUMNS},
            )

        await bulk_upsert(session, t, ("customer_id", *SCORE_COLUMNS), rows, on_conflict)

    async def _upsert_stages(self, session: AsyncSession, rows: list[dict[str, Any]]) -> None:
        t = self.table

        # Stream order, not `stage_since`: a stage's time is when its cause happened (a
        # purchase recorded late can date `new` before the `prospect` of the customer's creation).
        def on_conflict(insert: Any) -> Any:
            return insert.on_conflict_do_update(
                index_elements=["customer_id"],
                set_={name: insert.excluded[name] for name in ("stage", "stage_since")},
            )

        await bulk_upsert(session, t, ("customer_id", "stage", "stage_since"), rows, on_conflict)

    async def _upsert_purchases(self, session: AsyncSession, rows: list[dict[str, Any]]) -> None:
        t = self.table

        def on_conflict(insert: Any) -> Any:
            x = insert.excluded
            return insert.on_conflict_do_update(
                index_elements=["customer_id"],
                set_={
                    "purchases": case((x.purchases > t.c.purchases, x.purchases), else_=t.c.purchases),
                    "first_purchase_at": _earlier(t.c.first_purchase_at, x.first_purchase_at),
                    "last_purchase_at": _later(t.c.last_purchase_at, x.last_purchase_at),
                },
            )

        columns = ("customer_id", "purchases", "first_purchase_at", "last_purchase_at")
        await bulk_upsert(session, t, columns, rows, on_conflict)

    # --- merges ------------------------------------------------------------------------

    async def follow_merge(self, session: AsyncSession, merge: Merge) -> None:
        """A merge step: the survivor's purchases span all of theirs; its scores and stage are
        its own, else the merged customer's most recently scored (identify and lifecycle
        send the survivor's own soon after)."""

        t = self.table
        ids = [merge.survivor_id, *merge.merged_ids]
        rows = await session.execute(select(t).where(one_of(t.c.customer_id, dialect_name(session))), {"ids": ids})
        found = {row["customer_id"]: dict(row) for row in rows.mappings()}
        if not found:
            return
        merged_rows = [found[i] for i in merge.merged_ids if i in found]
        survivor = found.get(merge.survivor_id) or {"customer_id": merge.survivor_id, "purchases": 0}
        for row in sorted(merged_rows, key=lambda r: r["scored_at"] or _EPOCH):
            if survivor.get("scored_at") is None and row["scored_at"] is not None:
                survivor.update({name: row[name] for name in SCORE_COLUMNS})
            if survivor.get("stage") is None and row["stage"] is not None:
                survivor.update(stage=row["stage"], stage_since=row["stage_since"])
        everyone = [survivor, *merged_rows]
        survivor["purchases"] = sum(r.get("purchases") or 0 for r in everyone)
        firsts = [r["first_purchase_at"] for r in everyone if r.get("first_purchase_at")]
        lasts = [r["last_purchase_at"] for r in everyone if r.get("last_purchase_at")]
        survivor["first_purchase_at"] = min(firsts, default=None)
        survivor["last_purchase_at"] = max(lasts, default=None)
        await session.execute(delete(t).where(one_of(t.c.customer_id, dialect_name(session))), {"ids": ids})
        await session.execute(t.insert(), [{c.name: survivor.get(c.name) for c in t.columns}])

    # --- reads -------------------------------------------------------------------------

    async def get(self, session: AsyncSession, customer_id: str) -> dict[str, Any] | None:
        row = (await session.execute(select(t := self.table).where(t.c.customer_id == customer_id))).mappings().first()
        return _present(row) if row is not None else None

    async def of(self, session: AsyncSession, customer_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        ids = list(dict.fromkeys(customer_ids))
        if not ids:
            return {}
        t = self.table
        rows = await session.execute(select(t).where(one_of(t.c.customer_id, dialect_name(session))), {"ids": ids})
        return {row["customer_id"]: _present(row) for row in rows.mappings()}

    def has_kind(self, kind: str) -> ColumnElement[bool]:
        """A WHERE clause: the customer is of this kind of strategically significant customer."""

        return self.table.c.kinds.like(f"%,{kind},%")


def _score_row(data: CustomerScored) -> dict[str, Any]:
    return {
        "customer_id": data.customer_id,
        "segment": data.segment,
        "kinds": kinds_text(data.kinds),
        "clv_band": data.clv_band,
        "predicted_clv": data.predicted_clv,
        "probability_alive": data.probability_alive,
        "expected_purchases": data.expected_purchases,
        "expected_spend": data.expected_spend,
        "scored_at": data.scored_at,
    }


def _add_purchase(purchases: dict[str, dict[str, Any]], data: TransactionRecorded) -> None:
    row = purchases.setdefault(
        data.customer_id,
        {"customer_id": data.customer_id, "purchases": 0, "first_purchase_at": None, "last_purchase_at": None},
    )
    row["purchases"] = max(row["purchases"], data.purchase_count)
    at = data.occurred_at
    row["first_purchase_at"] = at if row["first_purchase_at"] is None else min(row["first_purchase_at"], at)
    row["last_purchase_at"] = at if row["last_purchase_at"] is None else max(row["last_purchase_at"], at)


def _earlier(current: Any, incoming: Any) -> Any:
    return case((and_(current.isnot(None), current <= incoming), current), else_=incoming)


def _later(current: Any, incoming: Any) -> Any:
    return case((and_(current.isnot(None), current >= incoming), current), else_=incoming)


def _present(row: Any) -> dict[str, Any]:
    profile = dict(row)
    profile["kinds"] = kinds_of(profile["kinds"])
    return profile
