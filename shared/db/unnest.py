"""Many rows of one INSERT as one statement on PostgreSQL, with one array parameter per column.

An executemany is one execution per row on the server: asyncpg pipelines the rows in one
round trip, but PostgreSQL still binds, starts and ends an executor for each, and the client
encodes a message per row. A consumer's batch of fifty events wrote its timeline as fifty
executions. `INSERT INTO t (a, b) SELECT * FROM unnest($1::A[], $2::B[])` writes the same
rows, in the same order, in one execution, with one prepared statement for any number of
rows.

`plan(sql)` reads the INSERT … VALUES SQLAlchemy compiles for asyncpg, every value a cast
placeholder (`$1::VARCHAR`) in column order; anything else (an expression among the values,
a parameter after them, a column that is itself an array) has no plan and goes as an
executemany. The rewrite keeps each row's meaning with one exception, which `Plan.fits`
checks: ON CONFLICT DO UPDATE may not touch one row twice in one statement, so rows whose
conflict keys repeat go as an executemany. (DO NOTHING has no such limit: the second row
conflicts with the first and is skipped, as it would be one execution later.)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

_INSERT = re.compile(
    r"INSERT INTO (?P<table>[^\s(]+) \((?P<columns>[^()]+)\) VALUES \((?P<values>.+?)\)"
    r"(?P<rest>(?: ON CONFLICT .*)?)",
    re.S,
)
_VALUE = re.compile(r"\$(\d+)::([^$\[\]]+?)(?:, (?=\$)|$)")
_CONFLICT_TARGET = re.compile(r" ON CONFLICT \(([^()]+)\) DO UPDATE ")


@dataclass(frozen=True)
class Plan:
    sql: str
    conflict_keys: tuple[int, ...] | None  # positions of a DO UPDATE's conflict target

    def fits(self, rows: Sequence[Sequence[Any]]) -> bool:
        if self.conflict_keys is None:
            return True
        keys = self.conflict_keys
        return len({tuple(row[i] for i in keys) for row in rows}) == len(rows)

    @staticmethod
    def arrays(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
        return [list(column) for column in zip(*rows, strict=True)]


@lru_cache(maxsize=512)
def plan(sql: str) -> Plan | None:
    """The one-statement form of an INSERT … VALUES executemany, or None where it has none."""

    insert = _INSERT.fullmatch(sql)
    if insert is None or "$" in insert["rest"]:
        return None
    columns = [name.strip() for name in insert["columns"].split(",")]
    values = insert["values"]
    casts: list[str] = []
    end = 0
    for match in _VALUE.finditer(values):
        if match.start() != end or int(match[1]) != len(casts) + 1:
            return None
        casts.append(match[2])
        end = match.end()
    if end != len(values) or len(casts) != len(columns):
        return None
    conflict_keys = None
    if " DO UPDATE " in insert["rest"]:
        target = _CONFLICT_TARGET.match(insert["rest"])
        if target is None:  # ON CONFLICT ON CONSTRAINT …: the columns are not named here
            return None
        names = [name.strip() for name in target[1].split(",")]
        if not set(names) <= set(columns):
            return None
        conflict_keys = tuple(columns.index(name) for name in names)
    arrays = ", ".join(f"${n}::{cast}[]" for n, cast in enumerate(casts, 1))
    unnest_sql = f"INSERT INTO {insert['table']} ({insert['columns']}) SELECT * FROM unnest({arrays}){insert['rest']}"
    return Plan(unnest_sql, conflict_keys)


def one_statement(sql: str, rows: Sequence[Sequence[Any]]) -> Plan | None:
    """The plan to write these rows of `sql` (an executemany of them) in one statement, or None
    where they go row by row: one row, no plan, or rows a DO UPDATE would touch twice."""

    found = plan(sql) if len(rows) > 1 else None
    return found if found is not None and found.fits(rows) else None
