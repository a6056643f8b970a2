"""Communities' rules: scopes, members who follow identify's scores and lifecycle's stages,
threads and replies, moderation, and helpful marks (identify's benchmark evidence)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, get_args

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from services.engage.communities import repository
from services.engage.communities.models import Community, CommunityPost, HelpfulMark
from services.engage.communities.schemas import CommunityCreate, Moderation, ReplyCreate, ThreadCreate
from services.engage.models import aliases, known_customers
from shared.db.database import insert_ignoring, utcnow
from shared.db.ids import uuid7
from shared.events.contracts import CUSTOMER_KINDS, RFM_SEGMENTS, CustomerScored, Stage, StageChanged
from shared.events.customer_aliases import Merge
from shared.events.envelope import Event
from shared.events.messaging import emit
from shared.http.errors import Conflict, NotFound, field_error

SCORED = "crm.identify.customer.scored"
STAGE_CHANGED = "crm.lifecycle.stage.changed"
POST_CREATED = "crm.engage.community.post.created"
HELPFULNESS_CHANGED = "crm.engage.community.helpfulness.changed"

SCOPE_VALUES: dict[str, tuple[str, ...]] = {
    "segment": RFM_SEGMENTS,
    "kind": CUSTOMER_KINDS,
    "stage": get_args(Stage),
}

# --- communities -------------------------------------------------------------------


async def create_community(*, session: AsyncSession, data: CommunityCreate) -> dict[str, Any]:
    """A community; one scoped to a segment, kind or stage starts with the customers engage's
    profiles read model has in it (later changes follow the events)."""

    if data.scope_type == "list":
        if data.scope_value is not None:
            raise field_error("body.scope_value", "a hand-picked list has no scope value: leave it out")
    else:
        allowed = SCOPE_VALUES[data.scope_type]
        if data.scope_value not in allowed:
            raise field_error("body.scope_value", f"a {data.scope_type} community needs one of: {', '.join(allowed)}")
    now = utcnow()
    community = Community(
        id=uuid7(),
        name=data.name,
        description=data.description,
        scope_type=data.scope_type,
        scope_value=data.scope_value,
        created_at=now,
    )
    session.add(community)
    if data.scope_value is not None:
        customers = await repository.customers_in_scope(session, data.scope_type, data.scope_value)
        await repository.add_members(session, [_member(community.id, cid, "auto", now) for cid in customers])
    await session.flush()
    return await get_community(session=session, community_id=community.id)


def _member(community_id: str, customer_id: str, source: str, at: datetime) -> dict[str, Any]:
    return {
        "id": uuid7(),
        "community_id": community_id,
        "customer_id": customer_id,
        "source": source,
        "joined_at": at,
        "left_at": None,
    }


async def get_community(*, session: AsyncSession, community_id: str) -> dict[str, Any]:
    row = await repository.community_with_counts(session, community_id)
    if row is None:
        raise NotFound(f"no community with id {community_id}")
    return dict(row)


async def _community(session: AsyncSession, community_id: str) -> Community:
    community = await repository.community(session, community_id)
    if community is None:
        raise NotFound(f"no community with id {community_id}")
    return community


async def list_communities(*, session: AsyncSession, scope_type: str | None, after_id: str | None, limit: int):
    return await repository.communities_page(session, after_id=after_id, limit=limit, scope_type=scope_type)


# --- members -----------------------------------------------------------------------


async def _known_customer(session: AsyncSession, customer_id: str, field: str) -> None:
    await aliases.refuse_merged(session, customer_id)
    if not await known_customers.contains(session, customer_id):
        raise field_error(field, f"no customer with id {customer_id}")


async def _hand_picked(session: AsyncSession, community_id: str) -> None:
    """409 `automatic_membership` unless the community is a hand-picked list."""

    community = await _community(session, community_id)
    if community.scope_type != "list":
        raise Conflict(
            f"community {community_id} follows its {community.scope_type}: its members join and leave by themselves",
            error="automatic_membership",
        )


async def add_member(*, session: AsyncSession, community_id: str, customer_id: str) -> dict[str, Any]:
    await _hand_picked(session, community_id)
    await _known_customer(session, customer_id, "body.customer_id")
    if await repository.current_membership(session, community_id, customer_id) is not None:
        raise Conflict(
            f"customer {customer_id} is a member of community {community_id} already", error="already_member"
        )
    row = _member(community_id, customer_id, "manual", utcnow())
    await repository.add_members(session, [row])
    return row


async def remove_member(*, session: AsyncSession, community_id: str, customer_id: str) -> dict[str, Any]:
    await _hand_picked(session, community_id)
    await aliases.refuse_merged(session, customer_id)
    membership = await repository.current_membership(session, community_id, customer_id)
    if membership is None:
        raise NotFound(f"customer {customer_id} is not a member of community {community_id}")
    now = utcnow()
    await repository.close_memberships(session, [membership["id"]], now)
    return {**membership, "left_at": now}


async def list_members(*, session: AsyncSession, community_id: str, history: bool, after_id: str | None, limit: int):
    await _community(session, community_id)
    return await repository.members_page(
        session, community_id=community_id, history=history, after_id=after_id, limit=limit
    )


async def customer_communities(*, session: AsyncSession, customer_id: str, after_id: str | None, limit: int):
    rows = await repository.customer_memberships_page(session, customer_id=customer_id, after_id=after_id, limit=limit)
    if not rows and (
        await aliases.survivor_of(session, customer_id) or not await known_customers.contains(session, customer_id)
    ):
        raise await aliases.not_found_or_merged(session, customer_id)
    return rows


# --- members following scores and stages ------------------------------------------------


async def follow_scores_and_stages(session: AsyncSession, events: list[Event[Any]]) -> None:
    """A micro-batch of identify's scores and lifecycle's stage changes, from their own data
    (not the profiles read model, which another consumer fills at its own pace): each
    customer joins the segment, kind and stage communities it now belongs to and leaves the
    others of that scope. The newest event of a customer and scope wins; the event's time is
    when the customer joined or left."""

    wanted: dict[tuple[str, str], tuple[set[str], datetime]] = {}  # (scope type, customer) -> values
    for event in events:
        data = event.data
        if event.type == SCORED:
            scored: CustomerScored = data
            wanted[("segment", scored.customer_id)] = ({scored.segment} if scored.segment else set(), event.at)
            wanted[("kind", scored.customer_id)] = (set(scored.kinds), event.at)
        elif event.type == STAGE_CHANGED:
            changed: StageChanged = data
            wanted[("stage", changed.customer_id)] = ({changed.to_stage}, event.at)
    if not wanted:
        return
    communities = await repository.automatic_communities(session, {scope for scope, _ in wanted})
    if not communities:
        return
    scope_of = {community_id: (scope_type, value) for community_id, scope_type, value in communities}
    customers = {customer_id for _, customer_id in wanted}
    current: dict[tuple[str, str], str] = {
        (community_id, customer_id): member_id
        for member_id, community_id, customer_id in await repository.current_memberships_of(
            session, customers, scope_of
        )
    }
    joining: list[dict[str, Any]] = []
    leaving: dict[datetime, list[str]] = {}
    for (scope_type, customer_id), (values, at) in wanted.items():
        for community_id, (community_scope, value) in scope_of.items():
            if community_scope != scope_type:
                continue
            member = current.get((community_id, customer_id))
            if value in values and member is None:
                joining.append(_member(community_id, customer_id, "auto", at))
            elif value not in values and member is not None:
                leaving.setdefault(at, []).append(member)
    await repository.add_members(session, joining)
    for at, member_ids in leaving.items():
        await repository.close_memberships(session, member_ids, at)


# --- posts -------------------------------------------------------------------------


def post_out(row: Any) -> dict[str, Any]:
    post = dict(row) if not isinstance(row, CommunityPost) else {c: getattr(row, c) for c in _POST_COLUMNS}
    post["locked"] = post["locked_at"] is not None
    post["hidden"] = post["hidden_at"] is not None
    return post


_POST_COLUMNS = tuple(column.name for column in CommunityPost.__table__.columns)


async def _author(session: AsyncSession, community_id: str, data: ThreadCreate | ReplyCreate) -> None:
    """Exactly one author: a current member customer, or staff (any employee id)."""

    if (data.author_customer_id is None) == (data.author_employee_id is None):
        raise field_error("body.author_customer_id", "give either author_customer_id or author_employee_id")
    customer_id = data.author_customer_id
    if customer_id is not None:
        await _known_customer(session, customer_id, "body.author_customer_id")
        await _require_member(session, community_id, customer_id)


async def _require_member(session: AsyncSession, community_id: str, customer_id: str) -> None:
    if await repository.current_membership(session, community_id, customer_id) is None:
        raise Conflict(f"customer {customer_id} is not a member of community {community_id}", error="not_a_member")


async def _visible_post(session: AsyncSession, community_id: str, post_id: str) -> CommunityPost:
    post = await repository.post(session, post_id)
    if post is None or post.community_id != community_id or post.hidden_at is not None:
        raise NotFound(f"no post with id {post_id} in community {community_id}")
    return post


async def create_thread(*, session: AsyncSession, community_id: str, data: ThreadCreate) -> dict[str, Any]:
    await _community(session, community_id)
    await _author(session, community_id, data)
    post = _new_post(community_id, None, data, title=data.title)
    session.add(post)
    await session.flush()
    _emit_post(session, post, data.title)
    return post_out(post)


async def create_reply(*, session: AsyncSession, community_id: str, thread_id: str, data: ReplyCreate):
    await _community(session, community_id)
    topic = await _visible_post(session, community_id, thread_id)
    if topic.thread_id is not None:
        raise field_error("path.post_id", f"post {thread_id} is a reply: reply in its thread {topic.thread_id}")
    if topic.locked_at is not None:
        raise Conflict(f"thread {thread_id} is locked: it takes no more replies", error="thread_locked")
    await _author(session, community_id, data)
    post = _new_post(community_id, thread_id, data, title=None)
    session.add(post)
    await session.execute(
        update(CommunityPost).where(CommunityPost.id == thread_id).values(reply_count=CommunityPost.reply_count + 1)
    )
    await session.flush()
    _emit_post(session, post, topic.title)
    return post_out(post)


def _new_post(community_id: str, thread_id: str | None, data: ThreadCreate | ReplyCreate, *, title: str | None):
    return CommunityPost(
        id=uuid7(),
        community_id=community_id,
        thread_id=thread_id,
        author_customer_id=data.author_customer_id,
        author_employee_id=data.author_employee_id,
        title=title,
        body=data.body,
        created_at=utcnow(),
        reply_count=0,
        helpful_marks=0,
    )


def _emit_post(session: AsyncSession, post: CommunityPost, title: str | None) -> None:
    emit(
        session,
        POST_CREATED,
        {
            "post_id": post.id,
            "community_id": post.community_id,
            "thread_id": post.thread_id,
            "author_customer_id": post.author_customer_id,
            "author_employee_id": post.author_employee_id,
            "title": title,
            "created_at": post.created_at,
        },
        subject=post.author_customer_id or post.community_id,
    )


async def list_threads(*, session: AsyncSession, community_id: str, after_id: str | None, limit: int):
    await _community(session, community_id)
    return await repository.threads_page(session, community_id=community_id, after_id=after_id, limit=limit)


async def get_post(*, session: AsyncSession, community_id: str, post_id: str, after_id: str | None, limit: int):
    """A post; a topic with its replies (a page of them, oldest first)."""

    post = await _visible_post(session, community_id, post_id)
    replies: list[Any] = []
    if post.thread_id is None:
        replies = await repository.replies_page(
            session, community_id=community_id, thread_id=post_id, after_id=after_id, limit=limit
        )
    return post_out(post), replies


async def list_hidden(*, session: AsyncSession, community_id: str, after_id: str | None, limit: int):
    await _community(session, community_id)
    return await repository.hidden_page(session, community_id=community_id, after_id=after_id, limit=limit)


# --- moderation --------------------------------------------------------------------


async def _post_in(session: AsyncSession, community_id: str, post_id: str) -> CommunityPost:
    post = await repository.post(session, post_id)
    if post is None or post.community_id != community_id:
        raise NotFound(f"no post with id {post_id} in community {community_id}")
    return post


async def set_hidden(*, session: AsyncSession, community_id: str, post_id: str, hidden: bool, data: Moderation):
    """Hide a post (it leaves lists and counts; its helpful marks stop counting for its author)
    or show it again. Hiding a hidden post, or showing a shown one, changes nothing."""

    post = await _post_in(session, community_id, post_id)
    if (post.hidden_at is not None) == hidden:
        return post_out(post)
    before = await _totals(session, [post.author_customer_id])
    if hidden:
        post.hidden_at, post.hidden_by, post.hidden_reason = utcnow(), data.moderator, data.reason
    else:
        post.hidden_at = post.hidden_by = post.hidden_reason = None
    if post.thread_id is not None:
        step = -1 if hidden else 1
        await session.execute(
            update(CommunityPost)
            .where(CommunityPost.id == post.thread_id)
            .values(reply_count=CommunityPost.reply_count + step)
        )
    await session.flush()
    await _announce_totals(session, before, community_id=community_id, post_id=post_id)
    return post_out(post)


async def set_locked(*, session: AsyncSession, community_id: str, post_id: str, locked: bool, data: Moderation):
    post = await _post_in(session, community_id, post_id)
    if post.thread_id is not None:
        raise field_error("path.post_id", f"post {post_id} is a reply: lock its thread {post.thread_id}")
    if (post.locked_at is not None) != locked:
        post.locked_at, post.locked_by = (utcnow(), data.moderator) if locked else (None, None)
        await session.flush()
    return post_out(post)


# --- helpful marks ------------------------------------------------------------------


async def _totals(session: AsyncSession, authors: Iterable[str | None]) -> dict[str, int]:
    return await repository.helpful_totals(session, [a for a in authors if a is not None])


async def _announce_totals(
    session: AsyncSession, before: dict[str, int], *, community_id: str | None, post_id: str | None
) -> dict[str, int]:
    """Emit helpfulness.changed for each author whose total differs from `before`."""

    after = await _totals(session, before)
    now = utcnow()
    for author, total in after.items():
        if total != before[author]:
            emit(
                session,
                HELPFULNESS_CHANGED,
                {
                    "customer_id": author,
                    "helpful_marks": total,
                    "community_id": community_id,
                    "post_id": post_id,
                    "changed_at": now,
                },
                subject=author,
            )
    return after


async def mark_helpful(*, session: AsyncSession, community_id: str, post_id: str, customer_id: str):
    post = await _visible_post(session, community_id, post_id)
    await _known_customer(session, customer_id, "body.customer_id")
    await _require_member(session, community_id, customer_id)
    if post.author_customer_id == customer_id:
        raise Conflict("a member cannot mark their own post helpful", error="own_post")
    before = await _totals(session, [post.author_customer_id])
    inserted = await session.execute(
        insert_ignoring(session, HelpfulMark.__table__, ["post_id", "customer_id"]),
        {"post_id": post_id, "customer_id": customer_id, "marked_at": utcnow()},
    )
    if not getattr(inserted, "rowcount", 0):
        raise Conflict(f"customer {customer_id} marked post {post_id} helpful already", error="already_marked")
    return await _helpfulness(session, post, customer_id, before, step=1)


async def unmark_helpful(*, session: AsyncSession, community_id: str, post_id: str, customer_id: str):
    post = await _visible_post(session, community_id, post_id)
    await aliases.refuse_merged(session, customer_id)
    existing = await repository.mark(session, post_id, customer_id)
    if existing is None:
        raise NotFound(f"customer {customer_id} has not marked post {post_id} helpful")
    before = await _totals(session, [post.author_customer_id])
    await session.delete(existing)
    await session.flush()
    return await _helpfulness(session, post, customer_id, before, step=-1)


async def _helpfulness(session: AsyncSession, post: CommunityPost, customer_id: str, before: dict[str, int], step: int):
    await session.execute(
        update(CommunityPost)
        .where(CommunityPost.id == post.id)
        .values(helpful_marks=CommunityPost.helpful_marks + step)
    )
    after = await _announce_totals(session, before, community_id=post.community_id, post_id=post.id)
    await session.refresh(post)
    return {
        "post_id": post.id,
        "customer_id": customer_id,
        "helpful_marks": post.helpful_marks,
        "author_helpful_marks": after.get(post.author_customer_id) if post.author_customer_id else None,
    }


# --- merges ------------------------------------------------------------------------


async def follow_merge(session: AsyncSession, merge: Merge) -> None:
    """A merge step: the merged customers' memberships, posts and helpful marks become the
    survivor's (a post both marked keeps one mark; a mark on what is now the survivor's own
    post goes), and every author whose total changed is announced again, the survivor with
    the marks of the merged customers' posts."""

    everyone = [merge.survivor_id, *merge.merged_ids]
    authors = await repository.authors_marked_by(session, everyone)
    before = await _totals(session, {*authors, *everyone})
    await repository.move_to_survivor(session, merged_ids=merge.merged_ids, survivor_id=merge.survivor_id)
    for merged in merge.merged_ids:
        before.pop(merged, None)
    await _announce_totals(session, before, community_id=None, post_id=None)
