"""Business time: when an SLA target falls due, counting only a calendar's working hours.

A calendar has a time zone (zoneinfo), working days (0 = Monday … 6 = Sunday), one span of
working hours per working day in local wall-clock time, and holidays: a country's (and
subdivision's) public holidays from the `holidays` package, plus dates of its own. Hours
are wall-clock hours, so a day on which the clocks change still runs from 09:00 to 17:00
local time; the UTC instants shift with the offset (tests/services/lifecycle/test_sla_calendar.py
checks due times worked out by hand across weekends, holidays and a DST change).

No calendar means round the clock: business time is elapsed time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays as holiday_tables

# A target that never falls due within ten years of working days is refused by the caller's
# validation (a calendar needs a working day and hours); this bounds the walk all the same.
MAX_DAYS = 3660


@lru_cache(maxsize=256)
def _public_holidays(country: str, subdivision: str | None, year: int) -> frozenset[date]:
    return frozenset(holiday_tables.country_holidays(country, subdiv=subdivision, years=year).keys())


def supported_countries() -> dict[str, list[str]]:
    """{ISO 3166 alpha-2: its subdivisions} the holidays package knows."""

    return holiday_tables.list_supported_countries()


@dataclass(frozen=True)
class BusinessHours:
    time_zone: str
    working_days: frozenset[int]
    start: time
    end: time
    country: str | None = None
    subdivision: str | None = None
    holidays: frozenset[date] = field(default_factory=frozenset)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def is_working_day(self, day: date) -> bool:
        if day.weekday() not in self.working_days or day in self.holidays:
            return False
        return not (self.country and day in _public_holidays(self.country, self.subdivision, day.year))

    def _windows(self, since: datetime):
        """The working spans (UTC start, UTC end) from the local day of `since` onwards."""

        zone = self.zone
        day = since.astimezone(zone).date()
        for _ in range(MAX_DAYS):
            if self.is_working_day(day):
                opens = datetime.combine(day, self.start, tzinfo=zone).astimezone(UTC)
                closes = datetime.combine(day, self.end, tzinfo=zone).astimezone(UTC)
                yield opens, closes
            day += timedelta(days=1)

    def add(self, start: datetime, minutes: float) -> datetime:
        """The instant `minutes` of business time after `start`."""

        remaining = timedelta(minutes=minutes)
        for opens, closes in self._windows(start):
            begin = max(opens, start)
            if closes <= begin:
                continue
            if remaining <= closes - begin:
                return begin + remaining
            remaining -= closes - begin
        raise ValueError(f"no {minutes} business minutes within {MAX_DAYS} days of {start}")

    def minutes_between(self, start: datetime, end: datetime) -> float:
        """Business minutes from `start` to `end` (0 when end is not after start)."""

        total = timedelta()
        if end <= start:
            return 0.0
        for opens, closes in self._windows(start):
            if opens >= end:
                break
            begin, finish = max(opens, start), min(closes, end)
            if finish > begin:
                total += finish - begin
        return total.total_seconds() / 60


class AroundTheClock:
    """No calendar: every minute is a business minute."""

    def add(self, start: datetime, minutes: float) -> datetime:
        return start + timedelta(minutes=minutes)

    def minutes_between(self, start: datetime, end: datetime) -> float:
        return max((end - start).total_seconds() / 60, 0.0)


AROUND_THE_CLOCK = AroundTheClock()
