"""Portfolio analysis knobs, read from `VALUECHAIN_IDENTIFY_*` like the rest of identify."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from functools import lru_cache

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.db import utcnow
from shared.validation import Currency


class PortfolioSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VALUECHAIN_IDENTIFY_", extra="ignore")

    # The currency every sum of money is in: purchases in other currencies are converted at
    # the rates loaded with PUT /v1/fx-rates. Change it only before recording transactions
    # (stored reporting amounts are not re-converted).
    reporting_currency: Currency = "USD"
    # Time value of money: an annual rate, converted to the model's time unit.
    discount_rate: float = Field(0.10, ge=0, le=1)
    # Predictive CLV looks this many days ahead.
    clv_horizon_days: int = Field(365, ge=1, le=3650)
    # Share of revenue that is profit when transactions carry no margin (1.0 = value revenue).
    default_margin: float = Field(1.0, ge=0, le=1)
    # Strategically significant customers.
    high_value_top: float = Field(0.10, gt=0, le=1)  # top share of predicted CLV
    benchmark_min_referrals: int = Field(2, ge=1)
    cost_absorber_top: float = Field(0.20, gt=0, le=1)  # top share by number of purchases …
    thin_margin: float = Field(0.15, ge=0, le=1)  # … at a margin ratio at most this
    # CLV bands (low, medium, high, top): predicted CLV below each edge, in the portfolio's
    # money; fixed amounts rather than quantiles so a band means the same thing from one
    # model version to the next (docs/portfolio.md). JSON in the environment: [50, 250, 1000].
    clv_band_edges: tuple[float, float, float] = (50.0, 250.0, 1000.0)
    # Background refit: every this many seconds (0 = only on request).
    refit_interval_s: float = Field(86400.0, ge=0)
    # The dates a client may give (a purchase's occurred_at, a refit's calibration_end):
    # not before the floor, not after now plus the skew allowed for clocks ahead of
    # ours. Scores are as of the latest purchase: one purchase dated 2099 made 2099 the
    # scoring day of every customer.
    date_floor: datetime = datetime(1970, 1, 1, tzinfo=timezone.utc)
    date_skew_s: float = Field(86400.0, ge=0, le=30 * 86400)

    @field_validator("date_floor")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value

    @field_validator("clv_band_edges")
    @classmethod
    def _increasing(cls, edges: tuple[float, float, float]) -> tuple[float, float, float]:
        if not all(low < high for low, high in zip(edges, edges[1:])):
            raise ValueError("clv_band_edges must increase: [low→medium, medium→high, high→top]")
        return edges


@lru_cache(maxsize=1)
def portfolio_settings() -> PortfolioSettings:
    return PortfolioSettings()


def date_bounds() -> tuple[datetime, datetime]:
    """(earliest, latest) instant a client may give, latest as of now."""

    settings = portfolio_settings()
    return settings.date_floor, utcnow() + timedelta(seconds=settings.date_skew_s)


def _text(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def bounds_message(floor: datetime, latest: datetime) -> str:
    return f"must be from {_text(floor)} to now plus the allowed clock skew ({_text(latest)})"


def bounded_instant(value: datetime) -> datetime:
    """A date-time within date_bounds() (a naive one is left to the model to refuse)."""

    if value.tzinfo is None:
        return value
    floor, latest = date_bounds()
    if not floor <= value <= latest:
        raise ValueError(bounds_message(floor, latest))
    return value


def bounded_date(value: date | None) -> date | None:
    """A day within date_bounds(), both read as UTC days."""

    if value is None:
        return None
    floor, latest = (at.astimezone(timezone.utc).date() for at in date_bounds())
    if not floor <= value <= latest:
        raise ValueError(f"must be a day from {floor} to {latest} (today plus the allowed clock skew)")
    return value
