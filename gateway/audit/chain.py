"""The chain hash: what makes an edited, removed or reordered audit entry visible.

Each entry's hash is `sha256(previous entry's hash + canonical bytes of the entry)`, the
first entry's previous hash being `GENESIS`. The canonical bytes are the entry's stored
fields (every column but the two hashes, `seq` included) as JSON with sorted keys, no spaces and
UTF-8 text, the time as UTC to the microsecond (`2026-12-05T04:31:55.123456Z`, what both
SQLite and PostgreSQL keep). The same function hashes an entry when it is written and
when `GET /v1/audit/verify` reads it back, so a row changed in place (another value, or
another `seq`) no longer matches its hash, and a row removed or moved breaks the link of
the entry after it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import RowMapping

GENESIS = "0" * 64

# The fields an entry's hash covers, in the order the table declares them.
FIELDS = (
    "seq",
    "at",
    "actor_id",
    "actor_kind",
    "role",
    "person_id",
    "partner_id",
    "method",
    "route",
    "path",
    "resources",
    "status",
    "request_id",
    "correlation_id",
    "detail",
)


def canonical_time(at: datetime) -> str:
    if at.tzinfo is None:  # read back from SQLite, which keeps no zone: stored as UTC
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_bytes(entry: Mapping[str, Any] | RowMapping) -> bytes:
    fields = {name: entry[name] for name in FIELDS}
    fields["at"] = canonical_time(fields["at"])
    # OPT_SORT_KEYS sorts nested objects (`detail`) too; orjson writes no spaces and raw UTF-8.
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)


def chain_hash(previous: str, entry: Mapping[str, Any] | RowMapping) -> str:
    return hashlib.sha256(previous.encode("ascii") + canonical_bytes(entry)).hexdigest()
