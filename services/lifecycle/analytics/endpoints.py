"""Retention analytics over HTTP: the cohort matrix, the survival curve, the stage funnel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from services.lifecycle.analytics import service
from services.lifecycle.analytics.schemas import CohortBy, CohortMatrix, Funnel, Survival
from shared.db.database import utcnow
from shared.http.deps import ReadSession
from shared.http.errors import field_error

router = APIRouter(prefix="/v1/lifecycle", tags=["lifecycle"])

MONTH = r"^\d{4}-(0[1-9]|1[0-2])$"


@router.get("/cohorts", response_model=CohortMatrix, response_model_by_alias=True)
async def cohort_matrix(
    session: ReadSession,
    by: Annotated[CohortBy, Query(description="The cohorts' period: month (of first purchase)")] = "month",
    first: Annotated[
        str | None, Query(alias="from", pattern=MONTH, description="The first cohort, YYYY-MM (included)")
    ] = None,
    last: Annotated[
        str | None, Query(alias="to", pattern=MONTH, description="The last cohort, YYYY-MM (included)")
    ] = None,
):
    """The cohort retention matrix: customers grouped by the month of their first purchase, each
    cohort's size, and for month k = 0, 1, … the number and share of them buying in that month."""
    if first is not None and last is not None and last < first:
        raise field_error("query.to", f"the last cohort ({last}) is before the first ({first})")
    matrix = await service.cohorts(
        session=session,
        first=service.parse_month(first) if first else None,
        last=service.parse_month(last) if last else None,
    )
    return {"by": by, "from": first, "to": last, "cohorts": matrix}


@router.get("/survival", response_model=Survival)
async def survival_curve(
    session: ReadSession,
    as_of: Annotated[
        AwareDatetime | None, Query(description="Observe until then, with a time zone (default: now)")
    ] = None,
):
    """The Kaplan–Meier survival curve from first purchase to `churned`, censored at `as_of`, with
    its 95% confidence interval (Greenwood)."""
    return await service.survival(session=session, as_of=as_of or utcnow())


@router.get("/funnel", response_model=Funnel, response_model_by_alias=True)
async def stage_funnel(
    session: ReadSession,
    start: Annotated[
        AwareDatetime | None, Query(alias="from", description="Transitions at or after, with a time zone")
    ] = None,
    end: Annotated[
        AwareDatetime | None, Query(alias="to", description="Transitions before, with a time zone (default: now)")
    ] = None,
):
    """Over the stage transitions in the window: how many entered each stage, the conversion from
    each stage to the next and the median time between them."""
    end = end or utcnow()
    if start is not None and end <= start:
        raise field_error("query.to", "the window ends before it starts")
    return await service.funnel(session=session, start=start, end=end)
