"""Match keys: the canonical forms under which two records of one person compare equal.

The keys are stored on each customer (indexed) so duplicate candidates are found
by exact lookups; see docs/identity-resolution.md for the rules and their limits.
"""

from __future__ import annotations

import re
import unicodedata

import phonenumbers

from shared.settings import IdentifySettings, current_settings

# Providers known to ignore dots in the local part (and to deliver name+tag@ to name@).
_DOTLESS_DOMAINS = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}


def email_match_key(email: str | None) -> str | None:
    """Trimmed and lower-cased; a `+tag` dropped for every domain; dots in the local
    part dropped and googlemail.com read as gmail.com for Google's addresses."""

    if not email:
        return None
    email = email.strip().lower()
    local, at, domain = email.rpartition("@")
    if not at or not local or not domain:
        return email or None
    local = local.split("+", 1)[0] or local
    if domain in _DOTLESS_DOMAINS:
        domain = _DOTLESS_DOMAINS[domain]
        local = local.replace(".", "") or local
    return f"{local}@{domain}"


def phone_key(phone: str | None, default_region: str | None = None) -> str | None:
    """The number in E.164 (`+14155552671`), or None when it is not a valid number.

    A number without a country code is read in `default_region` (by default identify's
    VALUECHAIN_IDENTIFY_DEFAULT_REGION); a leading `00` is read as the international
    prefix `+` (the convention of most countries).
    """

    if not phone or not phone.strip():
        return None
    default_region = default_region or current_settings(IdentifySettings).default_region
    text = phone.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


_NOT_WORD = re.compile(r"[^\w\s]+")


def name_tokens(name: str | None) -> list[str]:
    """Accents folded (NFKD), lower-cased, punctuation removed, sorted."""

    if not name:
        return []
    decomposed = unicodedata.normalize("NFKD", name)
    folded = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()
    return sorted(_NOT_WORD.sub("", folded).split())


def name_key(name: str | None) -> str | None:
    """The sorted tokens joined by one space: "Lovelace, Ada" and "ada lovelace" meet."""

    tokens = name_tokens(name)
    return " ".join(tokens)[:200] if tokens else None


def match_keys(*, email: str | None, phone: str | None, name: str | None) -> dict[str, str | None]:
    """The three keys of a customer, by the column names they are stored under."""

    return {"email_match_key": email_match_key(email), "phone_key": phone_key(phone), "name_key": name_key(name)}


def edit_distance(a: str, b: str, limit: int) -> int:
    """Levenshtein distance, or `limit + 1` as soon as it must exceed `limit`."""

    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        if min(current) > limit:
            return limit + 1
        previous = current
    return min(previous[-1], limit + 1)
