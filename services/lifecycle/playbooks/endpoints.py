"""Playbooks' HTTP API (value serves `GET /v1/playbooks/{id}/results`, the measurement)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from services.lifecycle.playbooks import service
from services.lifecycle.playbooks.schemas import (
    EntryPage,
    Group,
    PlaybookCreate,
    PlaybookOut,
    PlaybookPage,
    PlaybookUpdate,
)
from shared.http.deps import ReadSession, WriteSession
from shared.http.pagination import PagingById

router = APIRouter(prefix="/v1", tags=["lifecycle: playbooks"])


@router.post("/playbooks", response_model=PlaybookOut, status_code=201)
async def create_playbook(data: PlaybookCreate, session: WriteSession):
    """A win-back or retention playbook: customers entering a trigger stage (after it is
    enabled, with a purchase within the look-back, at or above the CLV threshold) enter it,
    drawn into treatment or holdout; treatment customers get the offer and/or the outreach ticket."""
    return await service.create(session=session, data=data)


@router.get("/playbooks", response_model=PlaybookPage)
async def list_playbooks(session: ReadSession, page: PagingById):
    """The playbooks, in id (creation) order."""
    rows = await service.playbooks(session=session, after_id=page.after_value, limit=page.fetch)
    return page.of(rows, lambda row: (row["id"],))


@router.get("/playbooks/{playbook_id}", response_model=PlaybookOut)
async def get_playbook(playbook_id: str, session: ReadSession):
    return await service.get(session=session, playbook_id=playbook_id)


@router.patch("/playbooks/{playbook_id}", response_model=PlaybookOut)
async def update_playbook(playbook_id: str, data: PlaybookUpdate, session: WriteSession):
    """Change a playbook; `"enabled": true` on a disabled one fires it for transitions from now on."""
    return await service.update(session=session, playbook_id=playbook_id, data=data)


@router.get("/playbooks/{playbook_id}/entries", response_model=EntryPage)
async def playbook_entries(
    playbook_id: str,
    session: ReadSession,
    page: PagingById,
    group: Annotated[Group | None, Query(description="Only this group's entries")] = None,
):
    """Who entered the playbook, in which group, on which stage and when, in entry order.
    value measures it: `GET /v1/playbooks/{id}/results`."""
    rows = await service.entries(
        session=session, playbook_id=playbook_id, group=group, after_id=page.after_value, limit=page.fetch
    )
    return page.of(rows, lambda row: (row["id"],))


@router.get("/customers/{customer_id}/playbooks", response_model=EntryPage)
async def customer_playbooks(customer_id: str, session: ReadSession, page: PagingById):
    """The retention and win-back playbooks the customer entered, newest first: group, stage,
    when, and what a treatment customer was given."""
    rows = await service.customer_entries(
        session=session, customer_id=customer_id, before_id=page.after_value, limit=page.fetch
    )
    return page.of(rows, lambda row: (row["id"],))
