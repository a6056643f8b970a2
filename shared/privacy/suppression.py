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
from functools import cache
from pathlib import Path

from shared.secret_files import read_or_create_secret

KEY_FILE = "suppression-key"


def digest(key: bytes, kind: str, normalised: str) -> str:
    """The hex HMAC of one normalised value, its kind in the message so an email never matches a phone."""

    return hmac.new(key, f"{kind}:{normalised}".encode(), hashlib.sha256).hexdigest()


@cache  # read once per process and setting (every customer created asks)
def load_or_create_key(var_dir: Path, configured: str | None) -> bytes:
    """The configured key, else the key file's, else a new random one written atomically."""

    if configured:
        return configured.encode()
    key, _ = read_or_create_secret(Path(var_dir) / KEY_FILE, hint=" (the suppression list then matches no one)")
    return key.encode()
