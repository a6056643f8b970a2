"""Queries of ideas, votes and comments.

Votes and value-weighted demand are counted when a list asks, from `idea_votes` joined
to value's customer profiles: an idea list holds hundreds of ideas and their votes, and a
count kept on the idea would go stale with every re-score of a voter.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal, cast

from sqlalchemy import (
    BigInteger,
    CursorResult,
    and_,
    case,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy import (
    cast as sql_cast,
)
from sqlalchemy.ext.asyncio import AsyncSession

from services.value.ideas.models import Idea, IdeaComment, IdeaVote
from services.value.models import profiles
from shared.db.database import insert_ignoring

_ideas = Idea.__table__
_votes = IdeaVote.__table__
_comments = IdeaComment.__table__

IdeaOrder = Literal["votes", "value", "newest"]


async def insert_idea(session: AsyncSession, row: dict[str, Any]) -> None:
    await session.execute(_ideas.insert(), [row])


async def read_idea(session: AsyncSession, idea_id: str):
    return (await session.execute(select(_ideas).where(_ideas.c.id == idea_id))).mappings().first()


def _tally():
    """Per idea: its votes, the sum of its voters' predicted CLV, and its voters without one."""

    p = profiles.table
    clv = p.c.predicted_clv
    return (
        select(
            _votes.c.idea_id,
            func.count().label("votes"),
            func.sum(func.coalesce(clv, 0.0)).label("demand"),
            func.sum(case((clv.is_(None), 1), else_=0)).label("unscored"),
        )
        .select_from(_votes.outerjoin(p, p.c.customer_id == _votes.c.customer_id))
        .group_by(_votes.c.idea_id)
        .subquery("tally")
    )


async def list_ideas(
    session: AsyncSession,
    *,
    order: IdeaOrder,
    after: tuple[Any, ...] | None,
    limit: int,
    statuses: Sequence[str] | None = None,
    product_area: str | None = None,
    customer_id: str | None = None,
    voter_id: str | None = None,
    idea_id: str | None = None,
):
    """Ideas with `votes`, `demand_cents` (value-weighted demand in cents) and `unscored`,
    highest first by `order` then id (`newest`: by id alone), after the key `after`.
    With `voter_id`, each row says whether that customer `voted` for it."""

    tally = _tally()
    votes = func.coalesce(tally.c.votes, 0)
    demand_cents = sql_cast(func.round(func.coalesce(tally.c.demand, 0.0) * 100), BigInteger)
    voted = (
        exists().where(_votes.c.idea_id == _ideas.c.id, _votes.c.customer_id == voter_id)
        if voter_id is not None
        else literal(False)
    )
    query = select(
        _ideas,
        votes.label("votes"),
        demand_cents.label("demand_cents"),
        func.coalesce(tally.c.unscored, 0).label("unscored"),
        voted.label("voted"),
    ).select_from(_ideas.outerjoin(tally, tally.c.idea_id == _ideas.c.id))
    if statuses is not None:
        query = query.where(_ideas.c.status.in_(statuses))
    if product_area is not None:
        query = query.where(_ideas.c.product_area == product_area)
    if customer_id is not None:
        query = query.where(_ideas.c.customer_id == customer_id)
    if idea_id is not None:
        query = query.where(_ideas.c.id == idea_id)
    if order == "newest":
        if after is not None:
            query = query.where(_ideas.c.id < after[0])
        query = query.order_by(_ideas.c.id.desc())
    else:
        key = votes if order == "votes" else demand_cents
        if after is not None:
            query = query.where(or_(key < after[0], and_(key == after[0], _ideas.c.id < after[1])))
        query = query.order_by(key.desc(), _ideas.c.id.desc())
    return (await session.execute(query.limit(limit))).mappings().all()


async def change_status(
    session: AsyncSession, idea_id: str, *, from_status: str, to_status: str, reason: str | None, at: datetime
) -> bool:
    """Move the idea on only from the status it was read in: two changes racing cannot both win."""

    result = await session.execute(
        update(_ideas)
        .where(_ideas.c.id == idea_id, _ideas.c.status == from_status)
        .values(status=to_status, status_reason=reason, status_changed_at=at)
    )
    return cast("CursorResult[Any]", result).rowcount == 1


async def add_vote(session: AsyncSession, row: dict[str, Any]) -> bool:
    """False when the customer had voted for the idea already (the primary key says so)."""

    result = await session.execute(insert_ignoring(session, _votes, ["idea_id", "customer_id"]), [row])
    return cast("CursorResult[Any]", result).rowcount == 1


async def count_votes(session: AsyncSession, idea_id: str) -> int:
    return int(await session.scalar(select(func.count()).where(_votes.c.idea_id == idea_id)) or 0)


async def insert_comment(session: AsyncSession, row: dict[str, Any]) -> None:
    await session.execute(_comments.insert(), [row])


async def list_comments(session: AsyncSession, idea_id: str, *, after_id: str | None, limit: int):
    """Oldest first, as a conversation reads."""

    query = select(_comments).where(_comments.c.idea_id == idea_id).order_by(_comments.c.id).limit(limit)
    if after_id is not None:
        query = query.where(_comments.c.id > after_id)
    return (await session.execute(query)).mappings().all()


async def contributors_and_voters(session: AsyncSession, idea_id: str) -> set[str]:
    """Everyone who commented on or voted for the idea."""

    commenters = select(_comments.c.customer_id).where(_comments.c.idea_id == idea_id)
    voters = select(_votes.c.customer_id).where(_votes.c.idea_id == idea_id)
    return set((await session.execute(commenters.union(voters))).scalars())


# --- merges -------------------------------------------------------------------------


async def votes_of(session: AsyncSession, customer_ids: list[str]):
    query = select(_votes.c.idea_id, _votes.c.customer_id, _votes.c.voted_at).where(
        _votes.c.customer_id.in_(customer_ids)
    )
    return (await session.execute(query)).all()


async def drop_votes(session: AsyncSession, pairs: list[tuple[str, str]]) -> None:
    for idea_id, customer_id in pairs:
        await session.execute(delete(_votes).where(_votes.c.idea_id == idea_id, _votes.c.customer_id == customer_id))


async def move_to_survivor(session: AsyncSession, *, merged_ids: list[str], survivor_id: str) -> None:
    for table in (_ideas, _votes, _comments):
        await session.execute(update(table).where(table.c.customer_id.in_(merged_ids)).values(customer_id=survivor_id))
