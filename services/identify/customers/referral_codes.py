"""Referral codes: each customer's own, to hand to the people they refer.

Eight characters of Crockford's base32 (`0-9A-Z` without I, L, O and U: nothing to misread),
40 random bits from the OS's CSPRNG: `7KQ2M9ZD`. Typed back in any case, with spaces or
dashes, and with O for 0 and I or L for 1, they still resolve (`normalized`). Unique: new
codes that clash with one held are drawn again before they are stored (`unique_codes`), and
the column's unique key catches a race. A code points at a person: it is personal
(`identifier`), an erasure removes it and it then resolves to nobody.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Awaitable, Callable

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_FROM_BASE32 = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", ALPHABET.encode())
LENGTH = 8
_TYPED = str.maketrans({"O": "0", "I": "1", "L": "1"})
PATTERN = re.compile(f"^[{ALPHABET}]{{{LENGTH}}}$")


def new_codes(n: int) -> list[str]:
    """n fresh codes (5 random bytes are 8 letters), in one pass."""

    if n <= 0:
        return []
    letters = base64.b32encode(secrets.token_bytes(5 * n)).translate(_FROM_BASE32).decode()
    return [letters[start : start + LENGTH] for start in range(0, LENGTH * n, LENGTH)]


def normalized(typed: str) -> str | None:
    """A code as a person may type it (lower case, spaces, dashes, O for 0, I or L for 1) in its
    stored form; None when it cannot be one."""

    code = "".join(typed.upper().replace("-", " ").split()).translate(_TYPED)
    return code if PATTERN.match(code) else None


def distinct_codes(n: int) -> list[str]:
    """n fresh codes, no two alike (not checked against the stored ones: see unique_codes)."""

    codes = list(dict.fromkeys(new_codes(n)))
    while len(codes) < n:
        codes = list(dict.fromkeys(codes + new_codes(n - len(codes))))
    return codes


async def unique_codes(n: int, held: Callable[[list[str]], Awaitable[set[str]]]) -> list[str]:
    """n codes none of which `held` (the codes among these already stored) knows, nor each other."""

    codes = distinct_codes(n)
    while True:
        clashes = await held(codes) if codes else set()
        if not clashes and len(codes) == n:
            return codes
        kept = [code for code in codes if code not in clashes]
        codes = list(dict.fromkeys(kept + new_codes(n - len(kept))))
