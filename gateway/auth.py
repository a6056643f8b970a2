"""The bootstrap admin API key: where it comes from.

The key is `VALUECHAIN_ADMIN_API_KEY` when that is set; otherwise the content of
`<var_dir>/admin-api-key`, which is created (mode 0600) on first start. It acts as
the `admin` role with every scope; the keys it makes (POST /v1/api-keys) are checked
by gateway/access/resolver.py, which checks this one too, in constant time.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

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

    path = admin_key_path(settings.var_dir)
    existing = _read_key(path)
    if existing is not None:
        return existing, False

    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{ADMIN_KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(key + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)  # whatever the umask said
        try:
            os.link(tmp, path)
        except FileExistsError:
            # Another process created it between our read and our link: use theirs.
            theirs = _read_key(path)
            if theirs is None:
                raise
            return theirs, False
    finally:
        tmp.unlink(missing_ok=True)
    return key, True


def _read_key(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    key = text.strip()
    if not key:
        raise ValueError(f"{path} is empty: delete it to have a new key made, or set {ADMIN_KEY_ENV}")
    return key
