"""Conversion into the reporting currency: every sum of money in the suite is in it.

A purchase in the reporting currency converts at 1 and needs no rate. One in another
currency uses the latest rate of that currency dated on or before its UTC day (rates
are loaded by operators, PUT /v1/fx-rates); with none it cannot be recorded. The rates
a write needs are read once per currency (the table holds one row a day at most), so
a 5,000-row import batch costs one query per currency and the common case of a
purchase in the reporting currency costs none.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from services.identify.money import repository
from services.identify.settings import portfolio_settings

CENT_OF_CENT = Decimal("0.0001")  # the precision of stored amounts
ONE = Decimal(1)  # the rate of the reporting currency: amounts stay as they are
MAX_AMOUNT = Decimal("1e14")  # what an amount column holds


def reporting_currency() -> str:
    return portfolio_settings().reporting_currency


def utc_day(at: datetime) -> date:
    return (at.astimezone(UTC) if at.tzinfo is not None else at).date()


def convert(amount: Decimal, rate: Decimal) -> Decimal:
    return (amount * rate).quantize(CENT_OF_CENT, rounding=ROUND_HALF_EVEN)


@dataclass(slots=True)
class Rates:
    """The rates of some currencies, each as (days ascending, rates) for bisection."""

    reporting: str
    by_currency: dict[str, tuple[list[date], list[Decimal]]]

    def rate(self, currency: str, at: datetime) -> Decimal | None:
        """The rate for a purchase at `at`; None when no rate is dated on or before its day."""

        if currency == self.reporting:
            return ONE
        days, rates = self.by_currency.get(currency, ((), ()))
        position = bisect_right(days, utc_day(at))
        return rates[position - 1] if position else None


async def rates_for(session: AsyncSession, currencies: Iterable[str]) -> Rates:
    """The rates needed to convert purchases in these currencies."""

    reporting = reporting_currency()
    wanted = sorted(set(currencies) - {reporting})
    by_currency: dict[str, tuple[list[date], list[Decimal]]] = {code: ([], []) for code in wanted}
    for currency, day, rate in await repository.rates_of(session, wanted):
        days, rates = by_currency[currency]
        days.append(day)
        rates.append(rate)
    return Rates(reporting, by_currency)


def missing_rate(currency: str, at: datetime, reporting: str) -> str:
    """What to tell the client about a purchase that has no rate."""

    return (
        f"no {currency} → {reporting} exchange rate dated on or before {utc_day(at).isoformat()}: "
        f'load one with PUT /v1/fx-rates ({{"currency": "{currency}", "date": "…", "rate": …}}) '
        f"or record the purchase in {reporting}"
    )
