"""Campaigns over HTTP: define, preview, schedule, launch, end; members, promotions, results."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, status

from services.value.campaigns import service
from services.value.campaigns.schemas import (
    CampaignCreate,
    CampaignOut,
    CampaignPage,
    CampaignStatus,
    CampaignUpdate,
    MemberPage,
    Preview,
    Results,
    ScheduleRequest,
)
from shared.http.deps import ReadSession, WriteSession
from shared.http.pagination import PagingById

router = APIRouter(prefix="/v1", tags=["value"])

_TRANSITION: dict[int | str, dict[str, Any]] = {
    409: {"description": "`illegal_transition`: the campaign cannot go there from its state (named)"}
}


@router.post("/campaigns", status_code=status.HTTP_201_CREATED, response_model=CampaignOut)
async def create_campaign(body: CampaignCreate, session: WriteSession):
    """A draft campaign: its audience criteria, channel, offer template, message and holdout share
    (0 to 0.5); its holdout seed is drawn now and recorded."""
    return await service.create(session=session, data=body)


@router.get("/campaigns", response_model=CampaignPage)
async def list_campaigns(
    session: ReadSession,
    page: PagingById,
    status: Annotated[CampaignStatus | None, Query(description="Only campaigns in this state")] = None,
):
    """Campaigns, newest first."""
    rows = await service.search(session=session, status=status, before_id=page.after_value, limit=page.fetch)
    return page.of(rows, lambda row: (row["id"],))


@router.get("/campaigns/{campaign_id}", response_model=CampaignOut)
async def get_campaign(campaign_id: str, session: ReadSession):
    """One campaign, with the states it may go to next."""
    return await service.get(session=session, campaign_id=campaign_id)


@router.patch(
    "/campaigns/{campaign_id}",
    response_model=CampaignOut,
    responses={409: {"description": "`campaign_not_editable`: it is running, completed or cancelled"}},
)
async def change_campaign(campaign_id: str, body: CampaignUpdate, session: WriteSession):
    """Change a draft or scheduled campaign's name, audience, holdout share or attribution window."""
    return await service.change(session=session, campaign_id=campaign_id, data=body)


@router.post("/campaigns/{campaign_id}/preview", response_model=Preview)
async def preview_campaign(campaign_id: str, session: ReadSession):
    """How many customers the audience matches now, and a sample of them."""
    return await service.preview(session=session, campaign_id=campaign_id)


@router.post("/campaigns/{campaign_id}/schedule", response_model=CampaignOut, responses=_TRANSITION)
async def schedule_campaign(campaign_id: str, body: ScheduleRequest, session: WriteSession):
    """Mark a draft campaign scheduled for a time (it launches when launched)."""
    return await service.schedule(session=session, campaign_id=campaign_id, at=body.scheduled_at)


@router.post(
    "/campaigns/{campaign_id}/launch",
    response_model=CampaignOut,
    responses={
        409: {
            "description": "`illegal_transition`, `empty_audience`, `budget_exhausted`, `template_expired`, "
            "`launch_in_progress`"
        }
    },
)
async def launch_campaign(campaign_id: str, request: Request):
    """Launch: assign each eligible customer to treatment or holdout, issue the offer to the
    treatment group and ask engage to deliver it. The campaign is `launching` while its offers
    are issued (50,000 customers a transaction) and `running` when this answers; a launch cut
    short is finished by launching again."""
    return await service.launch(db=request.app.state.runtime.db, campaign_id=campaign_id)


@router.post("/campaigns/{campaign_id}/complete", response_model=CampaignOut, responses=_TRANSITION)
async def complete_campaign(campaign_id: str, session: WriteSession):
    """A running campaign is over."""
    return await service.end(session=session, campaign_id=campaign_id, to="completed")


@router.post("/campaigns/{campaign_id}/cancel", response_model=CampaignOut, responses=_TRANSITION)
async def cancel_campaign(campaign_id: str, session: WriteSession):
    """Cancel a campaign that is not completed."""
    return await service.end(session=session, campaign_id=campaign_id, to="cancelled")


@router.get("/campaigns/{campaign_id}/members", response_model=MemberPage)
async def campaign_members(campaign_id: str, session: ReadSession, page: PagingById):
    """The campaign's members in customer id order: group, what was promoted, and the delivery outcome."""
    rows = await service.members(
        session=session, campaign_id=campaign_id, after_customer=page.after_value, limit=page.fetch
    )
    return page.of(rows, lambda row: (row["customer_id"],))


@router.get("/campaigns/{campaign_id}/results", response_model=Results)
async def campaign_results(campaign_id: str, session: ReadSession):
    """Treatment against holdout over purchases within the attribution window after launch:
    conversion, revenue per customer, redemptions, uplifts with 95% intervals, incremental
    revenue and the offers' cost."""
    return await service.results(session=session, campaign_id=campaign_id)


@router.get("/customers/{customer_id}/promotions", response_model=MemberPage)
async def customer_promotions(customer_id: str, session: ReadSession, page: PagingById):
    """The campaigns the customer was in, newest first: group, what was promoted, on which
    channel, and the delivery outcome."""
    rows = await service.promotions_of(
        session=session, customer_id=customer_id, before_campaign=page.after_value, limit=page.fetch
    )
    return page.of(rows, lambda row: (row["campaign_id"],))


@router.get("/playbooks/{playbook_id}/results", response_model=Results)
async def playbook_results(
    playbook_id: str,
    session: ReadSession,
    attribution_days: Annotated[int, Query(ge=1, le=365, description="Days after entering that count")] = 30,
):
    """A lifecycle playbook's treatment against its holdout, as a campaign's: win-back rate (a
    purchase within `attribution_days` of entering) and revenue, with the uplifts' 95% intervals."""
    return await service.playbook_results(session=session, playbook_id=playbook_id, attribution_days=attribution_days)
