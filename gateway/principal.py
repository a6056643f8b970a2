"""Who is calling: the principal the front resolves from a key or a JWT, for every /v1 request.

The front (gateway/proxy.py) puts it in the ASGI scope under `SCOPE_PRINCIPAL`; the
gateway's own handlers, the rate limiter and the audit log read it from there, and the
services learn it from the `x-valuechain-*` headers the front forwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SCOPE_PRINCIPAL = "valuechain.principal"


@dataclass(frozen=True, slots=True)
class Principal:
    # The key's id (`key_...`), `jwt:<sub>`, or `bootstrap-admin` for the admin key of var/admin-api-key.
    id: str
    kind: Literal["key", "jwt", "bootstrap"]
    role: str
    scopes: frozenset[str]
    # A partner key's partner (a network stakeholder id): it sees only that partner's resources.
    partner_id: str | None = None
    # The employee stakeholder a key or JWT subject is linked to ("my queue", the audit log).
    person_id: str | None = None
    # The event-type patterns a key is limited to in webhooks and the feed; None: every public type.
    event_types: tuple[str, ...] | None = None

    def allows(self, scope: str) -> bool:
        return scope in self.scopes


BOOTSTRAP_ADMIN_ID = "bootstrap-admin"
