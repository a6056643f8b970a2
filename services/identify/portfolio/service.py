"""Portfolio rules: the views of the whole portfolio and per-customer costs."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession

from services.identify.analysis import SEGMENTS, gini, lorenz_points, top_shares
from services.identify.customers.service import get_customer, refuse_merged
from services.identify.models import Customer, CustomerCosts
from services.identify.portfolio import repository
from services.identify.portfolio.repository import EPOCH
from services.identify.portfolio.scoring import inspiration_rule, net_revenue, rescore_customers
from services.identify.settings import portfolio_settings
from shared.db.database import utcnow
from shared.http.errors import NotFound

DEFAULT_TOPS = (0.01, 0.05, 0.1, 0.2, 0.5)


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


async def segments(*, session: AsyncSession) -> dict:
    totals = {row[0]: row[1:] for row in await repository.segment_totals(session)}
    items = []
    for name in SEGMENTS:  # every segment, the empty ones too
        customers, revenue, historic, predicted = totals.get(name, (0, 0.0, 0.0, 0.0))
        items.append(
            {
                "segment": name,
                "customers": int(customers),
                "revenue": round(float(revenue), 2),
                "historic_clv": round(float(historic), 2),
                "predicted_clv": round(float(predicted), 2),
            }
        )
    return {
        "model_version": await repository.latest_model_version(session),
        "customers": sum(item["customers"] for item in items),
        "segments": items,
    }


async def pareto(*, session: AsyncSession, tops: tuple[float, ...] = DEFAULT_TOPS) -> dict:
    data = await repository.revenue_and_net(session)
    settings = portfolio_settings()
    revenue = data[:, 0]
    profit = net_revenue(revenue, data[:, 1], data[:, 2], settings) - data[:, 3]
    n = len(revenue)
    revenue_shares = dict(top_shares(revenue, tops)) if n else dict.fromkeys(tops, 0.0)
    # Profit shares rank customers by profit; with loss-makers the top can hold over 100%.
    profit_shares = dict(top_shares(profit, tops)) if n else dict.fromkeys(tops, 0.0)
    return {
        "customers": n,
        "revenue": round(float(revenue.sum()), 2),
        "profit": round(float(profit.sum()), 2),
        "shares": [
            {
                "top": top,
                "customers": int(np.ceil(top * n)),
                "revenue_share": round(revenue_shares[top], 6),
                "profit_share": round(profit_shares[top], 6),
            }
            for top in tops
        ],
        "gini": round(gini(revenue), 6) if n else 0.0,
        "profit_gini": round(gini(profit), 6) if n else 0.0,
        "lorenz": [(round(x, 6), round(y, 6)) for x, y in lorenz_points(revenue)] if n else [(0.0, 0.0), (1.0, 1.0)],
    }


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
