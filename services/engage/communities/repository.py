"""Communities' queries: all their SQL lives here."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from services.engage.communities.models import Community, CommunityMember, CommunityPost, HelpfulMark
from services.engage.models import profiles
from shared.db.bulk import one_of
from shared.db.database import dialect_name

_communities = Community.__table__
_members = CommunityMember.__table__
_posts = CommunityPost.__table__
_marks = HelpfulMark.__table__

# --- communities -------------------------------------------------------------------


def _with_counts():
    members = (
        select(func.count())
        .where(_members.c.community_id == _communities.c.id, _members.c.left_at.is_(None))
        .scalar_subquery()
    )
    threads = (
        select(func.count())
        .where(_posts.c.community_id == _communities.c.id, _posts.c.thread_id.is_(None), _posts.c.hidden_at.is_(None))
        .scalar_subquery()
    )
    return select(_communities, members.label("members"), threads.label("threads"))


async def community(session: AsyncSession, community_id: str) -> Community | None:
    return await session.get(Community, community_id)


async def community_with_counts(session: AsyncSession, community_id: str):
    query = _with_counts().where(_communities.c.id == community_id)
    return (await session.execute(query)).mappings().first()


async def communities_page(session: AsyncSession, *, after_id: str | None, limit: int, scope_type: str | None):
    query = _with_counts().order_by(_communities.c.id).limit(limit)
    if after_id is not None:
        query = query.where(_communities.c.id > after_id)
    if scope_type is not None:
        query = query.where(_communities.c.scope_type == scope_type)
    return list((await session.execute(query)).mappings())


async def automatic_communities(session: AsyncSession, scope_types: Collection[str]) -> list[Any]:
    """(id, scope_type, scope_value) of every community whose members follow these scopes."""

    query = _automatic_communities(dialect_name(session))
    return list((await session.execute(query, {"types": list(scope_types)})).all())


@cache
def _automatic_communities(dialect: str) -> Select[Any]:
    """Built once per dialect: read for every micro-batch of scores and stage changes."""

    columns = _communities.c
    of_types = one_of(columns.scope_type, dialect, "types")
    return select(columns.id, columns.scope_type, columns.scope_value).where(of_types)


# --- members -----------------------------------------------------------------------


def profile_condition(scope_type: str, scope_value: str) -> ColumnElement[bool]:
    """The customers of a segment, kind or stage, in engage's profiles read model."""

    t = profiles.table
    if scope_type == "kind":
        return profiles.has_kind(scope_value)
    return (t.c.segment if scope_type == "segment" else t.c.stage) == scope_value


async def customers_in_scope(session: AsyncSession, scope_type: str, scope_value: str) -> list[str]:
    t = profiles.table
    query = select(t.c.customer_id).where(profile_condition(scope_type, scope_value)).order_by(t.c.customer_id)
    return list((await session.execute(query)).scalars())


async def add_members(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(_members.insert(), rows)


async def close_memberships(session: AsyncSession, ids: list[str], at: datetime) -> None:
    for start in range(0, len(ids), 500):
        await session.execute(update(_members).where(_members.c.id.in_(ids[start : start + 500])).values(left_at=at))


async def current_membership(session: AsyncSession, community_id: str, customer_id: str):
    query = select(_members).where(
        _members.c.community_id == community_id,
        _members.c.customer_id == customer_id,
        _members.c.left_at.is_(None),
    )
    return (await session.execute(query)).mappings().first()


async def current_memberships_of(
    session: AsyncSession, customer_ids: Collection[str], community_ids: Collection[str]
) -> list[Any]:
    """(membership id, community_id, customer_id) of the customers' current stints in these communities."""

    if not customer_ids or not community_ids:
        return []
    query = select(_members.c.id, _members.c.community_id, _members.c.customer_id).where(
        _members.c.customer_id.in_(list(customer_ids)),
        _members.c.community_id.in_(list(community_ids)),
        _members.c.left_at.is_(None),
    )
    return list((await session.execute(query)).all())


async def members_page(session: AsyncSession, *, community_id: str, history: bool, after_id: str | None, limit: int):
    query = select(_members).where(_members.c.community_id == community_id).order_by(_members.c.id).limit(limit)
    if not history:
        query = query.where(_members.c.left_at.is_(None))
    if after_id is not None:
        query = query.where(_members.c.id > after_id)
    return list((await session.execute(query)).mappings())


async def customer_memberships_page(session: AsyncSession, *, customer_id: str, after_id: str | None, limit: int):
    """A customer's stints, newest first, with their communities' names and scopes."""

    query = (
        select(_members, _communities.c.name, _communities.c.scope_type, _communities.c.scope_value)
        .join(_communities, _communities.c.id == _members.c.community_id)
        .where(_members.c.customer_id == customer_id)
        .order_by(_members.c.id.desc())
        .limit(limit)
    )
    if after_id is not None:
        query = query.where(_members.c.id < after_id)
    return list((await session.execute(query)).mappings())


# --- posts ------------------------------------------------------------------------


async def post(session: AsyncSession, post_id: str) -> CommunityPost | None:
    return await session.get(CommunityPost, post_id)


async def threads_page(session: AsyncSession, *, community_id: str, after_id: str | None, limit: int):
    """A community's topics not hidden, newest first."""

    query = (
        select(_posts)
        .where(_posts.c.community_id == community_id, _posts.c.thread_id.is_(None), _posts.c.hidden_at.is_(None))
        .order_by(_posts.c.id.desc())
        .limit(limit)
    )
    if after_id is not None:
        query = query.where(_posts.c.id < after_id)
    return list((await session.execute(query)).mappings())


async def replies_page(session: AsyncSession, *, community_id: str, thread_id: str, after_id: str | None, limit: int):
    """A thread's replies not hidden, oldest first."""

    query = (
        select(_posts)
        .where(_posts.c.community_id == community_id, _posts.c.thread_id == thread_id, _posts.c.hidden_at.is_(None))
        .order_by(_posts.c.id)
        .limit(limit)
    )
    if after_id is not None:
        query = query.where(_posts.c.id > after_id)
    return list((await session.execute(query)).mappings())


async def hidden_page(session: AsyncSession, *, community_id: str, after_id: str | None, limit: int):
    """A community's hidden posts (moderators'), most recently hidden... by id, newest first."""

    query = (
        select(_posts)
        .where(_posts.c.community_id == community_id, _posts.c.hidden_at.is_not(None))
        .order_by(_posts.c.id.desc())
        .limit(limit)
    )
    if after_id is not None:
        query = query.where(_posts.c.id < after_id)
    return list((await session.execute(query)).mappings())


# --- helpful marks ------------------------------------------------------------------


async def mark(session: AsyncSession, post_id: str, customer_id: str) -> HelpfulMark | None:
    return await session.get(HelpfulMark, (post_id, customer_id))


async def helpful_totals(session: AsyncSession, authors: Iterable[str]) -> dict[str, int]:
    """Each author's helpful marks on posts not hidden, in every community (0 when none)."""

    ids = sorted(set(authors))
    if not ids:
        return {}
    query = (
        select(_posts.c.author_customer_id, func.count())
        .select_from(_marks.join(_posts, _posts.c.id == _marks.c.post_id))
        .where(_posts.c.author_customer_id.in_(ids), _posts.c.hidden_at.is_(None))
        .group_by(_posts.c.author_customer_id)
    )
    found = {author: int(count) for author, count in (await session.execute(query)).all()}
    return {author: found.get(author, 0) for author in ids}


async def recount_post_marks(session: AsyncSession, post_ids: Collection[str]) -> None:
    if not post_ids:
        return
    count = select(func.count()).where(_marks.c.post_id == _posts.c.id).scalar_subquery()
    await session.execute(update(_posts).where(_posts.c.id.in_(list(post_ids))).values(helpful_marks=count))


# --- merges ------------------------------------------------------------------------


async def authors_marked_by(session: AsyncSession, customer_ids: list[str]) -> set[str]:
    """The customer authors of posts these customers marked helpful."""

    query = (
        select(_posts.c.author_customer_id)
        .select_from(_marks.join(_posts, _posts.c.id == _marks.c.post_id))
        .where(_marks.c.customer_id.in_(customer_ids), _posts.c.author_customer_id.is_not(None))
        .distinct()
    )
    return set((await session.execute(query)).scalars())


async def move_to_survivor(session: AsyncSession, *, merged_ids: list[str], survivor_id: str) -> set[str]:
    """Memberships, posts and marks of `merged_ids` become the survivor's. Returns the posts
    whose marks changed (a mark both gave, a mark on what is now the survivor's own post)."""

    # Memberships: every stint moves; of the survivor's current stints in one community the
    # first joined stays.
    await session.execute(
        update(_members).where(_members.c.customer_id.in_(merged_ids)).values(customer_id=survivor_id)
    )
    current = (
        await session.execute(
            select(_members.c.id, _members.c.community_id)
            .where(_members.c.customer_id == survivor_id, _members.c.left_at.is_(None))
            .order_by(_members.c.community_id, _members.c.joined_at, _members.c.id)
        )
    ).all()
    seen: set[str] = set()
    extra = []
    for member_id, community_id in current:
        if community_id in seen:
            extra.append(member_id)
        seen.add(community_id)
    if extra:
        await session.execute(delete(_members).where(_members.c.id.in_(extra)))

    await session.execute(
        update(_posts).where(_posts.c.author_customer_id.in_(merged_ids)).values(author_customer_id=survivor_id)
    )

    everyone = [survivor_id, *merged_ids]
    marks = (
        await session.execute(
            select(_marks.c.post_id, _marks.c.customer_id, _marks.c.marked_at, _posts.c.author_customer_id)
            .select_from(_marks.join(_posts, _posts.c.id == _marks.c.post_id))
            .where(_marks.c.customer_id.in_(everyone))
            .order_by(_marks.c.post_id, _marks.c.marked_at)
        )
    ).all()
    keep: dict[str, Any] = {}
    changed: set[str] = set()
    for post_id, marker, marked_at, author in marks:
        if marker != survivor_id or author == survivor_id or post_id in keep:
            changed.add(post_id)
        if author != survivor_id and post_id not in keep:
            keep[post_id] = marked_at
    if changed:
        await session.execute(delete(_marks).where(_marks.c.customer_id.in_(everyone), _marks.c.post_id.in_(changed)))
        rows = [
            {"post_id": post_id, "customer_id": survivor_id, "marked_at": keep[post_id]}
            for post_id in changed
            if post_id in keep
        ]
        if rows:
            await session.execute(_marks.insert(), rows)
        await recount_post_marks(session, changed)
    return changed
