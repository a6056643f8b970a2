"""Where identify's sub-domains get identify's settings, and the date bounds they set."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from shared.db.database import utcnow
from shared.settings import IdentifySettings, current_settings

# The portfolio code's name for identify's settings (shared/settings.py holds them all).
PortfolioSettings = IdentifySettings


def portfolio_settings() -> IdentifySettings:
    """identify's settings: the running app's, or the environment's outside one."""

    return current_settings(IdentifySettings)


def date_bounds() -> tuple[datetime, datetime]:
    """(earliest, latest) instant a client may give, latest as of now."""

    settings = portfolio_settings()
    return settings.date_floor, utcnow() + timedelta(seconds=settings.date_skew_s)


def _text(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


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
    floor, latest = (at.astimezone(UTC).date() for at in date_bounds())
    if not floor <= value <= latest:
        raise ValueError(f"must be a day from {floor} to {latest} (today plus the allowed clock skew)")
    return value
