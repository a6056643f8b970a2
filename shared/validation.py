"""Field types and request-model base shared by the services' schemas."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_extra_types.currency_code import Currency as _Currency

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
