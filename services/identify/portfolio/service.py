"""Portfolio rules: the views of the whole portfolio and per-customer costs."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from services.identify.customers.service import get_customer, refuse_merged
from services.identify.models import Customer, CustomerCosts
from services.identify.portfolio import repository
from services.identify.portfolio.repository import EPOCH
from services.identify.portfolio.scoring import inspiration_rule, rescore_customers
from services.identify.portfolio.views import DEFAULT_TOPS, pareto_answer, segments_answer
from services.identify.settings import portfolio_settings
from shared.db.database import utcnow
from shared.http.errors import NotFound


async def model(*, session: AsyncSession) -> dict:
    row = await repository.latest_model(session)
    if row is None:
        raise NotFound("no model fitted yet: POST /v1/portfolio/refits to fit one")
    params = row.params
    return {
        "version": row.version,
        "time_unit": row.time_unit,
        "calibration_end": row.calibration_end,
        "fitted_at": row.fitted_at,
        "as_of": EPOCH + timedelta(days=params["as_of_day"]),
        "customers": params["customers"],
        "bgnbd": params["bgnbd"],
        "pareto_nbd": params["pareto_nbd"],
        "pareto_nbd_error": params.get("pareto_nbd_error"),
        "gamma_gamma": params["gamma_gamma"],
        "discount_rate": params["discount_rate"],
        "clv_horizon_days": params["clv_horizon_days"],
        "thresholds": params["thresholds"],
    }


# --- the portfolio views (views.py): stored at each refit, computed per request otherwise ---


async def segments(*, session: AsyncSession) -> dict:
    """The segments view computed now from the scores and summaries (views.py)."""

    totals = {row[0]: row[1:] for row in await repository.segment_totals(session)}
    return segments_answer(
        totals,
        dict(await repository.kind_counts(session)),
        model_version=await repository.latest_model_version(session),
    )


async def pareto(*, session: AsyncSession, tops: tuple[float, ...] = DEFAULT_TOPS) -> dict:
    """The Pareto view computed now from the summaries (views.py)."""

    return pareto_answer(await repository.revenue_and_net(session), tops, portfolio_settings())


async def stored_view(*, session: AsyncSession, name: str) -> dict | None:
    """The view `name` as the latest refit stored it, with its model version and when it
    was computed; None when that refit stored none (a model fitted before views were stored)."""

    row = await repository.stored_view(session, name)
    if row is None:
        return None
    return {**row.body, "model_version": row.model_version, "computed_at": row.computed_at}


def inspiration_note(kind: str | None) -> str | None:
    """How inspiration customers are named (from value's shipped ideas), on the lists that show them."""

    return inspiration_rule(portfolio_settings()) if kind in (None, "inspiration") else None


async def _customer(session: AsyncSession, customer_id: str) -> Customer:
    customer = await get_customer(session=session, customer_id=customer_id)
    refuse_merged(customer)
    return customer


def costs_out(customer_id: str, costs: CustomerCosts | None, service_tickets: Decimal) -> dict:
    def money(value) -> str:
        return format(value.normalize(), "f") if value is not None else "0"

    return {
        "customer_id": customer_id,
        "acquisition": money(costs.acquisition) if costs else "0",
        "selling": money(costs.selling) if costs else "0",
        "service": money(costs.service) if costs else "0",
        "service_tickets": money(service_tickets),
        "updated_at": costs.updated_at if costs else None,
    }


async def get_costs(*, session: AsyncSession, customer_id: str) -> dict:
    await _customer(session, customer_id)
    return costs_out(
        customer_id,
        await repository.get_costs(session, customer_id),
        await repository.service_costs_of(session, customer_id),
    )


async def set_costs(*, session: AsyncSession, customer_id: str, acquisition, selling, service) -> dict:
    """Set a customer's acquisition, selling and service costs; their scores follow."""

    await _customer(session, customer_id)
    costs = await repository.get_costs(session, customer_id)
    if costs is None:
        costs = CustomerCosts(customer_id=customer_id)
        session.add(costs)
    costs.acquisition, costs.selling, costs.service = acquisition, selling, service
    costs.updated_at = utcnow()
    await session.flush()
    await rescore_customers(session, [customer_id])
    return costs_out(customer_id, costs, await repository.service_costs_of(session, customer_id))
