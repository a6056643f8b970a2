"""Event-type filters: NATS subject syntax over the public types.

A pattern is a type (`crm.identify.customer.created`) or has wildcard tokens: `*` stands
for exactly one token (`crm.identify.customer.*`), a final `>` for one or more
(`crm.identify.>`, `crm.>` for everything). A pattern must match at least one public
type (shared/events/public.py `PUBLIC_TYPES`). The subscription's durable consumer
filters on the public types its patterns match, listed one by one: NATS refuses
overlapping filters (`crm.>` beside `crm.identify.>`), and a literal list never
overlaps and never lets a dead letter through. A type added to the catalog later
joins a wildcard subscription when network next starts (the consumers are re-filtered).
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.events.public import PUBLIC_TYPES


def matches(pattern: str, subject: str) -> bool:
    want, have = pattern.split("."), subject.split(".")
    for index, token in enumerate(want):
        if token == ">":
            return index == len(want) - 1 and len(have) > index
        if index >= len(have) or (token != "*" and token != have[index]):
            return False
    return len(want) == len(have)


def problem(pattern: str) -> str | None:
    """Why `pattern` is refused, or None."""

    tokens = pattern.split(".")
    if any(not token or (token != token.strip()) for token in tokens):
        return f"{pattern!r} is not an event type or pattern (empty token)"
    if any(token not in ("*", ">") and ("*" in token or ">" in token) for token in tokens):
        return f"{pattern!r}: `*` and `>` stand for whole tokens"
    if ">" in tokens[:-1]:
        return f"{pattern!r}: `>` may only end a pattern"
    if not any(matches(pattern, subject) for subject in PUBLIC_TYPES):
        if "*" in tokens or ">" in tokens:
            return f"{pattern!r} matches no public event type (see docs/events.md)"
        return f"unknown event type {pattern!r} (see docs/events.md)"
    return None


def subjects(patterns: Iterable[str]) -> list[str]:
    """The public types the patterns match, sorted: the consumer's filter."""

    patterns = list(patterns)
    return sorted(subject for subject in PUBLIC_TYPES if any(matches(p, subject) for p in patterns))
