"""The admin API key: where it comes from, and the constant-time bearer check.

Every `/v1` route of the gateway needs `Authorization: Bearer <key>`. The key is
`VALUECHAIN_ADMIN_API_KEY` when that is set; otherwise the content of
`<var_dir>/admin-api-key`, which is created (mode 0600) on first start.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from shared.secret_files import read_or_create_secret
from shared.settings import SuiteSettings

ADMIN_KEY_ENV = "VALUECHAIN_ADMIN_API_KEY"
ADMIN_KEY_FILE = "admin-api-key"


def admin_key_path(var_dir: Path) -> Path:
    return Path(var_dir) / ADMIN_KEY_FILE


def load_or_create_admin_key(settings: SuiteSettings) -> tuple[str, bool]:
    """Return `(key, created_now)`.

    `VALUECHAIN_ADMIN_API_KEY` (`settings.admin_api_key`) wins when set. Otherwise
    the key file in `settings.var_dir` is read, or
    created with a fresh `secrets.token_urlsafe(32)` and mode 0600. Creation is
    atomic (write a private temp file, then hard-link it into place), so several
    workers starting at once agree on one key.
    """

    if settings.admin_api_key is not None:
        return settings.admin_api_key.get_secret_value(), False

    return read_or_create_secret(admin_key_path(settings.var_dir), hint=f", or set {ADMIN_KEY_ENV}")


class BearerAuth:
    """Checks an `Authorization` header value against the admin key in constant time."""

    __slots__ = ("_expected",)

    def __init__(self, key: str):
        if not key:
            raise ValueError("the admin API key must not be empty")
        self._expected = key.encode("utf-8")

    def check(self, header: bytes | None) -> bool:
        if not header:
            return False
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        return hmac.compare_digest(token.strip(), self._expected)
