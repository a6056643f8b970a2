"""Secrets and Standard Webhooks signatures (the `standardwebhooks` library signs).

A secret is `whsec_` + base64 of 24 random bytes, as Svix and the spec's libraries make
them. While a rotated-out secret still signs, a delivery carries two `v1,` signatures
separated by a space (the spec's way): a receiver that knows either verifies it.
"""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime

from standardwebhooks import Webhook

PREFIX = "whsec_"


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


class Signer:
    """Signs for one subscription with its current (and maybe its previous) secret."""

    def __init__(self, secret: str, previous: str | None = None, previous_until: datetime | None = None):
        self._current = Webhook(secret)
        self._previous = Webhook(previous) if previous else None
        self._previous_until = previous_until

    def headers(self, event_id: str, body: bytes, now: datetime) -> dict[str, str]:
        text = body.decode()
        signatures = [self._current.sign(event_id, now, text)]
        if self._previous is not None and self._previous_until is not None and now < self._previous_until:
            signatures.append(self._previous.sign(event_id, now, text))
        return {
            "webhook-id": event_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": " ".join(signatures),
        }


def utc_now() -> datetime:
    return datetime.now(UTC)
