"""lifecycle's HTTP API."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from services.lifecycle.stages import rulesets, service, sweeps
from services.lifecycle.stages.schemas import (
    AtRiskPage,
    CustomerInStagePage,
    LifecycleOut,
    RuleSetChanged,
    RuleSetIn,
    RuleSetOut,
    RuleSetPage,
    SweepIn,
    SweepOut,
    SweepPage,
)
from shared.events.contracts import ChurnBand, Stage
from shared.http.deps import ReadSession
from shared.http.pagination import ID, INTEGER, NUMBER, PageParams, PagingById, PagingByTime, page_params

router = APIRouter(prefix="/v1", tags=["lifecycle"])


@router.get("/customers/{customer_id}/lifecycle", response_model=LifecycleOut, response_model_by_alias=True)
async def get_lifecycle(customer_id: str, session: ReadSession):
    """The customer's stage and every transition that led there, oldest first."""
    return await service.lifecycle_of(session=session, customer_id=customer_id)


@router.get("/lifecycle/customers", response_model=CustomerInStagePage)
async def customers_in_stage(
    session: ReadSession,
    page: PagingById,
    stage: Annotated[
        Stage | None, Query(description="Only customers in this stage; all customers with a stage if absent")
    ] = None,
):
    """The customers in a stage, in customer id order, each with the time it entered the stage.
    Stage names are the `crm.lifecycle.stage.changed` contract's; another is 422."""
    rows = await service.customers_in_stage(session=session, stage=stage, after_id=page.after_value, limit=page.fetch)
    return page.of(rows, lambda row: (row["customer_id"],))


# --- rules -------------------------------------------------------------------------------------

RuleSetPaging = Annotated[PageParams[tuple[int]], Depends(page_params(INTEGER, default_limit=20))]
AtRiskPaging = Annotated[PageParams[tuple[float, str]], Depends(page_params(NUMBER, ID))]


@router.get("/lifecycle/rules", response_model=RuleSetOut, response_model_by_alias=True)
async def get_rules(session: ReadSession):
    """The stage rules in force and their version (version 1: the built-in defaults)."""
    return await rulesets.rule_set(session=session)


@router.put("/lifecycle/rules", response_model=RuleSetChanged, response_model_by_alias=True)
async def put_rules(body: RuleSetIn, request: Request):
    """Replace the stage rules: a new version, then a sweep re-evaluates every customer under it
    (answered with the sweep). A field, operator, value or move the stage machine does not know is
    422 naming it, and nothing is written."""
    runtime = request.app.state.runtime
    rules = [rule.model_dump(by_alias=True) for rule in body.rules]
    return await _shielded(rulesets.replace(db=runtime.db, settings=runtime.settings, rules=rules))


@router.get("/lifecycle/rules/versions", response_model=RuleSetPage, response_model_by_alias=True)
async def rule_versions(session: ReadSession, page: RuleSetPaging):
    """Every version of the stage rules, newest first."""
    rows = await rulesets.versions(session=session, before=page.after_value, limit=page.fetch)
    return page.of(rows, lambda row: (row["version"],))


# --- sweeps ------------------------------------------------------------------------------------


@router.post("/lifecycle/sweeps", response_model=SweepOut, status_code=201)
async def run_sweep(request: Request, body: SweepIn | None = None):
    """Run a sweep now and answer what it did: customers evaluated, transitions, risks rewritten,
    duration. 409 `sweep_running` while another sweep (another replica's) holds the lease."""
    runtime = request.app.state.runtime
    historical = body.historical if body is not None else None
    return await _shielded(sweeps.run(runtime.db, runtime.settings, trigger="request", historical=historical))


@router.get("/lifecycle/sweeps", response_model=SweepPage)
async def list_sweeps(session: ReadSession, page: PagingByTime):
    """The sweeps, newest first."""
    rows = await sweeps.recent(session=session, after=page.after, limit=page.fetch)
    return page.of(rows, lambda row: (row["started_at"], row["sweep_id"]))


async def _shielded(work):
    """The work goes on when the client hangs up (a half-done sweep would be redone anyway)."""
    return await asyncio.shield(asyncio.ensure_future(work))


# --- at risk -----------------------------------------------------------------------------------


@router.get("/lifecycle/at-risk", response_model=AtRiskPage)
async def at_risk(
    session: ReadSession,
    page: AtRiskPaging,
    stage: Annotated[list[Stage] | None, Query(description="Only customers in these stages")] = None,
    band: Annotated[ChurnBand | None, Query(description="Only customers in this churn band")] = None,
    min_risk: Annotated[float | None, Query(ge=0, le=1, description="Only customers at least this at risk")] = None,
):
    """Customers by CLV at risk (predicted CLV × churn risk), highest first, with their drivers, as
    the last sweep left them. Only customers identify has scored have a CLV at risk."""
    rows = await service.at_risk(
        session=session, after=page.after, limit=page.fetch, stages=list(stage or []), band=band, min_risk=min_risk
    )
    return page.of(rows, lambda row: (row["clv_at_risk"], row["customer_id"]))
