"""`GET /v1/audit` (the entries, newest first, filtered) and `GET /v1/audit/verify` (the chain
checked). Read-only: no route changes or removes an entry.

Who may read: the front lets only an authenticated caller through to the gateway's own
/v1 routes and (with the route table's scopes) checks `audit:read`; these handlers check
it again, so the log stays closed whatever the front's table says.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime, BaseModel, Field

from gateway.audit import repository
from gateway.audit.verify import verify_chain
from gateway.deps import Caller, InsufficientScope, Store
from gateway.principal import Principal
from shared.http.errors import field_error
from shared.http.pagination import INTEGER, Page, PageParams, page_params

AUDIT_READ = "audit:read"


async def auditor(principal: Caller) -> Principal:
    if not principal.allows(AUDIT_READ):
        raise InsufficientScope(f"reading the audit log needs the scope {AUDIT_READ}")
    return principal


Auditor = Annotated[Principal, Depends(auditor)]
PagingBySeq = Annotated[PageParams[tuple[int]], Depends(page_params(INTEGER))]


class AuditEntryOut(BaseModel):
    seq: int = Field(description="Place in the chain: 1, 2, 3 ... without gaps")
    at: datetime = Field(description="When the gateway answered (UTC, to the microsecond)")
    actor_id: str = Field(description="Key id, `jwt:<sub>`, or `bootstrap-admin`")
    actor_kind: str = Field(description="`key`, `jwt` or `bootstrap`")
    role: str
    person_id: str | None = Field(description="The employee stakeholder the caller is linked to")
    partner_id: str | None = Field(description="A partner key's partner")
    method: str
    route: str = Field(description="The route table's pattern")
    path: str
    resources: list[str] = Field(description="Ids touched: the path's parameters, and the id of what was created")
    status: int = Field(description="The answer's status: failed writes are recorded too")
    request_id: str
    correlation_id: str
    detail: dict[str, Any] | None = Field(description="What the gateway's own handler added (key changes)")
    prev_hash: str
    hash: str = Field(description="sha256(prev_hash + the entry's canonical bytes), hex")


class AuditPage(Page[AuditEntryOut]):
    pass


class ChainHead(BaseModel):
    seq: int
    hash: str


class ChainBreak(BaseModel):
    seq: int = Field(description="The first entry that does not check out")
    reason: str


class ChainCheck(BaseModel):
    ok: bool
    count: int = Field(description="Entries that checked out (all of them when ok)")
    head: ChainHead | None = Field(description="The newest entry when ok: keep it elsewhere (docs/security.md)")
    broken: ChainBreak | None


router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get("", response_model=AuditPage, summary="The audit log: every write through the gateway, newest first")
async def list_entries(
    _caller: Auditor,
    database: Store,
    page: PagingBySeq,
    actor: Annotated[str | None, Query(description="Only this principal's (key id, `jwt:<sub>`) or person's")] = None,
    resource: Annotated[str | None, Query(description="Only entries that touched this id")] = None,
    since: Annotated[AwareDatetime | None, Query(alias="from", description="At or after (inclusive)")] = None,
    until: Annotated[AwareDatetime | None, Query(alias="to", description="Before (exclusive)")] = None,
) -> dict[str, Any]:
    """Entries newest first, every filter optional; `from` and `to` need a time zone, and
    `from` after `to` is 422."""
    if since is not None and until is not None and since > until:
        raise field_error("query.to", "to must be after from")
    async with database.reader() as session:
        rows = await repository.entries(
            session, actor=actor, resource=resource, since=since, until=until, before=page.after_value, limit=page.fetch
        )
    return page.of(rows, lambda row: (row.seq,), lambda row: dict(row._mapping))


@router.get("/verify", response_model=ChainCheck, summary="Check the audit log's hash chain")
async def verify(
    _caller: Auditor,
    database: Store,
    anchor_seq: Annotated[int | None, Query(ge=1, description="A seq whose hash you kept")] = None,
    anchor_hash: Annotated[
        str | None, Query(pattern="^[0-9a-f]{64}$", description="The hash entry `anchor_seq` had")
    ] = None,
) -> dict[str, Any]:
    """Walks the chain oldest first, in chunks. `ok` with the count and the head, or the first
    broken entry and why. With `anchor_seq` and `anchor_hash` (a head answered or logged
    earlier), the chain must still pass through it: that shows a rewrite of the whole chain."""
    if (anchor_seq is None) != (anchor_hash is None):
        missing = "query.anchor_hash" if anchor_hash is None else "query.anchor_seq"
        raise field_error(missing, "anchor_seq and anchor_hash go together")
    anchor = (anchor_seq, anchor_hash) if anchor_seq is not None and anchor_hash is not None else None
    return await verify_chain(database.reader, anchor=anchor)
