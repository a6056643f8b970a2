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
from typing import Annotated

import email_validator
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

_BIDI = "\u200e\u200f\u202a-\u202e\u2066-\u2069"
# One pass of a compiled character class: a few hundred ns for a 200-character name.
NOT_IN_A_LINE = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}]")
NOT_IN_TEXT = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}]")  # a multi-line text: \t and \n allowed


def _refused(found: re.Match) -> str:
    char = found.group()
    if char == "\x00":
        what = "a NUL character"
    elif unicodedata.category(char) == "Cc":
        what = "a control character"
    else:
        what = "a bidirectional formatting character"
    return f"must not contain {what} (U+{ord(char):04X} at position {found.start()})"


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


# The id of a row the client names (a customer_id): not trimmed, it is looked up as it is;
# PostgreSQL cannot even compare a text holding a NUL (that was a 500).
Id = Annotated[str, AfterValidator(single_line)]
Email = Annotated[str | None, Field(max_length=320), AfterValidator(email)]
Text = Annotated[str | None, Field(max_length=200), AfterValidator(stripped)]


class Strict(BaseModel):
    """A request body: nothing the client sends is silently dropped, unknown fields are errors."""

    model_config = ConfigDict(extra="forbid")
