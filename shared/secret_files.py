"""Secrets kept in files under `<var>`, made on first use: the admin API key, the internal
secret, the NATS passwords.

A file is created with a fresh `secrets.token_urlsafe(32)` and mode 0600, atomically (a
private temporary file hard-linked into place), so several processes starting at once
agree on one value: whoever links first wins, the others read theirs.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def read_secret(path: Path, *, hint: str = "") -> str | None:
    """The file's secret (stripped), None when there is no file; an empty file is an error."""

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    value = text.strip()
    if not value:
        raise ValueError(f"{path} is empty: delete it to have a new one made{hint}")
    return value


def read_or_create_secret(path: Path, *, hint: str = "") -> tuple[str, bool]:
    """`(secret, created_now)`: the file's secret, or a new one written to it (mode 0600)."""

    existing = read_secret(path, hint=hint)
    if existing is not None:
        return existing, False
    path.parent.mkdir(parents=True, exist_ok=True)
    value = new_secret()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(value + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)  # whatever the umask said
        try:
            os.link(tmp, path)
        except FileExistsError:
            # Another process created it between our read and our link: use theirs.
            theirs = read_secret(path, hint=hint)
            if theirs is None:
                raise
            return theirs, False
    finally:
        tmp.unlink(missing_ok=True)
    return value, True
