"""The ideas API: staff's (ideas:read / ideas:write) and the customers' own, through
their signed link (`/v1/public/ideas/{token}`, public in the gateway: the token is the
key, checked here; a tampered one is 400 `bad_token` and writes nothing)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, status

from services.value.ideas import service
from services.value.ideas.schemas import (
    WHOLE,
    CommentCreate,
    CommentFields,
    CommentOut,
    CommentPage,
    IdeaCreate,
    IdeaOut,
    IdeaPage,
    IdeasLinkOut,
    IdeaSort,
    IdeaSubmit,
    PublicIdeaPage,
    StatusChange,
    VoteCreate,
    VoteOut,
)
from shared.events.contracts import IdeaStatus
from shared.http.deps import ReadSession, WriteSession
from shared.http.pagination import ID, PageParams, PagingById, page_params

router = APIRouter(prefix="/v1", tags=["ideas"])

# Every route of the customer's link.
BAD_TOKEN: dict[int | str, dict[str, Any]] = {
    400: {"description": "The link's token is tampered with, made for another purpose, or expired (`bad_token`)"}
}

IdeaPaging = Annotated[PageParams[tuple[int, str]], Depends(page_params(WHOLE, ID))]


@router.post("/ideas", status_code=status.HTTP_201_CREATED, response_model=IdeaOut)
async def create_idea(body: IdeaCreate, session: WriteSession):
    """Enter an idea on a customer's behalf."""
    return await service.submit(session=session, customer_id=body.customer_id, data=body, source="staff")


@router.get("/ideas", response_model=IdeaPage)
async def list_ideas(
    session: ReadSession,
    page: IdeaPaging,
    sort: Annotated[
        IdeaSort,
        Query(description="`votes`: most votes first; `value`: highest value-weighted demand (the voters' CLV) first"),
    ] = "votes",
    status: Annotated[IdeaStatus | None, Query(description="Only ideas in this status")] = None,
    product_area: Annotated[str | None, Query(description="Only ideas of this product area")] = None,
):
    """Ideas by votes or by value-weighted demand: the sum of the voters' predicted CLV
    (a voter without a score counts 0, and `unscored_voters` says how many)."""
    rows = await service.list_ideas(
        session=session, order=sort, status=status, product_area=product_area, after=page.after, limit=page.fetch
    )
    return page.of(rows, service.sort_key(sort), service.present)


@router.get("/ideas/{idea_id}", response_model=IdeaOut)
async def get_idea(idea_id: str, session: ReadSession):
    """One idea with its votes and value-weighted demand."""
    return await service.get_idea(session=session, idea_id=idea_id)


@router.post("/ideas/{idea_id}/status", response_model=IdeaOut)
async def change_status(idea_id: str, body: StatusChange, session: WriteSession):
    """Move an idea on: new → under_review → planned → shipped, or declined from any open
    status (with a reason). Another move is 409 `illegal_transition` naming the allowed ones.
    Its proposer, commenters and voters are told through engage."""
    return await service.change_status(session=session, idea_id=idea_id, to_status=body.status, reason=body.reason)


@router.post("/ideas/{idea_id}/votes", status_code=status.HTTP_201_CREATED, response_model=VoteOut)
async def vote(idea_id: str, body: VoteCreate, session: WriteSession):
    """Record a customer's vote (told by phone, say); a second vote is 409 `already_voted`."""
    return await service.vote(session=session, idea_id=idea_id, customer_id=body.customer_id, source="staff")


@router.get("/ideas/{idea_id}/comments", response_model=CommentPage)
async def list_comments(idea_id: str, session: ReadSession, page: PagingById):
    """The idea's comments, oldest first."""
    rows = await service.comments_of(session=session, idea_id=idea_id, after_id=page.after_value, limit=page.fetch)
    return page.of(rows, _by_id)


@router.post("/ideas/{idea_id}/comments", status_code=status.HTTP_201_CREATED, response_model=CommentOut)
async def comment(idea_id: str, body: CommentCreate, session: WriteSession):
    """Record a customer's comment on an idea."""
    return await service.comment(
        session=session, idea_id=idea_id, customer_id=body.customer_id, body=body.body, source="staff"
    )


@router.get("/customers/{customer_id}/ideas", response_model=IdeaPage)
async def customer_ideas(customer_id: str, session: ReadSession, page: PagingById):
    """The ideas the customer proposed, newest first."""
    rows = await service.ideas_of(
        session=session, customer_id=customer_id, before_id=page.after_value, limit=page.fetch
    )
    return page.of(rows, _by_id)


@router.get("/customers/{customer_id}/ideas-link", response_model=IdeasLinkOut)
async def ideas_link(customer_id: str, session: ReadSession):
    """The customer's own ideas link, to put in a message: it lists open ideas and takes
    the customer's ideas, votes and comments."""
    return await service.ideas_link(session=session, customer_id=customer_id)


# --- the customer's link ------------------------------------------------------------------


@router.get("/public/ideas/{token}", response_model=PublicIdeaPage, responses=BAD_TOKEN)
async def public_ideas(token: str, session: ReadSession, page: IdeaPaging):
    """Open ideas, most votes first, each saying whether the link's customer voted for it."""
    customer_id = await service.customer_of_link(session, token)
    rows = await service.open_ideas(session=session, customer_id=customer_id, after=page.after, limit=page.fetch)
    return page.of(rows, service.sort_key("votes"), service.present_public)


@router.post("/public/ideas/{token}", status_code=status.HTTP_201_CREATED, response_model=IdeaOut, responses=BAD_TOKEN)
async def public_submit(token: str, body: IdeaSubmit, session: WriteSession):
    """Submit an idea as the link's customer."""
    customer_id = await service.customer_of_link(session, token)
    return await service.submit(session=session, customer_id=customer_id, data=body, source="link")


@router.post(
    "/public/ideas/{token}/{idea_id}/votes",
    status_code=status.HTTP_201_CREATED,
    response_model=VoteOut,
    responses=BAD_TOKEN,
)
async def public_vote(token: str, idea_id: str, session: WriteSession):
    """Vote for an open idea as the link's customer; a second vote is 409 `already_voted`."""
    customer_id = await service.customer_of_link(session, token)
    return await service.vote(session=session, idea_id=idea_id, customer_id=customer_id, source="link")


@router.post(
    "/public/ideas/{token}/{idea_id}/comments",
    status_code=status.HTTP_201_CREATED,
    response_model=CommentOut,
    responses=BAD_TOKEN,
)
async def public_comment(token: str, idea_id: str, body: CommentFields, session: WriteSession):
    """Comment on an idea as the link's customer."""
    customer_id = await service.customer_of_link(session, token)
    return await service.comment(
        session=session, idea_id=idea_id, customer_id=customer_id, body=body.body, source="link"
    )


def _by_id(row: Any) -> tuple[str]:
    return (row["id"],)
