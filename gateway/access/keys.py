"""API keys: the tables, the token format, and creating, rotating and revoking keys.

A key's token is `vc_` followed by 43 characters of `secrets.token_urlsafe(32)` (256
random bits). Only its SHA-256 is stored. A slow password hash (bcrypt, argon2) guards
low-entropy secrets that people choose; against a 256-bit random token a brute force
is hopeless whatever the hash, and a salted slow hash would cost milliseconds on every
request and make the hash unusable as a lookup key. The visible `prefix` (the first
8 characters after `vc_`) tells keys apart in lists and logs; it is not secret.

A key has one or more secrets (`api_key_secrets`): rotation adds a new one and gives
the old ones an end (`expires_at`), so both work during the overlap.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import ForeignKey, Index, String, Text, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from gateway.access.roles import ROLES, scopes_of
from gateway.principal import Principal
from gateway.store import Base
from shared.db.database import InlineSession, UTCDateTime, utcnow
from shared.db.ids import uuid7

TOKEN_PREFIX = "vc_"
VISIBLE_CHARS = 8


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # key_<uuid7>: ordered by creation
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(40))
    # Space-separated extra scopes (beyond the role's).
    scopes: Mapped[str] = mapped_column(Text, default="")
    partner_id: Mapped[str | None] = mapped_column(String(64))
    person_id: Mapped[str | None] = mapped_column(String(64))
    # Space-separated event-type patterns the key may see in webhooks and the feed
    # (shared/events/public.py); NULL: every public type.
    event_types: Mapped[str | None] = mapped_column(Text)
    prefix: Mapped[str] = mapped_column(String(16))  # of the newest secret
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ApiKeySecret(Base):
    """One token of a key, by its hash; `expires_at` is set when a rotation replaced it."""

    __tablename__ = "api_key_secrets"
    __table_args__ = (Index("ix_api_key_secrets_key_id", "key_id"),)

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the token
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


def token_hash(token: bytes) -> str:
    return hashlib.sha256(token).hexdigest()


def new_token() -> tuple[str, str, str]:
    """(token, its hash, its visible prefix)."""

    body = secrets.token_urlsafe(32)
    token = TOKEN_PREFIX + body
    return token, token_hash(token.encode("ascii")), body[:VISIBLE_CHARS]


def extra_scopes(key: ApiKey) -> list[str]:
    return key.scopes.split() if key.scopes else []


def event_types(key: ApiKey) -> list[str] | None:
    return key.event_types.split() if key.event_types is not None else None


@dataclass(frozen=True, slots=True)
class Resolved:
    """What a token resolves to: the principal, and until when it may be used (None: no end)."""

    principal: Principal
    valid_until: datetime | None


async def resolve(session: AsyncSession | InlineSession, digest: str) -> Resolved | None:
    """The key a token hash belongs to, when it is neither revoked nor expired (one indexed read)."""

    row = (
        await session.execute(
            select(ApiKey, ApiKeySecret.expires_at)
            .join(ApiKeySecret, ApiKeySecret.key_id == ApiKey.id)
            .where(ApiKeySecret.hash == digest)
        )
    ).first()
    if row is None:
        return None
    key, secret_end = cast(tuple[ApiKey, datetime | None], tuple(row))
    if key.revoked_at is not None or key.role not in ROLES:  # a role since taken out of roles.py grants nothing
        return None
    ends = [end for end in (key.expires_at, secret_end) if end is not None]
    valid_until = min(ends) if ends else None
    if valid_until is not None and valid_until <= utcnow():
        return None
    principal = Principal(
        id=key.id,
        kind="key",
        role=key.role,
        scopes=scopes_of(key.role, tuple(extra_scopes(key))),
        partner_id=key.partner_id,
        person_id=key.person_id,
        event_types=tuple(key.event_types.split()) if key.event_types is not None else None,
    )
    return Resolved(principal, valid_until)


async def create(
    session: AsyncSession,
    *,
    name: str,
    role: str,
    scopes: list[str],
    expires_at: datetime | None,
    partner_id: str | None,
    person_id: str | None,
    event_types: list[str] | None = None,
) -> tuple[ApiKey, str]:
    token, digest, prefix = new_token()
    key = ApiKey(
        id=f"key_{uuid7()}",
        name=name,
        role=role,
        scopes=" ".join(sorted(set(scopes))),
        partner_id=partner_id,
        person_id=person_id,
        event_types=" ".join(sorted(set(event_types))) if event_types is not None else None,
        prefix=prefix,
        created_at=utcnow(),
        expires_at=expires_at,
    )
    session.add(key)
    await session.flush()  # the key row before its secret (the foreign key)
    session.add(ApiKeySecret(hash=digest, key_id=key.id, created_at=key.created_at))
    await session.flush()
    return key, token


async def get(session: AsyncSession | InlineSession, key_id: str) -> ApiKey | None:
    return (await session.execute(select(ApiKey).where(ApiKey.id == key_id))).scalar_one_or_none()


async def list_keys(session: AsyncSession | InlineSession, *, after_id: str | None, limit: int) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.id).limit(limit)
    if after_id is not None:
        query = query.where(ApiKey.id > after_id)
    return list((await session.execute(query)).scalars())


async def rotate(session: AsyncSession, key: ApiKey, *, overlap: timedelta) -> str:
    """A new secret for `key`; every older one ends after `overlap` (sooner if it ended sooner)."""

    now = utcnow()
    end = now + overlap
    for secret in (await session.execute(select(ApiKeySecret).where(ApiKeySecret.key_id == key.id))).scalars():
        if secret.expires_at is None or secret.expires_at > end:
            secret.expires_at = end
    token, digest, prefix = new_token()
    session.add(ApiKeySecret(hash=digest, key_id=key.id, created_at=now))
    key.prefix = prefix
    await session.flush()
    return token


async def revoke(session: AsyncSession, key: ApiKey) -> None:
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        await session.flush()


async def record_use(session: AsyncSession, used: dict[str, datetime]) -> None:
    """Write a batch of last-use times (key id -> time); a later time never goes back."""

    for key_id, at in used.items():
        await session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id, (ApiKey.last_used_at.is_(None)) | (ApiKey.last_used_at < at))
            .values(last_used_at=at)
        )
