"""Field types and request-model base shared by the services' schemas.

Every client text field goes through one of these, so what they refuse is refused
everywhere: NUL and the other control characters (C0, DEL, C1; a multi-line text keeps
its line feeds and tabs), and the bidirectional formatting characters that make a name
display as something else (the embeddings and overrides U+202A–U+202E, the isolates
U+2066–U+2069 and the marks U+200E/U+200F: "Trojan Source").
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, overload

import email_validator
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_extra_types.currency_code import Currency as _Currency

_BIDI = "\u200e\u200f\u202a-\u202e\u2066-\u2069"
# One pass of a compiled character class: a few hundred ns for a 200-character name.
NOT_IN_A_LINE = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}]")
NOT_IN_TEXT = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}]")  # a multi-line text: \t and \n allowed


def _refused(found: re.Match[str]) -> str:
    char = found.group()
    if char == "\x00":
        what = "a NUL character"
    elif unicodedata.category(char) == "Cc":
        what = "a control character"
    else:
        what = "a bidirectional formatting character"
    return f"must not contain {what} (U+{ord(char):04X} at position {found.start()})"


@overload
def single_line(value: str) -> str: ...
@overload
def single_line(value: None) -> None: ...
def single_line(value: str | None) -> str | None:
    """Refuses control and bidirectional formatting characters (a name, an id, an email)."""

    if value is not None and (found := NOT_IN_A_LINE.search(value)):
        raise ValueError(_refused(found))
    return value


def stripped(value: str | None) -> str | None:
    """Trimmed single-line text that must not be blank."""

    if value is None:
        return None
    value = single_line(value).strip()
    if not value:
        raise ValueError("must not be blank")
    return value


def stripped_text(value: str | None) -> str | None:
    """Trimmed text that may hold several lines (line feeds and tabs) and must not be blank."""

    if value is None:
        return None
    if found := NOT_IN_TEXT.search(value):
        raise ValueError(_refused(found))
    value = value.strip()
    if not value:
        raise ValueError("must not be blank")
    return value


def email(value: str | None) -> str | None:
    """An address by email-validator's syntax rules (no DNS lookup: it checks the form,
    not that mail is delivered), stored as the client wrote it, trimmed. Not pydantic's
    EmailStr: it also takes `Ada <ada@example.com>` and normalises what it keeps."""

    value = stripped(value)
    if value is None:
        return None
    try:
        email_validator.validate_email(value, check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        raise ValueError(f"not a valid email address: {exc}") from None
    return value


def _not_a_number(value: object) -> object:
    # pydantic reads a number as seconds since 1970 (0 is 1970-01-01): the schema says text.
    if isinstance(value, (int, float)):
        raise ValueError("a date or time as text (e.g. 2024-05-01T10:00:00Z), not a number")
    return value


# For date and date-time fields of request bodies: `Annotated[datetime, AsText]`.
AsText = BeforeValidator(_not_a_number)

# The rules above, stated in the JSON Schema too (the validators stay the rule; these tell clients).
# Python's whitespace (str.strip, re's \s), spelled out: JSON Schema's \s is ECMAScript's,
# which differs (it lacks \x1c-\x1f and \x85, and has \ufeff).
_WS = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_SCHEMA_BIDI = r"\u200e\u200f\u202a-\u202e\u2066-\u2069"
_LINE_REFUSED = r"\x00-\x1f\x7f-\x9f" + _SCHEMA_BIDI  # NOT_IN_A_LINE
_TEXT_REFUSED = r"\x00-\x08\x0b-\x1f\x7f-\x9f" + _SCHEMA_BIDI  # NOT_IN_TEXT
NOT_BLANK = f"^[^{_LINE_REFUSED}]*[^{_WS}{_LINE_REFUSED}][^{_LINE_REFUSED}]*$"
NOT_BLANK_TEXT = f"^[^{_TEXT_REFUSED}]*[^{_WS}{_TEXT_REFUSED}][^{_TEXT_REFUSED}]*$"
NOT_BLANK_SCHEMA = {"json_schema_extra": {"pattern": NOT_BLANK}}  # Field(..., **NOT_BLANK_SCHEMA)
NOT_BLANK_TEXT_SCHEMA = {"json_schema_extra": {"pattern": NOT_BLANK_TEXT}}  # several lines

# The id of a row the client names (a customer_id): not trimmed, it is looked up as it is;
# PostgreSQL cannot even compare a text holding a NUL (that was a 500).
Id = Annotated[str, Field(json_schema_extra={"pattern": f"^[^{_LINE_REFUSED}]*$"}), AfterValidator(single_line)]
Email = Annotated[str | None, Field(max_length=320, json_schema_extra={"format": "email"}), AfterValidator(email)]
Text = Annotated[str | None, Field(max_length=200, **NOT_BLANK_SCHEMA), AfterValidator(stripped)]


class Strict(BaseModel):
    """A request body: nothing the client sends is silently dropped, unknown fields are errors."""

    model_config = ConfigDict(extra="forbid")


# ISO 4217 through pydantic-extra-types (backed by pycountry's maintained list), without the
# codes that are no money to sell in: XXX (no currency), XTS (testing), metals and bond units.
# Lower case is accepted and normalised to upper case.
Currency = _Currency
CURRENCIES: frozenset[str] = frozenset(_Currency.allowed_currencies)


def currency_code(value: str) -> str:
    """A currency code from outside a pydantic model (an import's form option, a file's column)."""

    code = value.strip().upper()
    if code not in CURRENCIES:
        raise ValueError(f"{value!r} is not an ISO 4217 currency code (e.g. USD, EUR)")
    return code
