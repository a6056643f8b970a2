"""The bootstrap admin API key: where it comes from.

The key is `VALUECHAIN_ADMIN_API_KEY` when that is set; otherwise the content of
`<var_dir>/admin-api-key`, which is created (mode 0600) on first start. It acts as
the `admin` role with every scope; the keys it makes (POST /v1/api-keys) are checked
by gateway/access/resolver.py, which checks this one too, in constant time.
"""

from __future__ import annotations

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
