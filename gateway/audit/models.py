"""The audit log's tables in the gateway's database.

`audit_entries` is the chain: one row per recorded write, `seq` 1, 2, 3 ... with no gaps
(the writer numbers entries under the chain's lock), `hash` linking each row to the one
before (gateway/audit/chain.py). `audit_resources` is an index, not part of the chain:
one row per id an entry touched, so `GET /v1/audit?resource=` is an indexed lookup on
both databases instead of a scan of JSON text.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from gateway.store import Base
from shared.db.database import UTCDateTime

_Seq = BigInteger().with_variant(Integer(), "sqlite")


class AuditEntry(Base):
    __tablename__ = "audit_entries"

    seq: Mapped[int] = mapped_column(_Seq, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Who: the principal (gateway/principal.py) and the employee it is linked to.
    actor_id: Mapped[str] = mapped_column(String(200))
    actor_kind: Mapped[str] = mapped_column(String(16))
    role: Mapped[str] = mapped_column(String(32))
    person_id: Mapped[str | None] = mapped_column(String(200))
    partner_id: Mapped[str | None] = mapped_column(String(200))
    # What: the route pattern, the path as sent, and the ids it touched.
    method: Mapped[str] = mapped_column(String(8))
    route: Mapped[str] = mapped_column(String(200))
    path: Mapped[str] = mapped_column(String(2048))
    resources: Mapped[list[str]] = mapped_column(JSON)
    status: Mapped[int] = mapped_column(SmallInteger)
    request_id: Mapped[str] = mapped_column(String(128))
    correlation_id: Mapped[str] = mapped_column(String(128))
    # What the gateway's own handler added (gateway.audit.writer.annotate): a key's name and role ...
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # sha256(prev_hash + canonical bytes): prev_hash is the entry before's hash, kept so
    # that verify can tell an entry changed in place from one that no longer follows its
    # predecessor.
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_audit_entries_actor_id_seq", "actor_id", "seq"),
        Index("ix_audit_entries_person_id_seq", "person_id", "seq"),
        Index("ix_audit_entries_at", "at"),
    )


class AuditResource(Base):
    __tablename__ = "audit_resources"

    resource_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    seq: Mapped[int] = mapped_column(_Seq, primary_key=True)
