"""Next best offer: the offers a customer may get, ranked by what each is expected to bring.

    expected value = P(response | segment, template) × expected order value − cost

* The response probability is a Beta–Binomial estimate from past results: of the offers of
  the template issued to customers of the customer's segment, how many were redeemed
  (services/value/nbo/counts.py). Its prior is weak (`VALUECHAIN_VALUE_NBO_PRIOR_STRENGTH`
  pseudo-offers) and centred on the template's rate over every segment, itself shrunk
  towards `VALUECHAIN_VALUE_NBO_DEFAULT_RATE`: a segment with no results gets the
  template's overall rate, a template with none the default.
* The expected order value is identify's expected spend per purchase (Gamma-Gamma, in
  `customer.scored`), else the customer's own average purchase as value saw it.
* The cost is the template's cost of one offer to the business.

Offers the customer already holds (issued, not redeemed, not expired) are left out, and so
are templates past their window, out of budget or at the customer's cap; a customer
without marketing consent on the channel gets no offers. The answer lists each factor and
every template left out with the reason, so a marketer can see why.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.value.campaigns.models import MarketingConsent, Purchase
from services.value.models import Offer, aliases, known_customers, profiles
from services.value.nbo import counts
from services.value.offers.models import OfferTemplate
from shared import statistics
from shared.db.database import utcnow
from shared.settings import ValueSettings, current_settings

CENTS = Decimal("0.01")


def _money(value: Decimal | float | None) -> str | None:
    return None if value is None else format(Decimal(value).quantize(CENTS), "f")


async def _holdings(session: AsyncSession, customer_id: str, now: datetime) -> dict[str, tuple[int, int]]:
    """{template_id: (offers held in all, of them open)} for the customer."""

    is_open = and_(Offer.status == "issued", func.coalesce(Offer.expires_at > now, True))
    query = (
        select(Offer.template_id, func.count(), func.sum(case((is_open, 1), else_=0)))
        .where(Offer.customer_id == customer_id, Offer.template_id.isnot(None))
        .group_by(Offer.template_id)
    )
    return {template_id: (total, int(open_ or 0)) for template_id, total, open_ in (await session.execute(query)).all()}


async def _consented_channels(session: AsyncSession, customer_id: str) -> list[str]:
    query = select(MarketingConsent.channel).where(
        MarketingConsent.customer_id == customer_id, MarketingConsent.granted.is_(True)
    )
    return sorted((await session.execute(query)).scalars())


async def _average_purchase(session: AsyncSession, customer_id: str) -> Decimal | None:
    query = select(func.avg(Purchase.amount - Purchase.refunded)).where(
        Purchase.customer_id == customer_id, Purchase.voided.is_(False)
    )
    value = await session.scalar(query)
    return None if value is None else Decimal(str(value))


_TEMPLATE_COLUMNS = (
    OfferTemplate.id,
    OfferTemplate.title,
    OfferTemplate.kind,
    OfferTemplate.cost,
    OfferTemplate.valid_until,
    OfferTemplate.budget,
    OfferTemplate.issued,
    OfferTemplate.per_customer_cap,
)


def _why_not(template: Any, holdings: tuple[int, int], now: datetime) -> str | None:
    held, open_ = holdings
    if template.valid_until is not None and template.valid_until <= now:
        return "expired"
    if template.budget is not None and template.issued >= template.budget:
        return "budget_exhausted"
    if open_:
        return "held"
    if template.per_customer_cap is not None and held >= template.per_customer_cap:
        return "customer_cap"
    return None


async def next_best_offer(
    *, session: AsyncSession, customer_id: str, channel: str | None, limit: int
) -> dict[str, Any]:
    if not await known_customers.contains(session, customer_id):
        raise await aliases.not_found_or_merged(session, customer_id)
    settings = current_settings(ValueSettings)
    now = utcnow()
    profile = await profiles.get(session, customer_id) or {}
    segment = profile.get("segment")
    consented = await _consented_channels(session, customer_id)
    answer: dict[str, Any] = {
        "customer_id": customer_id,
        "segment": segment,
        "channel": channel,
        "consented_channels": consented,
        "expected_order_value": None,
        "offers": [],
        "excluded": [],
    }
    spend = profile.get("expected_spend")
    order_value: Decimal | None = None
    if spend is not None:
        order_value = Decimal(str(spend))
        answer["expected_order_value"] = {"amount": _money(order_value), "source": "identify_expected_spend"}
    else:
        order_value = await _average_purchase(session, customer_id)
        if order_value is not None:
            answer["expected_order_value"] = {"amount": _money(order_value), "source": "average_purchase"}
    templates = (await session.execute(select(*_TEMPLATE_COLUMNS).order_by(OfferTemplate.id))).all()
    if not (consented if channel is None else channel in consented):
        where = f"on {channel}" if channel else "on any channel"
        answer["excluded"] = [{"template_id": t.id, "title": t.title, "reason": "no_consent"} for t in templates]
        answer["note"] = f"the customer has not consented to marketing {where}"
        return answer
    holdings = await _holdings(session, customer_id, now)
    in_segment = await counts.of_segment(session, segment)
    overall = await counts.of_all_segments(session)
    strength, default_rate = settings.nbo_prior_strength, settings.nbo_default_rate
    spend_f = None if order_value is None else float(order_value)
    candidates = []
    for template in templates:
        reason = _why_not(template, holdings.get(template.id, (0, 0)), now)
        if reason:
            answer["excluded"].append({"template_id": template.id, "title": template.title, "reason": reason})
            continue
        issued_all, redeemed_all = overall.get(template.id, (0, 0))
        prior = statistics.beta_binomial(redeemed_all, issued_all, prior_mean=default_rate, prior_strength=strength)
        issued, redeemed = in_segment.get(template.id, (0, 0))
        posterior = statistics.beta_binomial(redeemed, issued, prior_mean=prior.mean, prior_strength=strength)
        ev = None if spend_f is None else posterior.mean * spend_f - float(template.cost or 0)
        candidates.append((ev, template, prior, posterior, issued, redeemed))
    # Ranked on floats; only the offers shown get their exact money and their interval.
    candidates.sort(key=lambda c: (c[0] is None, -(c[0] or 0.0), c[1].id))
    answer["offers"] = [
        _shown(template, prior, posterior, issued, redeemed, order_value, strength)
        for _, template, prior, posterior, issued, redeemed in candidates[:limit]
    ]
    return answer


def _shown(
    template: Any,
    prior: statistics.BetaPosterior,
    posterior: statistics.BetaPosterior,
    issued: int,
    redeemed: int,
    order_value: Decimal | None,
    strength: float,
) -> dict[str, Any]:
    cost = Decimal(template.cost or 0)
    value = None if order_value is None else Decimal(str(posterior.mean)) * order_value - cost
    low, high = posterior.interval()
    return {
        "template_id": template.id,
        "title": template.title,
        "kind": template.kind,
        "response_probability": round(posterior.mean, 6),
        "response_interval": [round(low, 6), round(high, 6)],
        "redeemed_in_segment": redeemed,
        "issued_in_segment": issued,
        "prior_rate": round(prior.mean, 6),
        "prior_strength": strength,
        "expected_order_value": _money(order_value),
        "cost": _money(cost),
        "expected_value": _money(value),
    }
