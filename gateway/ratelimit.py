"""Rate limits per key: a token bucket per key, sized by the key's role.

A role's quota `q` requests per window `w` seconds is a bucket of `q` tokens that
refills evenly (`q / w` tokens a second): a key may burst its whole quota, then
goes on at the average rate. A request takes one token; with less than one left
it is refused (429 with `Retry-After`, the seconds until a token is back).

Several gateway processes (uvicorn workers, replicas behind a balancer) split each
key's budget: each holds `1 / replicas` of every bucket, so the processes together
never allow more than the quota. Sharing the buckets in JetStream key-value instead
cost a KV get and update round trip on every request, several times the gateway's
whole per-request cost (bench/ratelimit_bench.py, docs/benchmarks.md "Rate limits").
The price of splitting: a client whose requests all reach one process (one
keep-alive connection) gets that process's share, which is what the headers say.

The answer carries the fields of the IETF RateLimit header-fields draft
(draft-ietf-httpapi-ratelimit-headers-12, structured-field syntax):

    RateLimit-Policy: "agent";q=1200;w=60
    RateLimit: "agent";r=1187;t=1

`q` and `w` are this process's quota and window; `r` the whole requests left now,
`t` the seconds until the bucket is full again (the draft's "reset").
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

# The policy used for a role without one of its own (the most restrictive default).
FALLBACK_ROLE = "readonly"

Header = tuple[bytes, bytes]


class Decision:
    """The outcome of `RateLimiter.take`: whether the request may go on, and the
    header fields that say so (`headers`, plus `retry_after` when refused)."""

    __slots__ = ("allowed", "header", "limit", "policy_header", "remaining", "reset_s", "retry_after_s")

    def __init__(
        self,
        allowed: bool,
        limit: int,
        remaining: int,
        reset_s: int,
        retry_after_s: int,
        policy_header: Header,
        header: Header,
    ):
        self.allowed = allowed
        self.limit = limit
        self.remaining = remaining
        self.reset_s = reset_s
        self.retry_after_s = retry_after_s
        self.policy_header = policy_header
        self.header = header

    @property
    def retry_after(self) -> Header:
        return (b"retry-after", b"%d" % self.retry_after_s)


class _Policy:
    __slots__ = ("capacity", "limit", "name", "policy_header", "rate")

    def __init__(self, role: str, quota: int, window_s: int, replicas: int):
        self.name = role.encode("ascii")
        self.capacity = quota / replicas  # this process's share, in tokens
        self.rate = self.capacity / window_s  # tokens a second
        self.limit = int(self.capacity)
        self.policy_header = (b"ratelimit-policy", b'"%s";q=%d;w=%d' % (self.name, self.limit, window_s))


class RateLimiter:
    """In-process token buckets, one per key id. Not shared between processes: each
    process is given its share of the budget (`replicas`)."""

    def __init__(
        self,
        quotas: Mapping[str, int],
        *,
        window_s: int = 60,
        replicas: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ):
        if replicas < 1:
            raise ValueError("replicas must be at least 1")
        self._policies = {role: _Policy(role, quota, window_s, replicas) for role, quota in quotas.items()}
        if FALLBACK_ROLE not in self._policies:
            raise ValueError(f"the rate limits need a {FALLBACK_ROLE!r} policy (the fallback)")
        self._fallback = self._policies[FALLBACK_ROLE]
        self._window_s = window_s
        self._clock = clock
        # key id -> [tokens, when they were counted]
        self._buckets: dict[str, list[float]] = {}
        self._swept = clock()

    def policy(self, role: str) -> Header:
        """The RateLimit-Policy field of a role."""

        return (self._policies.get(role) or self._fallback).policy_header

    def take(self, key_id: str, role: str) -> Decision:
        """Take one request from the key's bucket."""

        policy = self._policies.get(role) or self._fallback
        now = self._clock()
        if now - self._swept > self._window_s:
            self._sweep(now)
        capacity = policy.capacity
        bucket = self._buckets.get(key_id)
        if bucket is None:
            tokens = capacity
            bucket = self._buckets[key_id] = [tokens, now]
        else:
            tokens = bucket[0] + (now - bucket[1]) * policy.rate
            if tokens > capacity:
                tokens = capacity
        bucket[1] = now
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
            retry_after = 0
        else:
            retry_after = max(1, math.ceil((1.0 - tokens) / policy.rate))
        bucket[0] = tokens
        remaining = int(tokens)
        reset = math.ceil((capacity - tokens) / policy.rate)
        header = (b"ratelimit", b'"%s";r=%d;t=%d' % (policy.name, remaining, reset))
        return Decision(allowed, policy.limit, remaining, reset, retry_after, policy.policy_header, header)

    def _sweep(self, now: float) -> None:
        """Forget buckets that have refilled: a full bucket is what a new one would be.
        Once a window, so the map holds only the keys seen lately."""

        self._swept = now
        window = self._window_s
        stale = [key for key, (_, stamp) in self._buckets.items() if now - stamp >= window]
        for key in stale:
            del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)
