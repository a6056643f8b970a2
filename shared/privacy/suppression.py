"""The suppression list's keyed hash: an erased person's email and phone, unreadable but matchable.

identify keeps, for each erasure, HMAC-SHA256(key, normalised value) of the customer's
email and phone. A customer created later with either is flagged `suppressed` (and
value never markets to them), while the list itself names no one: without the key a
digest cannot be tested against a guessed address. The key is
`VALUECHAIN_IDENTIFY_SUPPRESSION_KEY`, or a random one made on first run in
`<var_dir>/suppression-key` (mode 0600), as the gateway's admin key is. Losing the key
makes the list useless (it cannot be rebuilt: the values are gone): back it up with the
databases (docs/privacy.md).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from functools import cache
from pathlib import Path

KEY_FILE = "suppression-key"


def digest(key: bytes, kind: str, normalised: str) -> str:
    """The hex HMAC of one normalised value, its kind in the message so an email never matches a phone."""

    return hmac.new(key, f"{kind}:{normalised}".encode(), hashlib.sha256).hexdigest()


@cache  # read once per process and setting (every customer created asks)
def load_or_create_key(var_dir: Path, configured: str | None) -> bytes:
    """The configured key, else the key file's, else a new random one written atomically."""

    if configured:
        return configured.encode()
    path = Path(var_dir) / KEY_FILE
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(key + "\n")
        try:
            os.link(tmp, path)  # another process made it meanwhile: theirs wins
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_bytes().strip()
