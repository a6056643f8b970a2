"""Communities' HTTP API (thin: translate HTTP into service calls)."""

from __future__ import annotations

from fastapi import APIRouter, Query, status

from services.engage.communities import service
from services.engage.communities.schemas import (
    CommunityCreate,
    CommunityOut,
    CommunityPage,
    CustomerCommunityPage,
    HelpfulMarkCreate,
    HelpfulnessOut,
    MemberAdd,
    MemberOut,
    MemberPage,
    Moderation,
    PostOut,
    PostPage,
    ReplyCreate,
    ScopeType,
    ThreadCreate,
    ThreadOut,
)
from shared.http.deps import ReadSession, WriteSession
from shared.http.pagination import DEFAULT_LIMIT, ID, PageParams, PagingById

router = APIRouter(prefix="/v1", tags=["communities"])


def _by_id(row) -> tuple[str]:
    return (row["id"],)


@router.post("/communities", status_code=status.HTTP_201_CREATED, response_model=CommunityOut)
async def create_community(body: CommunityCreate, session: WriteSession):
    """A community for an RFM segment, a kind of strategically significant customer or a lifecycle
    stage (its members follow identify's scores and lifecycle's stages, starting with today's), or a
    hand-picked list."""
    return await service.create_community(session=session, data=body)


@router.get("/communities", response_model=CommunityPage)
async def list_communities(
    session: ReadSession, page: PagingById, scope_type: ScopeType | None = Query(None, description="Only these")
):
    """Every community, oldest first, with its member and thread counts."""
    rows = await service.list_communities(
        session=session, scope_type=scope_type, after_id=page.after_value, limit=page.fetch
    )
    return page.of(rows, _by_id)


@router.get("/communities/{community_id}", response_model=CommunityOut)
async def get_community(community_id: str, session: ReadSession):
    """One community with its member and thread counts."""
    return await service.get_community(session=session, community_id=community_id)


@router.get("/communities/{community_id}/members", response_model=MemberPage)
async def list_members(
    community_id: str,
    session: ReadSession,
    page: PagingById,
    history: bool = Query(False, description="Also the stints that ended (left_at set)"),
):
    """The community's members, in the order they joined."""
    rows = await service.list_members(
        session=session, community_id=community_id, history=history, after_id=page.after_value, limit=page.fetch
    )
    return page.of(rows, _by_id)


@router.post("/communities/{community_id}/members", status_code=status.HTTP_201_CREATED, response_model=MemberOut)
async def add_member(community_id: str, body: MemberAdd, session: WriteSession):
    """Add a customer to a hand-picked list (409 `automatic_membership` for a scoped community)."""
    return await service.add_member(session=session, community_id=community_id, customer_id=body.customer_id)


@router.delete("/communities/{community_id}/members/{customer_id}", response_model=MemberOut)
async def remove_member(community_id: str, customer_id: str, session: WriteSession):
    """Take a customer off a hand-picked list: the stint ends (its history stays)."""
    return await service.remove_member(session=session, community_id=community_id, customer_id=customer_id)


@router.get("/communities/{community_id}/posts", response_model=PostPage)
async def list_threads(community_id: str, session: ReadSession, page: PagingById):
    """The community's threads (their topic posts), newest first; hidden ones are left out."""
    rows = await service.list_threads(
        session=session, community_id=community_id, after_id=page.after_value, limit=page.fetch
    )
    return page.of(rows, _by_id, service.post_out)


@router.post("/communities/{community_id}/posts", status_code=status.HTTP_201_CREATED, response_model=PostOut)
async def create_thread(community_id: str, body: ThreadCreate, session: WriteSession):
    """Start a thread: by a member customer (409 `not_a_member` otherwise) or by staff."""
    return await service.create_thread(session=session, community_id=community_id, data=body)


@router.get("/communities/{community_id}/posts/{post_id}", response_model=ThreadOut)
async def get_post(community_id: str, post_id: str, session: ReadSession):
    """A post; for a topic, the first page of its replies too (`replies.next_cursor` goes on at
    `/posts/{post_id}/replies`)."""
    page: PageParams[tuple[str]] = PageParams(DEFAULT_LIMIT, None, (ID,))
    post, replies = await service.get_post(
        session=session, community_id=community_id, post_id=post_id, after_id=None, limit=page.fetch
    )
    return {**post, "replies": page.of(replies, _by_id, service.post_out)}


@router.get("/communities/{community_id}/posts/{post_id}/replies", response_model=PostPage)
async def list_replies(community_id: str, post_id: str, session: ReadSession, page: PagingById):
    """A thread's replies not hidden, oldest first."""
    _, replies = await service.get_post(
        session=session, community_id=community_id, post_id=post_id, after_id=page.after_value, limit=page.fetch
    )
    return page.of(replies, _by_id, service.post_out)


@router.post(
    "/communities/{community_id}/posts/{post_id}/replies", status_code=status.HTTP_201_CREATED, response_model=PostOut
)
async def create_reply(community_id: str, post_id: str, body: ReplyCreate, session: WriteSession):
    """Reply in a thread (409 `thread_locked` when a moderator locked it)."""
    return await service.create_reply(session=session, community_id=community_id, thread_id=post_id, data=body)


@router.post(
    "/communities/{community_id}/posts/{post_id}/helpful",
    status_code=status.HTTP_201_CREATED,
    response_model=HelpfulnessOut,
)
async def mark_helpful(community_id: str, post_id: str, body: HelpfulMarkCreate, session: WriteSession):
    """A member marks another's post helpful (once: 409 `already_marked`; never their own: 409 `own_post`)."""
    return await service.mark_helpful(
        session=session, community_id=community_id, post_id=post_id, customer_id=body.customer_id
    )


@router.delete("/communities/{community_id}/posts/{post_id}/helpful/{customer_id}", response_model=HelpfulnessOut)
async def unmark_helpful(community_id: str, post_id: str, customer_id: str, session: WriteSession):
    """Take a helpful mark back."""
    return await service.unmark_helpful(
        session=session, community_id=community_id, post_id=post_id, customer_id=customer_id
    )


@router.post("/communities/{community_id}/posts/{post_id}/hide", response_model=PostOut)
async def hide_post(community_id: str, post_id: str, body: Moderation, session: WriteSession):
    """Moderators: hide a post. It leaves every list and count (its helpful marks stop counting)."""
    return await service.set_hidden(session=session, community_id=community_id, post_id=post_id, hidden=True, data=body)


@router.post("/communities/{community_id}/posts/{post_id}/unhide", response_model=PostOut)
async def unhide_post(community_id: str, post_id: str, body: Moderation, session: WriteSession):
    """Moderators: show a hidden post again."""
    return await service.set_hidden(
        session=session, community_id=community_id, post_id=post_id, hidden=False, data=body
    )


@router.post("/communities/{community_id}/posts/{post_id}/lock", response_model=PostOut)
async def lock_thread(community_id: str, post_id: str, body: Moderation, session: WriteSession):
    """Moderators: lock a thread; replies get 409 `thread_locked`."""
    return await service.set_locked(session=session, community_id=community_id, post_id=post_id, locked=True, data=body)


@router.post("/communities/{community_id}/posts/{post_id}/unlock", response_model=PostOut)
async def unlock_thread(community_id: str, post_id: str, body: Moderation, session: WriteSession):
    """Moderators: unlock a thread."""
    return await service.set_locked(
        session=session, community_id=community_id, post_id=post_id, locked=False, data=body
    )


@router.get("/communities/{community_id}/hidden-posts", response_model=PostPage)
async def list_hidden(community_id: str, session: ReadSession, page: PagingById):
    """Moderators: the community's hidden posts, newest first, with who hid them and why."""
    rows = await service.list_hidden(
        session=session, community_id=community_id, after_id=page.after_value, limit=page.fetch
    )
    return page.of(rows, _by_id, service.post_out)


@router.get("/customers/{customer_id}/communities", response_model=CustomerCommunityPage)
async def customer_communities(customer_id: str, session: ReadSession, page: PagingById):
    """The customer's communities: every stint, newest first (`left_at` null while a member)."""
    rows = await service.customer_communities(
        session=session, customer_id=customer_id, after_id=page.after_value, limit=page.fetch
    )
    return page.of(rows, _by_id)
