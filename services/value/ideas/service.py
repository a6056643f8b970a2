"""Co-creation: customers propose ideas (through their signed link, or staff on their
behalf), vote for them once each and comment on them; staff move an idea along
new → under_review → planned → shipped (or declined) with a public reason, and everyone
who proposed, commented on or voted for it hears of it through engage.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.value.ideas import repository
from services.value.ideas.repository import IdeaOrder
from services.value.ideas.schemas import IdeaFields
from services.value.models import aliases, known_customers
from shared.db.database import utcnow
from shared.db.ids import uuid7
from shared.events.customer_aliases import Merge
from shared.events.messaging import emit
from shared.http.errors import Conflict, NotFound, field_error
from shared.settings import ValueSettings, current_settings
from shared.signed_links import DEFAULT_MAX_AGE, BadLink, SignedLinks

LINK_PURPOSE = "ideas"
LINK_PATH = "/v1/public/ideas/{token}"

OPEN = ("new", "under_review", "planned")
# Where each status may go: along the road, or declined from any open status.
NEXT: dict[str, tuple[str, ...]] = {
    "new": ("under_review", "declined"),
    "under_review": ("planned", "declined"),
    "planned": ("shipped", "declined"),
    "shipped": (),
    "declined": (),
}

# What contributors and voters are sent (crm.value.message.requested): engage renders the
# subject and body as templates, filling in the merge field `idea_title` (one of the fields
# engage takes from callers); the status and the reason are written in as text.
NEWS_SUBJECT = "News of the idea “{{ idea_title }}”"


def news_body(status: str, reason: str | None) -> str:
    said = f"The idea “{{{{ idea_title }}}}” is now {status}."
    return f"{said}\n\n{template_text(reason)}" if reason else said


def template_text(text: str) -> str:
    """`text` as a template that renders it unchanged: every `{` written as an expression,
    so nothing staff write can open a template tag."""

    return text.replace("{", "{{ '{' }}")


def present(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "customer_id": row["customer_id"],
        "title": row["title"],
        "description": row["description"],
        "product_area": row["product_area"],
        "status": row["status"],
        "status_reason": row["status_reason"],
        "source": row["source"],
        "submitted_at": row["submitted_at"],
        "status_changed_at": row["status_changed_at"],
        "votes": row["votes"],
        "value_weighted_demand": row["demand_cents"] / 100,
        "unscored_voters": row["unscored"],
    }


def present_public(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "title": row["title"],
        "description": row["description"],
        "product_area": row["product_area"],
        "status": row["status"],
        "status_reason": row["status_reason"],
        "votes": row["votes"],
        "voted": bool(row["voted"]),
    }


# --- customers and their links ---------------------------------------------------------


async def _customer(session: AsyncSession, customer_id: str, field: str) -> None:
    """A write names a customer value knows and that was not merged away."""

    await aliases.refuse_merged(session, customer_id)
    if not await known_customers.contains(session, customer_id):
        raise field_error(field, f"no customer with id {customer_id}")


def _links() -> SignedLinks:
    return SignedLinks.from_settings(current_settings(ValueSettings))


async def ideas_link(*, session: AsyncSession, customer_id: str) -> dict[str, Any]:
    """The customer's own ideas link (its token holds the customer id, nothing else)."""

    await aliases.refuse_merged(session, customer_id)
    if not await known_customers.contains(session, customer_id):
        raise NotFound(f"no customer with id {customer_id}")
    return {
        "customer_id": customer_id,
        "url": _links().link(LINK_PURPOSE, LINK_PATH, {"c": customer_id}),
        "expires_in_days": DEFAULT_MAX_AGE.days,
    }


async def customer_of_link(session: AsyncSession, token: str) -> str:
    """The customer a link's token names (its survivor, if it was merged since); 400
    `bad_token` for a tampered, foreign or expired token, before anything is written."""

    customer_id = _links().verify(LINK_PURPOSE, token).get("c")
    if not isinstance(customer_id, str):
        raise BadLink("the link is not valid (tampered with, or not made for this)")
    customer_id = await aliases.survivor_of(session, customer_id) or customer_id
    if not await known_customers.contains(session, customer_id):
        raise BadLink("the link names no customer this service knows")
    return customer_id


# --- ideas ----------------------------------------------------------------------------


def _check_area(area: str) -> None:
    areas = current_settings(ValueSettings).idea_product_areas
    if area not in areas:
        raise field_error("body.product_area", f"not a product area: use one of {', '.join(areas)}")


async def submit(*, session: AsyncSession, customer_id: str, data: IdeaFields, source: str) -> dict[str, Any]:
    _check_area(data.product_area)
    if source == "staff":
        await _customer(session, customer_id, "body.customer_id")
    now = utcnow()
    row = {
        "id": uuid7(),
        "customer_id": customer_id,
        "title": data.title,
        "description": data.description,
        "product_area": data.product_area,
        "status": "new",
        "status_reason": None,
        "source": source,
        "submitted_at": now,
        "status_changed_at": now,
    }
    await repository.insert_idea(session, row)
    emit(
        session,
        "crm.value.idea.submitted",
        {
            "idea_id": row["id"],
            "customer_id": customer_id,
            "title": data.title,
            "product_area": data.product_area,
            "source": source,
            "submitted_at": now,
        },
        subject=customer_id,
    )
    return present({**row, "votes": 0, "demand_cents": 0, "unscored": 0})


async def _idea(session: AsyncSession, idea_id: str) -> Any:
    idea = await repository.read_idea(session, idea_id)
    if idea is None:
        raise NotFound(f"no idea with id {idea_id}")
    return idea


async def get_idea(*, session: AsyncSession, idea_id: str) -> dict[str, Any]:
    rows = await repository.list_ideas(session, order="newest", after=None, limit=1, idea_id=idea_id)
    if not rows:
        raise NotFound(f"no idea with id {idea_id}")
    return present(rows[0])


async def list_ideas(
    *,
    session: AsyncSession,
    order: IdeaOrder,
    status: str | None,
    product_area: str | None,
    after: tuple[Any, ...] | None,
    limit: int,
):
    """Rows for `present`; their key in the list's cursor is `sort_key(order)`."""

    return await repository.list_ideas(
        session,
        order=order,
        after=after,
        limit=limit,
        statuses=None if status is None else [status],
        product_area=product_area,
    )


def sort_key(order: IdeaOrder):
    """A row's key in the cursor of its list: (votes, or demand in cents; id)."""

    column = "votes" if order == "votes" else "demand_cents"
    return lambda row: (row[column], row["id"])


async def open_ideas(*, session: AsyncSession, customer_id: str, after: tuple[Any, ...] | None, limit: int):
    """Open ideas as a customer's link lists them (rows for `present_public`): most votes
    first, each saying whether the customer voted for it."""

    return await repository.list_ideas(
        session, order="votes", after=after, limit=limit, statuses=OPEN, voter_id=customer_id
    )


async def ideas_of(
    *, session: AsyncSession, customer_id: str, before_id: str | None, limit: int
) -> list[dict[str, Any]]:
    """The ideas the customer proposed, newest first."""

    after = None if before_id is None else (before_id,)
    rows = await repository.list_ideas(session, order="newest", after=after, limit=limit, customer_id=customer_id)
    if not rows and (
        await aliases.survivor_of(session, customer_id) or not await known_customers.contains(session, customer_id)
    ):
        raise await aliases.not_found_or_merged(session, customer_id)
    return [present(row) for row in rows]


# --- votes and comments --------------------------------------------------------------------


async def vote(*, session: AsyncSession, idea_id: str, customer_id: str, source: str) -> dict[str, Any]:
    if source == "staff":
        await _customer(session, customer_id, "body.customer_id")
    idea = await _idea(session, idea_id)
    if idea["status"] not in OPEN:
        raise Conflict(f"idea {idea_id} is {idea['status']}: only open ideas take votes", error="idea_closed")
    now = utcnow()
    if not await repository.add_vote(
        session, {"idea_id": idea_id, "customer_id": customer_id, "source": source, "voted_at": now}
    ):
        raise Conflict(f"customer {customer_id} has voted for idea {idea_id} already", error="already_voted")
    emit(
        session,
        "crm.value.idea.voted",
        {
            "idea_id": idea_id,
            "customer_id": customer_id,
            "product_area": idea["product_area"],
            "source": source,
            "voted_at": now,
        },
        subject=customer_id,
    )
    votes = await repository.count_votes(session, idea_id)
    return {"idea_id": idea_id, "customer_id": customer_id, "voted_at": now, "votes": votes}


async def comment(*, session: AsyncSession, idea_id: str, customer_id: str, body: str, source: str) -> dict[str, Any]:
    if source == "staff":
        await _customer(session, customer_id, "body.customer_id")
    idea = await _idea(session, idea_id)
    row = {
        "id": uuid7(),
        "idea_id": idea_id,
        "customer_id": customer_id,
        "body": body,
        "source": source,
        "created_at": utcnow(),
    }
    await repository.insert_comment(session, row)
    emit(
        session,
        "crm.value.idea.commented",
        {
            "comment_id": row["id"],
            "idea_id": idea_id,
            "customer_id": customer_id,
            "body": body,
            "product_area": idea["product_area"],
            "source": source,
            "commented_at": row["created_at"],
        },
        subject=customer_id,
    )
    return row


async def comments_of(*, session: AsyncSession, idea_id: str, after_id: str | None, limit: int) -> list[dict[str, Any]]:
    await _idea(session, idea_id)
    return [dict(row) for row in await repository.list_comments(session, idea_id, after_id=after_id, limit=limit)]


# --- status ----------------------------------------------------------------------------


async def change_status(*, session: AsyncSession, idea_id: str, to_status: str, reason: str | None) -> dict[str, Any]:
    """Move the idea on (409 `illegal_transition` naming where it may go), tell its
    proposer, commenters and voters through engage (one message request each, a service
    message by email), and announce crm.value.idea.shipped when it ships."""

    if to_status == "declined" and reason is None:
        raise field_error("body.reason", "say why the idea is declined: customers read it")
    idea = await _idea(session, idea_id)
    allowed = NEXT.get(idea["status"], ())
    if to_status not in allowed:
        where = f"it can move to {', '.join(allowed)}" if allowed else "that is final"
        raise Conflict(f"idea {idea_id} is {idea['status']}: {where}", error="illegal_transition")
    now = utcnow()
    if not await repository.change_status(
        session, idea_id, from_status=idea["status"], to_status=to_status, reason=reason, at=now
    ):
        raise Conflict(f"idea {idea_id} changed meanwhile: read it again", error="illegal_transition")
    votes = await repository.count_votes(session, idea_id)
    people = await repository.contributors_and_voters(session, idea_id) | {idea["customer_id"]}
    _tell(session, idea, people, to_status=to_status, reason=reason, at=now)
    emit(
        session,
        "crm.value.idea.status_changed",
        {
            "idea_id": idea_id,
            "customer_id": idea["customer_id"],
            "title": idea["title"],
            "product_area": idea["product_area"],
            "from_status": idea["status"],
            "to_status": to_status,
            "reason": reason,
            "votes": votes,
            "notified": len(people),
            "changed_at": now,
        },
        subject=idea["customer_id"],
    )
    if to_status == "shipped":
        emit(
            session,
            "crm.value.idea.shipped",
            {
                "idea_id": idea_id,
                "customer_id": idea["customer_id"],
                "title": idea["title"],
                "product_area": idea["product_area"],
                "votes": votes,
                "shipped_at": now,
            },
            subject=idea["customer_id"],
        )
    return await get_idea(session=session, idea_id=idea_id)


def _tell(session: AsyncSession, idea: Any, people: set[str], *, to_status: str, reason: str | None, at: datetime):
    status = to_status.replace("_", " ")
    fields = {"idea_title": idea["title"], "status": status, "reason": reason or ""}
    body = news_body(status, reason)
    for customer_id in sorted(people):
        emit(
            session,
            "crm.value.message.requested",
            {
                "request_id": uuid7(),
                "customer_id": customer_id,
                "channel": "email",
                "purpose": "service",
                "subject": NEWS_SUBJECT,
                "body": body,
                "fields": fields,
                "source_kind": "idea",
                "source_id": idea["id"],
                "requested_at": at,
            },
            subject=customer_id,
        )


# --- merges ----------------------------------------------------------------------------


async def follow_ideas_merge(session: AsyncSession, merge: Merge) -> None:
    """A merge step: ideas, votes and comments of the merged customers become the
    survivor's; where several of them voted for one idea, one vote stays (the
    survivor's own, else the earliest)."""

    survivor, merged = merge.survivor_id, merge.merged_ids
    votes = sorted(
        await repository.votes_of(session, [survivor, *merged]),
        key=lambda v: (v.customer_id != survivor, v.voted_at, v.customer_id),
    )
    kept: set[str] = set()
    dropped = []
    for vote_row in votes:
        if vote_row.idea_id in kept:
            dropped.append((vote_row.idea_id, vote_row.customer_id))
        kept.add(vote_row.idea_id)
    await repository.drop_votes(session, dropped)
    await repository.move_to_survivor(session, merged_ids=merged, survivor_id=survivor)
