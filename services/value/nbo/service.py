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


def _why_not(template: OfferTemplate, holdings: tuple[int, int], now: datetime) -> str | None:
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
    if spend is not None:
        answer["expected_order_value"] = {"amount": _money(spend), "source": "identify_expected_spend"}
        order_value: Decimal | None = Decimal(str(spend))
    else:
        order_value = await _average_purchase(session, customer_id)
        if order_value is not None:
            answer["expected_order_value"] = {"amount": _money(order_value), "source": "average_purchase"}
    templates = list((await session.execute(select(OfferTemplate).order_by(OfferTemplate.id))).scalars())
    if not (consented if channel is None else channel in consented):
        where = f"on {channel}" if channel else "on any channel"
        answer["excluded"] = [{"template_id": t.id, "title": t.title, "reason": "no_consent"} for t in templates]
        answer["note"] = f"the customer has not consented to marketing {where}"
        return answer
    holdings = await _holdings(session, customer_id, now)
    in_segment = await counts.of_segment(session, segment)
    overall = await counts.of_all_segments(session)
    ranked = []
    for template in templates:
        reason = _why_not(template, holdings.get(template.id, (0, 0)), now)
        if reason:
            answer["excluded"].append({"template_id": template.id, "title": template.title, "reason": reason})
            continue
        ranked.append(
            _rank(
                template, in_segment.get(template.id, (0, 0)), overall.get(template.id, (0, 0)), order_value, settings
            )
        )
    ranked.sort(key=lambda o: (o["_ev"] is None, -(o["_ev"] or 0), o["template_id"]))
    answer["offers"] = [{k: v for k, v in o.items() if k != "_ev"} for o in ranked[:limit]]
    return answer


def _rank(
    template: OfferTemplate,
    in_segment: tuple[int, int],
    overall: tuple[int, int],
    order_value: Decimal | None,
    settings: ValueSettings,
) -> dict[str, Any]:
    strength = settings.nbo_prior_strength
    prior = statistics.beta_binomial(
        overall[1], overall[0], prior_mean=settings.nbo_default_rate, prior_strength=strength
    )
    posterior = statistics.beta_binomial(in_segment[1], in_segment[0], prior_mean=prior.mean, prior_strength=strength)
    low, high = posterior.interval()
    cost = Decimal(template.cost or 0)
    probability = Decimal(str(posterior.mean))
    value = None if order_value is None else probability * order_value - cost
    return {
        "template_id": template.id,
        "title": template.title,
        "kind": template.kind,
        "response_probability": round(posterior.mean, 6),
        "response_interval": [round(low, 6), round(high, 6)],
        "redeemed_in_segment": in_segment[1],
        "issued_in_segment": in_segment[0],
        "prior_rate": round(prior.mean, 6),
        "prior_strength": strength,
        "expected_order_value": _money(order_value),
        "cost": _money(cost),
        "expected_value": _money(value),
        "_ev": value,
    }
