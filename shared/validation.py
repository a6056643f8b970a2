"""Field types and request-model base shared by the services' schemas."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def email(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not EMAIL.match(value):
        raise ValueError("not a valid email address")
    return value


def stripped(value: str | None) -> str | None:
    """Trimmed text that must not be blank."""

    if value is None:
        return None
    value = value.strip()
    if not value:
        raise ValueError("must not be blank")
    return value


def _not_a_number(value):
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
NOT_BLANK = f"[^{_WS}]"
EMAIL_PATTERN = f"^[{_WS}]*[^@{_WS}]+@[^@{_WS}]+\\.[^@{_WS}]+[{_WS}]*$"
NOT_BLANK_SCHEMA = {"json_schema_extra": {"pattern": NOT_BLANK}}  # Field(..., **NOT_BLANK_SCHEMA)

Email = Annotated[
    str | None, Field(max_length=320, json_schema_extra={"pattern": EMAIL_PATTERN}), AfterValidator(email)
]
Text = Annotated[str | None, Field(max_length=200, **NOT_BLANK_SCHEMA), AfterValidator(stripped)]


class Strict(BaseModel):
    """A request body: nothing the client sends is silently dropped, unknown fields are errors."""

    model_config = ConfigDict(extra="forbid")
