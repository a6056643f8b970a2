"""HTTP API of tickets, SLA policies and business calendars (thin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from services.lifecycle.tickets import service
from services.lifecycle.tickets.schemas import (
    CalendarCreate,
    CalendarOut,
    CalendarPage,
    ChangePage,
    CommentCreate,
    CommentOut,
    CommentPage,
    PolicyCreate,
    PolicyOut,
    PolicyPage,
    TicketCreate,
    TicketOut,
    TicketPage,
    TicketUpdate,
)
from shared.events.contracts import TicketStatus
from shared.http.caller import Caller, CallerDep
from shared.http.deps import ReadSession, WriteSession
from shared.http.pagination import INTEGER, PageParams, PagingById, page_params

router = APIRouter(prefix="/v1", tags=["lifecycle: tickets"])

PagingBySeq = Annotated[PageParams[tuple[int]], Depends(page_params(INTEGER))]


def _actor(caller: Caller) -> str | None:
    """Who made a change, as the gateway names the caller: the linked employee, else the key."""
    return caller.person_id or caller.actor


def _by_id(row):
    return (row["id"],)


@router.post("/tickets", status_code=status.HTTP_201_CREATED, response_model=TicketOut)
async def create_ticket(body: TicketCreate, session: WriteSession, caller: CallerDep):
    """Open a ticket for a customer, with the SLA policy's targets for its priority (the default
    policy when it names none); emits crm.lifecycle.ticket.created."""
    return await service.create_ticket(session=session, data=body, actor=_actor(caller))


@router.get("/tickets", response_model=TicketPage)
async def list_tickets(
    session: ReadSession,
    page: PagingById,
    status: Annotated[TicketStatus | None, Query(description="Only tickets in this status")] = None,
    assignee_id: Annotated[str | None, Query(max_length=36, description="Only those assigned to this employee")] = None,
    queue: Annotated[str | None, Query(max_length=100, description="Only those in this queue")] = None,
    customer_id: Annotated[str | None, Query(max_length=36, description="Only this customer's")] = None,
):
    """Tickets in the order they were opened."""
    rows = await service.list_tickets(
        session=session,
        after_id=page.after_value,
        limit=page.fetch,
        status=status,
        assignee_id=assignee_id,
        queue=queue,
        customer_id=customer_id,
    )
    return page.of(rows, _by_id)


@router.get("/tickets/{ticket_id}", response_model=TicketOut)
async def get_ticket(ticket_id: str, session: ReadSession):
    """A ticket with its SLA due times; `overdue` is true once a running timer has passed its due time."""
    return await service.get_ticket(session=session, ticket_id=ticket_id)


@router.patch("/tickets/{ticket_id}", response_model=TicketOut)
async def update_ticket(ticket_id: str, body: TicketUpdate, session: WriteSession, caller: CallerDep):
    """Change a ticket's status (409 `invalid_transition` naming the allowed moves), priority,
    assignee, queue, category or subject; every change joins its history."""
    return await service.update_ticket(session=session, ticket_id=ticket_id, data=body, actor=_actor(caller))


@router.post("/tickets/{ticket_id}/comments", status_code=status.HTTP_201_CREATED, response_model=CommentOut)
async def add_comment(ticket_id: str, body: CommentCreate, session: WriteSession, caller: CallerDep):
    """A public comment (on an email ticket, or one linked to a conversation, engage sends it to the
    customer) or an internal note (`public: false`); `minutes` of handling time are cost to serve."""
    return await service.add_comment(session=session, ticket_id=ticket_id, data=body, actor=_actor(caller))


@router.get("/tickets/{ticket_id}/comments", response_model=CommentPage)
async def list_comments(ticket_id: str, session: ReadSession, page: PagingById):
    """The ticket's comments and internal notes, oldest first."""
    rows = await service.list_comments(
        session=session, ticket_id=ticket_id, after_id=page.after_value, limit=page.fetch
    )
    return page.of(rows, _by_id)


@router.get("/tickets/{ticket_id}/history", response_model=ChangePage)
async def ticket_history(ticket_id: str, session: ReadSession, page: PagingBySeq):
    """Every change of the ticket, oldest first: the field, its old and new value, who and when."""
    rows = await service.list_history(
        session=session, ticket_id=ticket_id, after_seq=page.after_value, limit=page.fetch
    )
    return page.of(rows, lambda row: (row["seq"],))


@router.get("/customers/{customer_id}/tickets", response_model=TicketPage)
async def customer_tickets(customer_id: str, session: ReadSession, page: PagingById):
    """The customer's tickets in the order they were opened."""
    rows = await service.customer_tickets(
        session=session, customer_id=customer_id, after_id=page.after_value, limit=page.fetch
    )
    return page.of(rows, _by_id)


@router.post("/sla-policies", status_code=status.HTTP_201_CREATED, response_model=PolicyOut)
async def create_policy(body: PolicyCreate, session: WriteSession):
    """An SLA policy: first-response and resolution targets in business minutes per priority, and
    tighter ones per kind of strategically significant customer; a target for every priority."""
    return await service.create_policy(session=session, data=body)


@router.get("/sla-policies", response_model=PolicyPage)
async def list_policies(session: ReadSession, page: PagingById):
    rows = await service.list_policies(session=session, after_id=page.after_value, limit=page.fetch)
    return page.of(rows, _by_id)


@router.get("/sla-policies/{policy_id}", response_model=PolicyOut)
async def get_policy(policy_id: str, session: ReadSession):
    return await service.get_policy(session=session, policy_id=policy_id)


@router.put("/sla-policies/{policy_id}", response_model=PolicyOut)
async def replace_policy(policy_id: str, body: PolicyCreate, session: WriteSession):
    """Replace a policy (name, calendar, targets, default), validated as at creation. Tickets keep
    the targets they were given; the new targets apply to tickets opened or re-prioritised from
    now on, and a new calendar to the time still to run."""
    return await service.replace_policy(session=session, policy_id=policy_id, data=body)


@router.post("/business-calendars", status_code=status.HTTP_201_CREATED, response_model=CalendarOut)
async def create_calendar(body: CalendarCreate, session: WriteSession):
    """Business hours for SLA policies: a time zone, working days and hours, public holidays of a
    country (the holidays package) and dates of its own."""
    return await service.create_calendar(session=session, data=body)


@router.get("/business-calendars", response_model=CalendarPage)
async def list_calendars(session: ReadSession, page: PagingById):
    rows = await service.list_calendars(session=session, after_id=page.after_value, limit=page.fetch)
    return page.of(rows, _by_id)


@router.get("/business-calendars/{calendar_id}", response_model=CalendarOut)
async def get_calendar(calendar_id: str, session: ReadSession):
    return await service.get_calendar(session=session, calendar_id=calendar_id)
