"""lifecycle's queries."""

from __future__ import annotations

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.lifecycle.models import CustomerStage, StageTransition

_stages = CustomerStage.__table__
_transitions = StageTransition.__table__


async def stages_of(session: AsyncSession, customer_ids: set[str]) -> dict[str, dict]:
    if not customer_ids:
        return {}
    rows = await session.execute(select(_stages).where(_stages.c.customer_id.in_(customer_ids)))
    return {row.customer_id: dict(row._mapping) for row in rows}


async def insert_stages(session: AsyncSession, rows: list[dict]) -> None:
    if rows:
        await session.execute(_stages.insert(), rows)


_UPDATE_STAGE = (
    update(_stages)
    .where(_stages.c.customer_id == bindparam("key"))
    .values(stage=bindparam("stage"), purchase_count=bindparam("purchase_count"), updated_at=bindparam("updated_at"))
)


async def update_stages(session: AsyncSession, rows: list[dict]) -> None:
    if rows:
        await session.execute(
            _UPDATE_STAGE,
            [
                {
                    "key": r["customer_id"],
                    "stage": r["stage"],
                    "purchase_count": r["purchase_count"],
                    "updated_at": r["updated_at"],
                }
                for r in rows
            ],
        )


async def insert_transitions(session: AsyncSession, rows: list[dict]) -> None:
    if rows:
        await session.execute(_transitions.insert(), rows)


async def absorb_merged(session: AsyncSession, *, merged_ids: list[str], survivor_id: str) -> None:
    """The merged customers' transitions join the survivor's history; their stage rows go."""

    await session.execute(
        update(_transitions).where(_transitions.c.customer_id.in_(merged_ids)).values(customer_id=survivor_id)
    )
    await session.execute(delete(_stages).where(_stages.c.customer_id.in_(merged_ids)))


_READ_STAGE = select(_stages).where(_stages.c.customer_id == bindparam("customer_id"))
# In time order: after a merge the history interleaves transitions recorded for several ids.
_READ_HISTORY = (
    select(_transitions)
    .where(_transitions.c.customer_id == bindparam("customer_id"))
    .order_by(_transitions.c.at, _transitions.c.seq)
)


async def read_lifecycle(session: AsyncSession, customer_id: str):
    stage = (await session.execute(_READ_STAGE, {"customer_id": customer_id})).mappings().first()
    if stage is None:
        return None, []
    history = (await session.execute(_READ_HISTORY, {"customer_id": customer_id})).mappings().all()
    return stage, history


# When each customer entered its stage: its latest transition to it (a merge can bring
# older transitions to the same stage along), one index probe per customer listed.
_SINCE = (
    select(func.max(_transitions.c.at))
    .where(_transitions.c.customer_id == _stages.c.customer_id, _transitions.c.to_stage == _stages.c.stage)
    .correlate(_stages)
    .scalar_subquery()
)


async def customers_in_stage(session: AsyncSession, *, stage: str | None, after_id: str | None, limit: int):
    """Customers with a stage (only `stage`'s when given), in id order: customer_id, stage, since."""

    query = (
        select(_stages.c.customer_id, _stages.c.stage, _SINCE.label("since"))
        .order_by(_stages.c.customer_id)
        .limit(limit)
    )
    query = query.where(_stages.c.stage == stage) if stage is not None else query.where(_stages.c.stage.is_not(None))
    if after_id is not None:
        query = query.where(_stages.c.customer_id > after_id)
    return (await session.execute(query)).mappings().all()
