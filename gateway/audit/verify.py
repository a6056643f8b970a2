"""Walking the chain: the check behind `GET /v1/audit/verify`.

Reads the entries oldest first, `CHUNK` at a time (never the whole table), and stops at
the first one that breaks the chain, saying why:

- a `seq` is missing: entries were removed (`seq` has no gaps as written);
- an entry's hash is not `sha256(prev_hash + its canonical bytes)`: it was changed in place
  (another value, or another `seq`: rows moved to another place in the chain);
- an entry's `prev_hash` is not the hash of the entry before it: the one before was changed
  and given a new hash, or rows were swapped or removed.

Removing the newest entries, or rewriting the whole chain, leaves a chain that checks out:
only a head kept elsewhere shows that (`anchor`, docs/security.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from gateway.audit import repository
from gateway.audit.chain import GENESIS, chain_hash

CHUNK = 1000


def _broken(count: int, seq: int, reason: str) -> dict[str, Any]:
    return {"ok": False, "count": count, "head": None, "broken": {"seq": seq, "reason": reason}}


async def verify_chain(
    reader: Callable[[], AbstractAsyncContextManager[Any]],
    *,
    anchor: tuple[int, str] | None = None,
    chunk: int = CHUNK,
) -> dict[str, Any]:
    """`{"ok", "count", "head": {"seq", "hash"}, "broken": {"seq", "reason"}}`; `count` is the
    number of entries that checked out. `anchor` (a seq and the hash it had) must still be
    on the chain."""

    expected, previous = 1, GENESIS
    while True:
        async with reader() as session:  # a short read per chunk: writers go on meanwhile
            rows = await repository.chunk(session, after=expected - 1, limit=chunk)
        for row in rows:
            entry = row._mapping
            seq = entry["seq"]
            count = expected - 1
            if seq != expected:
                return _broken(
                    count, expected, f"entry {expected} is missing (the next is {seq}): entries were removed"
                )
            if chain_hash(entry["prev_hash"], entry) != entry["hash"]:
                return _broken(count, seq, f"entry {seq} was changed: its fields no longer match its hash")
            if entry["prev_hash"] != previous:
                return _broken(
                    count,
                    seq,
                    f"entry {seq} does not follow entry {seq - 1}: "
                    "an entry before it was changed and rehashed, or entries were moved",
                )
            if anchor is not None and seq == anchor[0] and entry["hash"] != anchor[1]:
                return _broken(count, seq, f"entry {seq} is not the one anchored: the chain was rewritten")
            previous = entry["hash"]
            expected += 1
        if len(rows) < chunk:
            break
        await asyncio.sleep(0)  # hashing a chunk takes a few ms: let requests in between
    count = expected - 1
    if anchor is not None and anchor[0] > count:
        return _broken(
            count, anchor[0], f"entry {anchor[0]} is anchored but the chain ends at {count}: entries were removed"
        )
    head = {"seq": count, "hash": previous} if count else None
    return {"ok": True, "count": count, "head": head, "broken": None}
