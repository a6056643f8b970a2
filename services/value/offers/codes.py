"""Coupon codes: unguessable and readable.

Twelve characters from a 32-letter alphabet without the look-alikes 0/O and 1/I (60 random
bits from the OS's CSPRNG), written in groups of four: `K7QM-3ZPA-W9XE`. Guessing one
issued code among a million takes about 10^12 tries on average; the `offers` table's
unique key catches the rare clash (the issue is retried with new codes).
"""

from __future__ import annotations

import base64
import secrets

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
_FROM_BASE32 = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", ALPHABET.encode())
LENGTH = 12


def new_codes(n: int) -> list[str]:
    """n fresh codes, made in one pass (a million in well under a second)."""

    if n <= 0:
        return []
    # 15 random bytes are 24 base32 letters: two codes.
    pairs = (n + 1) // 2
    letters = base64.b32encode(secrets.token_bytes(15 * pairs)).translate(_FROM_BASE32).decode()
    codes = []
    for start in range(0, LENGTH * n, LENGTH):
        code = letters[start : start + LENGTH]
        codes.append(f"{code[:4]}-{code[4:8]}-{code[8:]}")
    return codes


def normalized(code: str) -> str:
    """A code as a customer may type it (lower case, spaces, no dashes) in its stored form."""

    raw = "".join(ch for ch in code.upper() if ch.isalnum())
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}" if len(raw) == LENGTH else code.strip().upper()
