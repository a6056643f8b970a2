"""Field types and request-model base shared by the services' schemas."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

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


Email = Annotated[str | None, Field(max_length=320), AfterValidator(email)]
Text = Annotated[str | None, Field(max_length=200), AfterValidator(stripped)]


class Strict(BaseModel):
    """A request body: nothing the client sends is silently dropped, unknown fields are errors."""

    model_config = ConfigDict(extra="forbid")
