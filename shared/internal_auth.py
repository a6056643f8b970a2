"""The internal secret: services answer only the gateway.

The gateway sends `x-valuechain-internal: <secret>` on every request to a service
(gateway/upstream.py renders it once into each pool's header bytes); a service
refuses any request without it, or with another value, with 401 before anything else
runs (shared/http/middleware.py), comparing in constant time. `/healthz` and `/readyz`
stay open for orchestrators; `/metrics` and `/v1/ops/*` need it like every route, so
operators read them through the gateway (which needs the `ops` scope there).

The secret is `VALUECHAIN_INTERNAL_SECRET`, else `<var>/internal-secret`, made on first
use (mode 0600, atomically) by whichever process of the embedded default needs it first.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from shared.http.errors import error_body
from shared.secret_files import read_or_create_secret
from shared.settings import SuiteSettings

INTERNAL_HEADER = b"x-valuechain-internal"
INTERNAL_SECRET_FILE = "internal-secret"
# Probes of orchestrators and load balancers, which hold no secret.
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
UNAUTHORIZED = error_body("unauthorized", "services answer only the gateway: send requests through it")


def internal_secret_path(var_dir: Path) -> Path:
    return Path(var_dir) / INTERNAL_SECRET_FILE


def load_or_create_internal_secret(settings: SuiteSettings) -> str:
    if settings.internal_secret is not None:
        return settings.internal_secret.get_secret_value()
    secret, _ = read_or_create_secret(
        internal_secret_path(settings.var_dir), hint=", or set VALUECHAIN_INTERNAL_SECRET"
    )
    return secret


class InternalSecret:
    """Checks a request's `x-valuechain-internal` headers against the secret in constant time."""

    __slots__ = ("_expected",)

    def __init__(self, secret: str):
        if not secret:
            raise ValueError("the internal secret must not be empty")
        self._expected = secret.encode("utf-8")

    def matches(self, value: bytes) -> bool:
        return hmac.compare_digest(value, self._expected)
