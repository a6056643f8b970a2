"""From an `Authorization` header to a Principal, on the hot path of every /v1 request.

The work does not depend on why a credential fails. Whatever the header holds (nothing,
another scheme, a malformed token, an unknown, expired or revoked key), its token (or
the empty string) is hashed with SHA-256, the hash is compared with the bootstrap admin
key's in constant time, and then looked up: in an in-process cache first, in the
gateway's database on a miss. The answer, a principal or "no", is cached under the hash
for `key_cache_ttl_s` (5 s by default), so a repeated bad token costs what a good one
costs, and no request can tell from the 401 or its timing which reason it was. (A dict
lookup by a SHA-256 of the token leaks nothing an attacker could use: finding a hash
prefix tells nothing about a token that hashes to it.)

The cache is what keeps the hot path cheap: a hit is one hash and one dict lookup. It is
also the bound on revocation: a key revoked (or rotated out) through one gateway process
is dropped from that process's cache at once and is refused by every other process within
`key_cache_ttl_s`, when their entry runs out. An entry never outlives the key's expiry or
a rotated secret's end: both are checked on every hit.

`last_used_at` is kept in memory (key id -> time) and written in one batch every
`key_last_used_flush_s` and at shutdown, not per request.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from datetime import UTC, datetime

from gateway.access import keys
from gateway.access.jwt import JwtVerifier
from gateway.access.roles import SCOPE_SET
from gateway.principal import BOOTSTRAP_ADMIN_ID, Principal
from shared.db.database import Database
from shared.db.uow import transaction

log = logging.getLogger("gateway.access")

BOOTSTRAP_ADMIN = Principal(BOOTSTRAP_ADMIN_ID, "bootstrap", "admin", SCOPE_SET)
# Entries beyond this are dropped all at once: a flood of random tokens cannot grow the cache without bound.
MAX_CACHED = 50_000


class AccessResolver:
    def __init__(
        self,
        admin_key: str,
        *,
        cache_ttl_s: float,
        flush_s: float,
        jwt: JwtVerifier | None = None,
    ):
        if not admin_key:
            raise ValueError("the admin API key must not be empty")
        self._admin_digest = hashlib.sha256(admin_key.encode("utf-8")).digest()
        self.ttl = cache_ttl_s
        self.flush_s = flush_s
        self.jwt = jwt
        self.store: Database | None = None  # opened by the app's lifespan
        # sha256 digest -> (principal or None, monotonic time the entry ends, wall-clock end of the credential).
        self._cache: dict[bytes, tuple[Principal | None, float, float]] = {}
        self._used: dict[str, float] = {}
        self._flusher: asyncio.Task[None] | None = None

    async def authenticate(self, header: bytes | None) -> Principal | None:
        token = b""
        if header:
            scheme, _, rest = header.partition(b" ")
            if scheme.lower() == b"bearer":
                token = rest.strip()
        digest = hashlib.sha256(token).digest()
        if hmac.compare_digest(digest, self._admin_digest):
            return BOOTSTRAP_ADMIN
        entry = self._cache.get(digest)
        if entry is None or entry[1] <= time.monotonic():
            entry = await self._load(token, digest)
        principal, _, valid_until = entry
        if principal is None or valid_until <= time.time():
            return None
        if principal.kind == "key":
            self._used[principal.id] = time.time()
        return principal

    async def _load(self, token: bytes, digest: bytes) -> tuple[Principal | None, float, float]:
        resolved: keys.Resolved | None = None
        if self.jwt is not None and JwtVerifier.looks_like_jwt(token):
            resolved = await self.jwt.verify(token.decode("latin-1"))
        elif self.store is not None:
            async with self.store.reader() as session:
                resolved = await keys.resolve(session, digest.hex())
        if len(self._cache) >= MAX_CACHED:
            self._cache.clear()
        if resolved is None:
            entry: tuple[Principal | None, float, float] = (None, time.monotonic() + self.ttl, 0.0)
        else:
            end = resolved.valid_until.timestamp() if resolved.valid_until is not None else float("inf")
            entry = (resolved.principal, time.monotonic() + self.ttl, end)
        self._cache[digest] = entry
        return entry

    def forget(self) -> None:
        """Drop every cached answer: a key changed through this process (revoked, rotated)."""

        self._cache.clear()

    def last_used(self, key_id: str) -> datetime | None:
        """A use not yet written to the database."""

        at = self._used.get(key_id)
        return datetime.fromtimestamp(at, UTC) if at is not None else None

    # -- last_used_at, in batches -------------------------------------------

    def start(self, store: Database) -> None:
        self.store = store
        self._flusher = asyncio.create_task(self._flush_loop(), name="api-key-last-used")

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            try:
                await self._flusher
            except asyncio.CancelledError:
                pass
            self._flusher = None
        await self.flush()
        self.store = None

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_s)
            try:
                await self.flush()
            except Exception:  # a failed batch is retried with the next one
                log.exception("could not record API key use")

    async def flush(self) -> None:
        if not self._used or self.store is None:
            return
        batch, self._used = self._used, {}
        try:
            async with transaction(self.store.writer) as session:
                await keys.record_use(session, {k: datetime.fromtimestamp(t, UTC) for k, t in batch.items()})
        except BaseException:
            for key_id, at in batch.items():  # keep them for the next batch, unless newer ones came
                self._used.setdefault(key_id, at)
            raise
