"""Exports as CSV or NDJSON, written row by row from keyset-paged reads: memory stays
one chunk however many rows there are.

CSV cells that a spreadsheet would read as a formula (a leading =, +, -, @, tab or
carriage return) get a leading single quote, as OWASP advises against CSV injection.
That is done here, on export only: the stored value is the one the client sent. Numbers
(amounts, scores) are written as numbers: `-3.5` is a negative amount, not a formula.
NDJSON is JSON, read by programs, and is written as is.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from services.identify.money.schemas import decimal_text

FORMATS = ("csv", "ndjson")
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "ndjson": "application/x-ndjson"}
CHUNK_ROWS = 1000

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(cell: str) -> str:
    """A text cell a spreadsheet will not run as a formula."""

    return "'" + cell if cell.startswith(_FORMULA_STARTS) else cell


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return neutralise(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, (list, tuple)):
        return neutralise(";".join(str(item) for item in value))
    return str(value)


def _json_value(value: Any) -> Any:
    return decimal_text(value) if isinstance(value, Decimal) else value


def csv_lines(columns: Sequence[str], rows: list[dict], *, header: bool) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if header:
        writer.writerow(columns)
    writer.writerows([_csv_cell(row[column]) for column in columns] for row in rows)
    return out.getvalue().encode()


def ndjson_lines(columns: Sequence[str], rows: list[dict]) -> bytes:
    return b"".join(orjson.dumps({column: _json_value(row[column]) for column in columns}) + b"\n" for row in rows)


async def stream_rows(
    file_format: str,
    columns: Sequence[str],
    next_chunk: Callable[[Any], Awaitable[tuple[list[dict], Any]]],
) -> AsyncIterator[bytes]:
    """Encoded lines, one chunk at a time. `next_chunk(position)` answers (rows, the
    position after them), an empty list at the end; the first call gets None."""

    position = None
    if file_format == "csv":
        yield csv_lines(columns, [], header=True)
    while True:
        rows, position = await next_chunk(position)
        if not rows:
            return
        yield csv_lines(columns, rows, header=False) if file_format == "csv" else ndjson_lines(columns, rows)


def content_disposition(stem: str, file_format: str, at: datetime) -> str:
    return f'attachment; filename="{stem}-{at.strftime("%Y%m%dT%H%M%SZ")}.{file_format}"'
