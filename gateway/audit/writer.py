"""Recording writes: the front's after-response hook, and the batch writer behind it.

The front calls `AuditWriter.record` once a write's answer is sent. That only appends to
an in-memory queue; a background task appends what is queued to the chain, a batch per
transaction (repository.append). Measured with `python -m bench.audit_bench`
(docs/benchmarks.md): a synchronous insert before the answer would add a transaction to
every write (median 0.7 ms on SQLite, 1.6 ms on PostgreSQL, all writes of all gateways
queueing on the chain's lock); the hook costs ~1.5 us, and a batch of 500 ~30-45 us an
entry, off the request. What this trades: entries queued but not yet written
when the process dies (at most `audit_flush_s` seconds' worth plus the batch in flight)
are lost; a clean stop writes them all (`stop`). docs/security.md says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import orjson
from starlette.types import Scope

from gateway.audit import repository
from gateway.principal import SCOPE_PRINCIPAL, Principal
from gateway.routes import Route
from gateway.settings import GatewaySettings
from shared.db.database import Database

log = logging.getLogger("gateway.audit")

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Where the front leaves a write's answer (headers, body) for the writer to find the id of
# what it created, and where the gateway's own handlers leave ids and detail (annotate).
SCOPE_ANSWER = "valuechain.audit.answer"
SCOPE_NOTE = "valuechain.audit.note"

# Column widths (gateway/audit/models.py): longer values are cut, never refused.
_ID_WIDTH = 200
_PATH_WIDTH = 2048
_PARSED_BODY = 64 * 1024  # larger answers are not parsed for a created id
_RETRY_S = 1.0


def annotate(scope: Scope, *, resources: Iterable[str] = (), **detail: Any) -> None:
    """For the gateway's own write handlers: add ids and detail to the audit entry of this
    request, e.g. `annotate(request.scope, resources=[key.id], action="rotate", role=key.role)`.
    Detail values should be text, numbers, booleans or None (they are hashed as JSON)."""

    note = scope.setdefault(SCOPE_NOTE, {"resources": [], "detail": {}})
    note["resources"].extend(resources)
    note["detail"].update(detail)


@dataclass(slots=True)
class _Pending:
    at: float
    principal: Principal
    method: str
    route: Route
    path: str
    status: int
    request_id: bytes
    correlation_id: bytes
    answer: tuple[Sequence[tuple[bytes, bytes]], bytes] | None
    note: dict[str, Any] | None


class AuditWriter:
    """Queues the entries the front records and appends them to the chain in batches."""

    def __init__(self, store: Database, *, flush_s: float, batch: int, max_pending: int, head_every: int):
        self.store = store
        self.flush_s = flush_s
        self.batch = batch
        self.max_pending = max_pending
        self.head_every = head_every
        self.dropped = 0
        self._pending: deque[_Pending] = deque()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, store: Database, settings: GatewaySettings) -> AuditWriter:
        return cls(
            store,
            flush_s=settings.audit_flush_s,
            batch=settings.audit_batch,
            max_pending=settings.audit_max_pending,
            head_every=settings.audit_head_every,
        )

    # -- the hook (on the request's task: only appends) ----------------------

    def record(
        self, scope: Scope, route: Route, path: str, status: int, request_id: bytes, correlation_id: bytes
    ) -> None:
        principal = scope.get(SCOPE_PRINCIPAL)
        if principal is None:  # not authenticated: nothing was written, and nobody to name
            return
        if len(self._pending) >= self.max_pending:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("audit log: queue full, entries dropped", extra={"fields": {"dropped": self.dropped}})
            return
        self._pending.append(
            _Pending(
                time.time(),
                principal,
                scope["method"],
                route,
                path,
                status,
                request_id,
                correlation_id,
                scope.get(SCOPE_ANSWER),
                scope.get(SCOPE_NOTE),
            )
        )
        self._wake.set()

    # -- the writer ----------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def stop(self) -> None:
        """Stop the loop and write everything still queued."""

        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.flush()
        except Exception:
            log.exception("audit log: entries lost at stop", extra={"fields": {"lost": len(self._pending)}})

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if self.flush_s:
                await asyncio.sleep(self.flush_s)  # let a batch gather
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # the database is away: keep the entries, try again
                log.exception("audit log: could not write; retrying", extra={"fields": {"queued": len(self._pending)}})
                await asyncio.sleep(_RETRY_S)
                self._wake.set()

    async def flush(self) -> None:
        """Append every queued entry to the chain now (also what tests call to see them)."""

        async with self._lock:
            while self._pending:
                batch = [self._pending.popleft() for _ in range(min(self.batch, len(self._pending)))]
                try:
                    await self._append(batch)
                except BaseException:
                    self._pending.extendleft(reversed(batch))
                    raise

    async def _append(self, batch: list[_Pending]) -> None:
        rows = [_row(pending) for pending in batch]
        async with self.store.writer() as session, session.begin():
            seq, head = await repository.append(session, rows)
        if self.head_every and seq // self.head_every > (seq - len(rows)) // self.head_every:
            # Copy these lines somewhere the database's owner cannot edit: a chain rewritten
            # from the start no longer passes through them (docs/security.md).
            log.info("audit chain head", extra={"fields": {"seq": seq, "hash": head}})


def _row(pending: _Pending) -> dict[str, Any]:
    principal = pending.principal
    resources = touched_ids(pending.route.pattern, pending.path)
    detail = None
    if pending.answer is not None:
        created = created_id(pending.status, *pending.answer)
        if created is not None:
            resources.append(created)
    if pending.note is not None:
        resources.extend(pending.note["resources"])
        detail = pending.note["detail"] or None
    return {
        "at": datetime.fromtimestamp(pending.at, UTC),
        "actor_id": principal.id,
        "actor_kind": principal.kind,
        "role": principal.role,
        "person_id": principal.person_id,
        "partner_id": principal.partner_id,
        "method": pending.method,
        "route": pending.route.pattern,
        "path": pending.path[:_PATH_WIDTH],
        "resources": list(dict.fromkeys(str(resource)[:_ID_WIDTH] for resource in resources)),
        "status": pending.status,
        "request_id": pending.request_id.decode("latin-1"),
        "correlation_id": pending.correlation_id.decode("latin-1"),
        "detail": detail,
    }


def touched_ids(pattern: str, path: str) -> list[str]:
    """The path parameters: the values of the pattern's `{name}` (and `{name:path}`) segments."""

    ids: list[str] = []
    segments = path.split("/")
    for i, part in enumerate(pattern.split("/")):
        if part.startswith("{") and i < len(segments):
            if part.endswith(":path}"):
                ids.append(unquote("/".join(segments[i:])))
                break
            ids.append(unquote(segments[i]))
    return ids


def created_id(status: int, headers: Sequence[tuple[bytes, bytes]], body: bytes) -> str | None:
    """The id a successful write's answer names: its `Location`'s last segment, else the
    `id` of its JSON object."""

    if not 200 <= status < 300:
        return None
    for name, value in headers:
        if name.lower() == b"location":
            last = value.decode("latin-1").partition("?")[0].rstrip("/").rpartition("/")[2]
            return unquote(last) or None
    if not body or len(body) > _PARSED_BODY or body[:1] != b"{":
        return None
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    value = answer.get("id")
    return str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
