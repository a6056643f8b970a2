"""The portfolio HTTP API: refits, the model, segments, Pareto, significant customers, costs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status
from pydantic import Field

from services.identify.portfolio import repository, service
from services.identify.portfolio.schemas import (
    CostsIn,
    CostsOut,
    Kind,
    ModelOut,
    ParetoOut,
    RefitAccepted,
    RefitOut,
    RefitPage,
    RefitRequest,
    SegmentsOut,
    SignificantPage,
)
from shared.http.deps import ReadSession, WriteSession
from shared.http.errors import NotFound
from shared.http.pagination import ID, NUMBER, PageParams, page_params

router = APIRouter(prefix="/v1", tags=["portfolio"])

RefitPaging = Annotated[PageParams[tuple[str]], Depends(page_params(ID, default_limit=20))]
# Significant customers by kind, then evidence (strongest first), then customer id.
SignificantPaging = Annotated[PageParams[tuple[str, float, str]], Depends(page_params(ID, NUMBER, ID))]


@router.post("/portfolio/refits", status_code=status.HTTP_202_ACCEPTED, response_model=RefitAccepted)
async def request_refit(body: RefitRequest, request: Request):
    """Fit a new model version in the background and re-score every customer with it.

    At most one refit waits: a request while one is queued joins it (202, `joined`: true,
    its id) when the parameters are the same, and is refused with 409 `refit_queued`
    naming the queued refit when they differ.
    """
    refit, joined = await request.app.state.runtime.state.refits.request(
        calibration_end=body.calibration_end, time_unit=body.time_unit
    )
    return {"id": refit.id, "status": refit.status, "joined": joined}


@router.get("/portfolio/refits", response_model=RefitPage)
async def list_refits(session: ReadSession, page: RefitPaging):
    """Refits, newest first."""
    rows = await repository.list_refits(session, before_id=page.after_value, limit=page.fetch)
    return page.of(rows, lambda r: (r.id,))


@router.get("/portfolio/refits/{refit_id}", response_model=RefitOut)
async def get_refit(refit_id: str, session: ReadSession):
    """One refit's status: queued, running, done (with the model version) or failed (with why)."""
    refit = await repository.get_refit(session, refit_id)
    if refit is None:
        raise NotFound(f"no refit with id {refit_id}")
    return refit


@router.get(
    "/portfolio/model", response_model=ModelOut, responses={404: {"description": "No model fitted yet (`not_found`)"}}
)
async def get_model(session: ReadSession):
    """The current model: BG/NBD, Pareto/NBD and Gamma-Gamma parameters and the scoring thresholds."""
    return await service.model(session=session)


@router.get("/portfolio/segments", response_model=SegmentsOut)
async def get_segments(request: Request, session: ReadSession):
    """RFM segments with their sizes and value (revenue, historic and predicted CLV).

    With them, how many customers hold each significant kind (`kinds`). As the last refit
    computed them (`computed_at`, `model_version`): a read of the row it stored, not of a
    million scores. Purchases, costs and merges since show at the next refit. Before any
    refit stored this view the answer is computed for the request (`computed_at` null).
    """
    stored = await service.stored_view(session=session, name="segments")
    if stored is not None:
        return stored
    async with repository.bulk_reader(request.app.state.runtime.db.url) as bulk:
        return await service.segments(session=bulk)


@router.get("/portfolio/pareto", response_model=ParetoOut)
async def get_pareto(
    request: Request,
    session: ReadSession,
    top: Annotated[
        list[Annotated[float, Field(gt=0, le=1)]] | None,
        Query(description="Shares to report, each in (0, 1], e.g. top=0.2 (repeatable)"),
    ] = None,
):
    """How concentrated revenue and profit are: top-x% shares, Lorenz curve, Gini.

    With the default shares (no `top`, or exactly 0.01, 0.05, 0.1, 0.2, 0.5) the answer is
    the one the last refit computed and stored (`computed_at`, `model_version`): one row
    read. Other shares, or no view stored yet, are computed for the request from the
    current purchase summaries (~1 s for a million customers; `computed_at` null). Purchases,
    costs and merges since the refit show in the stored answer at the next refit.
    """
    tops = tuple(top) if top else service.DEFAULT_TOPS
    if tops == service.DEFAULT_TOPS:
        stored = await service.stored_view(session=session, name="pareto")
        if stored is not None:
            return stored
    async with repository.bulk_reader(request.app.state.runtime.db.url) as bulk:
        return await service.pareto(session=bulk, tops=tops)


@router.get("/portfolio/significant", response_model=SignificantPage)
async def list_significant(session: ReadSession, page: SignificantPaging, kind: Kind | None = None):
    """Strategically significant customers with the evidence for each kind, strongest first."""
    rows = await repository.list_kinds(session, kind=kind, after=page.after, limit=page.fetch)
    listed = page.of(
        rows,
        lambda r: (r["kind"], r["rank_value"], r["customer_id"]),
        lambda r: {"customer_id": r["customer_id"], "kind": r["kind"], "evidence": r["evidence"]},
    )
    return {"kind": kind, **listed, "note": service.inspiration_note(kind)}


@router.get("/customers/{customer_id}/costs", response_model=CostsOut)
async def get_costs(customer_id: str, session: ReadSession):
    """The customer's acquisition, selling and service costs (inputs of historic CLV)."""
    return await service.get_costs(session=session, customer_id=customer_id)


@router.put("/customers/{customer_id}/costs", response_model=CostsOut)
async def put_costs(customer_id: str, body: CostsIn, session: WriteSession):
    """Set the customer's acquisition, selling and service costs; the customer is re-scored."""
    return await service.set_costs(
        session=session,
        customer_id=customer_id,
        acquisition=body.acquisition,
        selling=body.selling,
        service=body.service,
    )
