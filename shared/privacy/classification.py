"""The personal-data marks on columns, tables and event payload fields.

A column: `mapped_column(String(320), info=personal("email"))`. A payload field:
`email: Annotated[str | None, Personal("email")] = None` (public schemas show it as
`"x-personal": "email"`, and a personal field is nullable: deliveries to a key without
`pii:read`, and events about an erased customer, carry it as null). A table whose rows
belong to a customer: `info=about_customers("why we keep it")` in its `__table_args__`
(the customer column, by default `customer_id`; `via=` for rows tied to a customer
through a parent table, as refunds through their transaction).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic.fields import FieldInfo
from sqlalchemy import Table

Kind = Literal["name", "email", "phone", "address", "free_text", "identifier"]
KINDS: tuple[str, ...] = ("name", "email", "phone", "address", "free_text", "identifier")

COLUMN_KEY = "personal"  # Column.info[COLUMN_KEY] = kind
SCHEMA_KEY = "x-personal"  # a payload field's JSON schema: {"x-personal": kind}
TABLE_KEY = "customer_data"  # Table.info[TABLE_KEY] = CustomerLink

# What a personal text column that may not be NULL holds once erased.
ERASED = "[erased]"


def personal(kind: Kind) -> dict[str, Any]:
    """`info=` for a column holding personal data of `kind`."""

    assert kind in KINDS, kind
    return {COLUMN_KEY: kind}


def Personal(kind: Kind) -> FieldInfo:
    """A payload field's mark: `Annotated[str | None, Personal("email")]`."""

    assert kind in KINDS, kind
    info: FieldInfo = Field(json_schema_extra={SCHEMA_KEY: kind})
    return info


@dataclass(frozen=True)
class CustomerLink:
    """How a table's rows belong to a customer, and why the service keeps them.

    `column` names the customer (or, with `via=(parent table, its customer column)`,
    the parent row's id, e.g. a refund's `transaction_id`). Erasure `anonymise`s the
    personal columns (NULL, or ERASED when the column may not be NULL), keeping the
    row's other facts; `delete` removes rows that are nothing but personal data.
    """

    purpose: str
    column: str = "customer_id"
    via: tuple[str, str] | None = None
    erase: Literal["anonymise", "delete"] = "anonymise"


def about_customers(
    purpose: str,
    *,
    column: str = "customer_id",
    via: tuple[str, str] | None = None,
    erase: Literal["anonymise", "delete"] = "anonymise",
) -> dict[str, Any]:
    """A table's `info`: its rows belong to a customer (`column`), kept for `purpose`."""

    return {TABLE_KEY: CustomerLink(purpose, column, via, erase)}


def customer_link(table: Table) -> CustomerLink | None:
    link: CustomerLink | None = table.info.get(TABLE_KEY)
    return link


def personal_columns(table: Table) -> dict[str, str]:
    """{column name: kind} of the table's columns marked personal."""

    return {column.name: column.info[COLUMN_KEY] for column in table.columns if COLUMN_KEY in column.info}


def personal_fields(model: type[BaseModel]) -> dict[str, str]:
    """{field name: kind} of a payload model's fields marked personal."""

    found = {}
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra
        if isinstance(extra, dict) and SCHEMA_KEY in extra:
            found[name] = str(extra[SCHEMA_KEY])
    return found
