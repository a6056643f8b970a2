"""A seeded, realistic customer base for the portfolio benchmarks.

Purchases follow the BG/NBD story (Fader, Hardie & Lee 2005): each customer buys at a
rate λ ~ Gamma(r, α) as a Poisson process from their first purchase and drops out after
each repeat purchase with probability p ~ Beta(a, b). Each purchase event is a basket
of 1 + Poisson(0.1) transactions on that day, each worth z ~ Gamma(p_s, ν) with the
customer's ν ~ Gamma(q, γ) (the Gamma-Gamma spend model, CDNOW's estimates: mean
transaction ~$35). Customers are acquired uniformly over the first year and observed
for two years; with the rates below a customer has ~10 transactions on average.

Everything is vectorised and generated in fixed chunks of customers, each from its own
seeded stream, so `generate` and `transaction_chunks` agree exactly and memory stays
bounded: `generate(1_000_000)` takes a few seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

CHUNK = 100_000  # customers per chunk; part of the seed's meaning, so fixed
START_DAY = int(np.datetime64("2024-01-01", "D").astype(np.int64))
ACQUISITION_DAYS = 365
OBSERVED_DAYS = 730  # the base ends on START_DAY + 729, inclusive

# BG/NBD in weeks (busier than CDNOW's r=0.243, α=4.414: ~10 transactions a customer)
R, ALPHA, A, B = 0.9, 5.0, 0.6, 6.0
BASKET_EXTRA = 0.1  # mean extra same-day transactions per purchase event
SPEND_P, SPEND_Q, SPEND_GAMMA = 6.25, 3.74, 15.44


@dataclass(frozen=True)
class CustomerBase:
    """Per-customer summaries; day numbers are days since 1970-01-01 (UTC)."""

    first_day: np.ndarray
    last_day: np.ndarray
    purchase_days: np.ndarray  # distinct days with a purchase, the first included
    transactions: np.ndarray
    total_spend: np.ndarray
    first_day_spend: np.ndarray
    end_day: int
    seed: int

    def __len__(self) -> int:
        return len(self.first_day)


@dataclass(frozen=True)
class TransactionChunk:
    """The transactions of one chunk of customers, sorted by customer then day."""

    customer: np.ndarray  # index into the customer base
    day: np.ndarray
    amount: np.ndarray  # dollars, rounded to cents


def _chunk(seed: int, index: int, customers: int) -> TransactionChunk:
    rng = np.random.default_rng([seed, index])
    offset = index * CHUNK
    rate = rng.gamma(R, 1.0 / ALPHA, customers) / 7.0  # purchases per day while alive
    dropout = rng.beta(A, B, customers)
    spend_scale = rng.gamma(SPEND_Q, 1.0 / SPEND_GAMMA, customers)
    first = START_DAY + rng.integers(0, ACQUISITION_DAYS, customers)
    window = START_DAY + OBSERVED_DAYS - first  # days from the first purchase to the end, inclusive
    # Poisson events in the window; the customer stops after the J-th repeat purchase
    events = rng.poisson(rate * window)
    kept = np.minimum(events, rng.geometric(dropout))
    owner = np.repeat(np.arange(customers), events)
    when = np.sort(owner + rng.random(len(owner)))  # uniform times, ordered within each customer
    rank = np.arange(len(owner)) - np.repeat(np.cumsum(events) - events, events)
    keep = rank < kept[owner]
    owner, when = owner[keep], when[keep] - owner[keep]
    repeat_day = first[owner] + np.floor(when * window[owner]).astype(np.int64)
    # purchase events: the first purchase, then the repeats, per customer in time order
    starts = np.cumsum(kept + 1) - (kept + 1)
    event_owner = np.repeat(np.arange(customers), kept + 1)
    event_day = np.empty(len(event_owner), dtype=np.int64)
    event_day[starts] = first
    event_day[np.delete(np.arange(len(event_owner)), starts)] = repeat_day
    baskets = 1 + rng.poisson(BASKET_EXTRA, len(event_owner))
    customer = np.repeat(event_owner, baskets)
    amount = np.maximum(np.round(rng.gamma(SPEND_P, 1.0 / spend_scale[customer]), 2), 0.01)
    return TransactionChunk(customer + offset, np.repeat(event_day, baskets), amount)


def _chunks(customers: int, seed: int) -> Iterator[TransactionChunk]:
    for index, start in enumerate(range(0, customers, CHUNK)):
        yield _chunk(seed, index, min(CHUNK, customers - start))


def transaction_chunks(customers: int = 1_000_000, seed: int = 1) -> Iterator[TransactionChunk]:
    """The transactions behind `generate(customers, seed)`, one chunk of customers at a time."""
    return _chunks(customers, seed)


def transactions(customers: int = 1_000_000, seed: int = 1) -> Iterator[tuple[int, int, float]]:
    """(customer index, day, amount) one transaction at a time; for loading a database."""
    for chunk in _chunks(customers, seed):
        yield from zip(chunk.customer.tolist(), chunk.day.tolist(), chunk.amount.tolist())


def summarise(chunk: TransactionChunk, offset: int, customers: int) -> dict[str, np.ndarray]:
    """Per-customer summaries of one chunk's transactions (sorted by customer, then day)."""
    who = chunk.customer - offset
    starts_customer = np.r_[True, who[1:] != who[:-1]]
    new_day = starts_customer | np.r_[True, chunk.day[1:] != chunk.day[:-1]]
    first = chunk.day[starts_customer]
    is_first_day = chunk.day == first[who]
    ends = np.r_[np.flatnonzero(starts_customer)[1:], len(who)] - 1
    return {
        "first_day": first,
        "last_day": chunk.day[ends],
        "purchase_days": np.bincount(who[new_day], minlength=customers),
        "transactions": np.bincount(who, minlength=customers),
        "total_spend": np.bincount(who, weights=chunk.amount, minlength=customers),
        "first_day_spend": np.bincount(who, weights=np.where(is_first_day, chunk.amount, 0.0), minlength=customers),
    }


def generate(customers: int = 1_000_000, seed: int = 1) -> CustomerBase:
    """Per-customer summary arrays of a seeded customer base (see the module doc)."""
    parts = [
        summarise(chunk, index * CHUNK, len(np.unique(chunk.customer)))
        for index, chunk in enumerate(_chunks(customers, seed))
    ]
    columns = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    return CustomerBase(**columns, end_day=START_DAY + OBSERVED_DAYS - 1, seed=seed)
