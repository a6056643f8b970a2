"""Surveys, their answers and the feedback report (thin: HTTP into the service)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from pydantic import AfterValidator

from services.engage.feedback import service
from services.engage.feedback.schemas import (
    Answered,
    AnswerSurvey,
    GroupBy,
    InvitationOut,
    Metric,
    Report,
    ResponseOut,
    ResponsePage,
    Segment,
    SendSurvey,
    StaffResponse,
    SurveyCreate,
    SurveyForm,
    SurveyOut,
    SurveyPage,
    SurveyUpdate,
)
from shared.http.deps import ReadSession, WriteSession
from shared.http.pagination import PagingByTime
from shared.http.validation import AsText

router = APIRouter(prefix="/v1", tags=["engage: feedback"])


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("needs a time zone (e.g. 2026-05-01T00:00:00Z)")
    return value


Instant = Annotated[datetime | None, AsText, AfterValidator(_aware)]


@router.post("/surveys", status_code=status.HTTP_201_CREATED, response_model=SurveyOut)
async def create_survey(body: SurveyCreate, session: WriteSession):
    """A survey: its questions and the touchpoints after which it is sent (`triggers`)."""
    return await service.create_survey(session=session, data=body)


@router.get("/surveys", response_model=SurveyPage)
async def list_surveys(session: ReadSession, page: PagingByTime):
    """Surveys, oldest first."""
    rows = await service.list_surveys(session=session, after=page.after, limit=page.fetch)
    return page.of(rows, lambda s: (s.created_at, s.id))


@router.get("/surveys/{survey_id}", response_model=SurveyOut)
async def get_survey(survey_id: str, session: ReadSession):
    """One survey."""
    return await service.get_survey(session=session, survey_id=survey_id)


@router.patch("/surveys/{survey_id}", response_model=SurveyOut)
async def update_survey(survey_id: str, body: SurveyUpdate, session: WriteSession):
    """Pause or resume a survey, or change its touchpoints."""
    return await service.update_survey(session=session, survey_id=survey_id, data=body)


@router.post("/surveys/{survey_id}/send", status_code=status.HTTP_201_CREATED, response_model=InvitationOut)
async def send_survey(survey_id: str, body: SendSurvey, session: WriteSession):
    """Send the survey to a customer now: an invitation email with the customer's signed link.
    409 `quiet_period`, `no_consent` (research withdrawn on email), `no_address`, `undeliverable`."""
    invitation, link = await service.send_on_demand(session=session, survey_id=survey_id, customer_id=body.customer_id)
    return {**{c: getattr(invitation, c) for c in InvitationOut.model_fields if c != "link"}, "link": link}


@router.post("/surveys/{survey_id}/responses", status_code=status.HTTP_201_CREATED, response_model=ResponseOut)
async def record_response(survey_id: str, body: StaffResponse, session: WriteSession):
    """Record a customer's answers as staff heard them (a call, a visit)."""
    return await service.record_staff(session=session, survey_id=survey_id, data=body)


@router.get("/surveys/{survey_id}/responses", response_model=ResponsePage)
async def list_responses(survey_id: str, session: ReadSession, page: PagingByTime):
    """A survey's responses, newest first."""
    rows = await service.survey_responses(session=session, survey_id=survey_id, before=page.after, limit=page.fetch)
    return page.of(rows, lambda r: (r["received_at"], r["id"]))


@router.get("/customers/{customer_id}/feedback", response_model=ResponsePage)
async def customer_feedback(customer_id: str, session: ReadSession, page: PagingByTime):
    """The customer's survey responses, newest first."""
    rows = await service.customer_feedback(
        session=session, customer_id=customer_id, before=page.after, limit=page.fetch
    )
    return page.of(rows, lambda r: (r["received_at"], r["id"]))


# Before /feedback/{token}: a literal path wins.
@router.get("/feedback/report", response_model=Report, response_model_by_alias=True)
async def feedback_report(
    session: ReadSession,
    metric: Annotated[Metric, Query(description="nps (-100 to 100), csat (mean 1-5) or ces (mean 1-7)")],
    by: Annotated[GroupBy | None, Query(description="The groups; the whole range as one cell when left out")] = None,
    start: Annotated[Instant, Query(alias="from", description="Responses received at or after")] = None,
    end: Annotated[Instant, Query(alias="to", description="Responses received before")] = None,
    segment: Annotated[
        Segment | None,
        Query(
            description="Only customers in this RFM segment when they answered (with by=month: one segment over time)"
        ),
    ] = None,
):
    """Each group's score, its 95% confidence interval and its response count (docs/engage.md)."""
    cells = await service.report(session=session, metric=metric, by=by, start=start, end=end, segment=segment)
    return {"metric": metric, "by": by, "segment": segment, "from": start, "to": end, "cells": cells}


BAD_TOKEN: dict[int | str, dict[str, Any]] = {400: {"description": "A tampered, foreign or expired link (`bad_token`)"}}


@router.get("/feedback/{token}", response_model=SurveyForm, responses=BAD_TOKEN)
async def feedback_form(token: str, session: ReadSession):
    """The survey a customer's link asks (public: the signed link is the credential)."""
    return await service.form(session=session, token=token)


@router.post("/feedback/{token}", status_code=status.HTTP_201_CREATED, response_model=Answered, responses=BAD_TOKEN)
async def answer_feedback(token: str, body: AnswerSurvey, session: WriteSession):
    """The customer's answers through the link: one per link (409 `already_answered`);
    a tampered or expired link is 400 `bad_token`."""
    response = await service.answer_link(session=session, token=token, data=body)
    return {"response_id": response["id"], "received_at": response["received_at"]}
