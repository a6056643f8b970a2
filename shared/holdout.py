"""Holdout assignment, one formula for every service that keeps a holdout (value's campaigns,
lifecycle's playbooks): shared/decisions.md "Holdout assignment"."""

from __future__ import annotations

import hashlib


def in_holdout(seed: str, customer_id: str, share: float) -> bool:
    """sha256(f"{seed}:{customer_id}") read as a number in [0, 1) (its first 8 bytes over 2^64),
    below the holdout share: stable, reproducible, independent of order (decisions.md)."""

    digest = hashlib.sha256(f"{seed}:{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share
