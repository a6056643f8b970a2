"""Portfolio analysis knobs, read from `VALUECHAIN_IDENTIFY_*` like the rest of identify."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class PortfolioSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VALUECHAIN_IDENTIFY_", extra="ignore")

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

    @field_validator("clv_band_edges")
    @classmethod
    def _increasing(cls, edges: tuple[float, float, float]) -> tuple[float, float, float]:
        if not all(low < high for low, high in zip(edges, edges[1:])):
            raise ValueError("clv_band_edges must increase: [low→medium, medium→high, high→top]")
        return edges


@lru_cache(maxsize=1)
def portfolio_settings() -> PortfolioSettings:
    return PortfolioSettings()
