"""Reading an import file: CSV (any delimiter, or whitespace-separated) or NDJSON, a
column mapping, and each row turned into a transaction or a reason to reject it.

A row becomes an `ImportedTransaction` held to exactly the rules of
`POST /v1/transactions`: a row whose fields have the plain shape those rules accept
as they are (the usual case) is read with plain Python, any other goes through the
API's own model (`TransactionCreate`), which accepts it or says what is wrong. Its
`customer_id` is filled in later from `customer_external_id`. A row without an `external_id` gets
one derived from its content (see `derived_external_id`), which makes re-running
the same file record nothing twice.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple, cast

import orjson
from pydantic import ValidationError

from services.identify.settings import bounds_message, date_bounds
from services.identify.transactions.schemas import TransactionCreate
from shared.http.validation import CURRENCIES, single_line

OUR_COLUMNS = ("customer_external_id", "occurred_at", "amount", "currency", "external_id", "margin", "cost")
REQUIRED = ("customer_external_id", "occurred_at", "amount")
FORMATS = ("csv", "ndjson")
WHITESPACE = "whitespace"
# A rejected row keeps this much of its text, for the operator to find it.
RAW_KEPT = 500
DATES_CACHED = 100_000
# What TransactionCreate takes as it is: at most 14 digits before the point and 4
# after it; three ASCII letters.
_PLAIN_DECIMAL = re.compile(r"-?[0-9]{1,14}(?:\.[0-9]{1,4})?")


class OptionsError(ValueError):
    """The import's options or the file's header do not fit together (a 422 at upload)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


class OutOfBounds(ValueError):
    """A date outside the bounds the API holds occurred_at to (see portfolio.settings)."""


@dataclass
class ImportOptions:
    file_format: str = "csv"
    # The file's column → ours; columns already named like ours need no entry.
    mapping: dict[str, str] = field(default_factory=dict)
    delimiter: str | None = None  # None: guessed from the header line
    # The names of the columns of a file without a header row.
    columns: list[str] | None = None
    date_format: str | None = None  # strptime format; else ISO 8601 or YYYYMMDD
    currency: str | None = None  # for rows without a currency


@dataclass(slots=True)
class ImportedTransaction:
    """A row's transaction, valid by TransactionCreate's rules (see transactions.NewTransaction)."""

    customer_id: str
    amount: Decimal
    currency: str
    occurred_at: datetime
    external_id: str | None = None
    margin: Decimal | None = None
    cost: Decimal | None = None


@dataclass(slots=True)
class Row:
    """One data row: `item` to record, or `reason` it was rejected."""

    line: int
    raw: str
    customer_external_id: str | None = None
    item: ImportedTransaction | None = None
    reason: str | None = None


def _plain_decimal(value: object) -> Decimal | None:
    return Decimal(value) if isinstance(value, str) and _PLAIN_DECIMAL.fullmatch(value) else None


def plain_item(values: dict[str, object]) -> ImportedTransaction | None:
    """The row's transaction when each field has a shape TransactionCreate accepts
    unchanged (and what it would make of it); None leaves the row to the model.
    `occurred_at` is already an aware datetime (parse_occurred_at)."""

    amount = _plain_decimal(values["amount"])
    currency = values["currency"]
    if amount is None or amount < 0 or not (isinstance(currency, str) and currency.upper() in CURRENCIES):
        return None
    margin = cost = None
    if "margin" in values and ((margin := _plain_decimal(values["margin"])) is None or not 0 <= margin <= amount):
        return None
    if "cost" in values and ((cost := _plain_decimal(values["cost"])) is None or cost < 0):
        return None
    external_id = values.get("external_id")
    if external_id is not None:
        if not isinstance(external_id, str) or len(external_id) > 200 or not external_id.strip():
            return None
        external_id = external_id.strip()
    occurred_at = cast(datetime, values["occurred_at"])  # parse_occurred_at's
    return ImportedTransaction("", amount, currency.upper(), occurred_at, external_id, margin, cost)


class Header(NamedTuple):
    delimiter: str
    positions: dict[str, int] | None  # our column → index; None for NDJSON
    ignored: list[str]  # the file's columns that are neither ours nor mapped
    width: int = 0  # how many columns every row has (the header's)


def check_mapping(mapping: object) -> dict[str, str]:
    if not isinstance(mapping, dict):
        raise OptionsError("mapping", "must be a JSON object renaming the file's columns to ours")
    targets: dict[str, str] = {}
    for source, target in mapping.items():
        if not isinstance(target, str) or target not in OUR_COLUMNS:
            raise OptionsError(
                "mapping", f"column {source!r} maps to {target!r}, which is not one of {', '.join(OUR_COLUMNS)}"
            )
        if target in targets:
            raise OptionsError("mapping", f"columns {targets[target]!r} and {source!r} both map to {target!r}")
        targets[target] = source
    return dict(mapping)


def guess_format(filename: str | None, head: bytes) -> str:
    name = (filename or "").lower()
    if name.endswith((".ndjson", ".jsonl")):
        return "ndjson"
    if name.endswith((".csv", ".tsv", ".txt")):
        return "csv"
    return "ndjson" if head.lstrip().startswith(b"{") else "csv"


def _guess_delimiter(line: str) -> str:
    for candidate in (",", "\t", ";", "|"):
        if candidate in line:
            return candidate
    return WHITESPACE


def _split(line: str, delimiter: str) -> list[str]:
    if delimiter == WHITESPACE:
        return line.split()
    return next(csv.reader([line], delimiter=delimiter))


def _positions(header: list[str], mapping: dict[str, str]) -> dict[str, int]:
    """Our column → its index in the file's rows; refuses a header that lacks one we need."""

    names = header
    for source in mapping:
        if source not in names:
            raise OptionsError("mapping", f"the file has no column {source!r}; its columns are {', '.join(names)}")
    positions = {}
    for index, name in enumerate(names):
        ours = mapping.get(name, name if name in OUR_COLUMNS and name not in mapping.values() else None)
        if ours is not None:
            positions[ours] = index
    missing = [column for column in REQUIRED if column not in positions]
    if missing:
        raise OptionsError(
            "mapping",
            f"no column for {', '.join(missing)}: the file's columns are {', '.join(names)}; "
            "name them in the header or map them with `mapping`",
        )
    return positions


def parse_occurred_at(value: object, date_format: str | None) -> datetime:
    """ISO 8601 date (00:00 UTC) or date-time (UTC when it names no zone), or YYYYMMDD."""

    text = str(value).strip()
    if date_format:
        parsed = datetime.strptime(text, date_format)  # noqa: DTZ007 - a zoneless value is made UTC on return
    elif len(text) == 8 and text.isdigit():
        parsed = datetime(int(text[:4]), int(text[4:6]), int(text[6:]))  # noqa: DTZ001 - made UTC on return
    elif len(text) == 10:
        parsed = datetime.combine(date.fromisoformat(text), datetime.min.time())
    else:
        parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


_NOT_UTF8 = re.compile("[\udc80-\udcff]")


def not_utf8(line: str) -> str | None:
    """Why a line read with surrogateescape is not UTF-8 text, or None when it is."""

    found = _NOT_UTF8.search(line)
    if found is None:
        return None
    byte = ord(found.group()) - 0xDC00
    return f"not UTF-8 text: byte 0x{byte:02X} at character {found.start() + 1}; save the file as UTF-8"


def _as_text(line: str) -> str:
    """The line with each byte that is not UTF-8 shown as U+FFFD (it can be stored)."""

    return line.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _ids_problem(customer: str, values: dict[str, object]) -> str | None:
    for name, value in (("customer_external_id", customer), ("external_id", values.get("external_id"))):
        if isinstance(value, str):
            try:
                single_line(value)
            except ValueError as exc:
                return f"{name} {exc}"
    return None


class _Memo:
    """make(key), worked out once per distinct key. Holding DATES_CACHED keys, it
    forgets them all: a file of distinct timestamps keeps memory flat."""

    def __init__(self, make: Callable):
        self._make = make
        self._made: dict = {}

    def __call__(self, key):
        value = self._made.get(key)
        if value is None:
            if len(self._made) >= DATES_CACHED:
                self._made.clear()
            value = self._made[key] = self._make(key)
        return value


class Reader:
    """Iterates a spooled file's rows; `header()` checks the options against it first."""

    def __init__(self, path: Path, options: ImportOptions):
        self.path = path
        self.options = options
        self._occurrences: dict[str, int] = {}
        # A file repeats its dates: each distinct one is parsed and written out once.
        self._parsed_date = _Memo(lambda text: self._bounded(parse_occurred_at(text, options.date_format)))
        self._utc_text = _Memo(lambda at: at.astimezone(UTC).isoformat())
        # The dates POST /v1/transactions takes, as of the start of the import.
        self._floor, self._latest = date_bounds()
        self._out_of_bounds = bounds_message(self._floor, self._latest)

    def _occurred_at(self, value: object) -> datetime:
        if isinstance(value, str):
            return self._parsed_date(value)  # checked against the bounds once per distinct text
        return self._bounded(parse_occurred_at(value, self.options.date_format))

    def _bounded(self, at: datetime) -> datetime:
        if not self._floor <= at <= self._latest:
            raise OutOfBounds(self._out_of_bounds)
        return at

    # -- the file's shape ------------------------------------------------------

    def _lines(self) -> Iterator[tuple[int, str]]:
        # A byte that is not UTF-8 becomes a lone surrogate (U+DC80–U+DCFF), which no
        # UTF-8 text decodes to: its line is rejected (see not_utf8), not the file.
        with open(self.path, encoding="utf-8-sig", errors="surrogateescape", newline="") as file:
            for number, line in enumerate(file, start=1):
                line = line.rstrip("\r\n")
                if line.strip():
                    yield number, line

    def header(self) -> Header:
        """How to read the rows; refuses options that do not fit the file's header."""

        options = self.options
        if options.file_format == "ndjson":
            return Header("", None, [])
        first = next(self._lines(), None)
        if first is None:
            raise OptionsError("file", "the file has no rows")
        if reason := not_utf8(first[1]):
            raise OptionsError("file", f"line {first[0]}, the header: {reason}")
        delimiter = options.delimiter or _guess_delimiter(first[1])
        names = [name.strip() for name in (options.columns or _split(first[1], delimiter))]
        positions = _positions(names, options.mapping)
        used = set(positions.values())
        ignored = [name for index, name in enumerate(names) if index not in used]
        return Header(delimiter, positions, ignored, len(names))

    # -- rows ---------------------------------------------------------------------

    def rows(self) -> Iterator[Row]:
        delimiter, positions, _, width = self.header()
        lines = self._lines()
        if positions is None:
            yield from (self._ndjson_row(number, line) for number, line in lines)
            return
        if not self.options.columns:
            next(lines)  # the header row
        for number, line in lines:
            # A printable line (the usual case, one quick test) holds no byte that is not
            # UTF-8 (see not_utf8), no control and no bidi character.
            printable = line.isprintable()
            if not printable and (reason := not_utf8(line)):
                yield Row(number, _as_text(line)[:RAW_KEPT], reason=reason)
                continue
            try:
                cells = _split(line, delimiter)
            except csv.Error as exc:
                yield Row(number, line[:RAW_KEPT], reason=f"unreadable CSV row: {exc}")
                continue
            if len(cells) != width:
                yield Row(
                    number, line[:RAW_KEPT], reason=f"expected {width} columns as in the header, found {len(cells)}"
                )
                continue
            yield self._row(number, line, {ours: cells[index] for ours, index in positions.items()}, not printable)

    def _ndjson_row(self, number: int, line: str) -> Row:
        if not line.isprintable() and (reason := not_utf8(line)):
            return Row(number, _as_text(line)[:RAW_KEPT], reason=reason)
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            return Row(number, line[:RAW_KEPT], reason="not a JSON object")
        if not isinstance(record, dict):
            return Row(number, line[:RAW_KEPT], reason="not a JSON object")
        mapping = self.options.mapping
        values = {mapping.get(key, key): value for key, value in record.items()}
        # JSON escapes (\u0000) hide control characters from the line: always check the ids.
        return self._row(number, line, {key: value for key, value in values.items() if key in OUR_COLUMNS}, True)

    def _row(self, number: int, line: str, values: dict[str, object], check_ids: bool) -> Row:
        raw = line[:RAW_KEPT]
        values = {key: value for key, value in values.items() if value is not None and value != ""}
        missing = [column for column in REQUIRED if column not in values]
        if missing:
            return Row(number, raw, reason=f"missing {', '.join(missing)}")
        customer = str(values.pop("customer_external_id")).strip()
        if not customer or len(customer) > 200:
            return Row(number, raw, reason="customer_external_id must be 1 to 200 characters")
        if check_ids and (reason := _ids_problem(customer, values)):
            return Row(number, raw, reason=reason)
        try:
            values["occurred_at"] = self._occurred_at(values["occurred_at"])
        except OutOfBounds as exc:
            return Row(number, raw, reason=f"occurred_at {values['occurred_at']!r} {exc}")
        except (ValueError, TypeError):
            expected = self.options.date_format or "ISO 8601 or YYYYMMDD"
            return Row(number, raw, reason=f"occurred_at {values['occurred_at']!r} is not a date ({expected})")
        if "currency" not in values:
            if not self.options.currency:
                return Row(number, raw, reason="no currency: add a currency column or give the `currency` default")
            values["currency"] = self.options.currency
        for key in ("amount", "margin", "cost"):
            if key in values and not isinstance(values[key], str):
                values[key] = str(values[key])  # JSON numbers keep their digits as decimals
        item = plain_item(values)
        if item is None:
            try:
                item = ImportedTransaction(**TransactionCreate.model_validate({"customer_id": "", **values}).__dict__)
            except ValidationError as exc:
                reasons = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in exc.errors())
                return Row(number, raw, reason=reasons)
        if item.external_id is None:
            item.external_id = self.derived_external_id(customer, item)
        return Row(number, raw, customer, item)

    def derived_external_id(self, customer_external_id: str, item: ImportedTransaction) -> str:
        """`import:` + sha256 of `customer_external_id|occurred_at|amount|n`, where
        occurred_at is ISO 8601 in UTC, amount has no trailing zeros and n counts the
        rows of this file with the same three values (1 for the first): identical lines
        stay distinct purchases, and the same file imported again derives the same ids."""

        at_text = self._utc_text(item.occurred_at)
        key = "|".join((customer_external_id, at_text, format(item.amount.normalize(), "f")))
        occurrence = self._occurrences[key] = self._occurrences.get(key, 0) + 1
        return "import:" + hashlib.sha256(f"{key}|{occurrence}".encode()).hexdigest()[:40]
