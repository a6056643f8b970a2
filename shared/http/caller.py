"""Who a request comes from, as the gateway names it to the services.

The gateway resolves the API key or JWT and forwards the caller in `x-valuechain-actor`,
`x-valuechain-role`, `x-valuechain-partner` (a partner key's partner stakeholder id) and
`x-valuechain-person` (the linked employee stakeholder), `x-valuechain-pii: 1` (the
caller holds `pii:read`: events it receives keep their personal fields) and
`x-valuechain-event-types` (the event-type patterns its key is limited to, space-separated;
absent: every public type), percent-encoded; it drops any
`x-valuechain-*` header a client sent. A service trusts them because only the gateway
reaches it (the internal secret of docs/security.md).

A route a partner may reach narrows what it answers to `caller.partner_id`; a request
with the role `partner` but no partner id (which the gateway never sends) sees nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import unquote

from fastapi import Depends, Request

from shared.events.public import allowed_types
from shared.http.errors import AppError


@dataclass(frozen=True, slots=True)
class Caller:
    actor: str | None
    role: str | None
    partner_id: str | None
    person_id: str | None
    pii: bool = False
    # The event types the key may see (webhooks, the feed); None: every public type.
    event_types: frozenset[str] | None = None

    @property
    def partner_only(self) -> bool:
        """True when answers must be narrowed to `partner_id`'s own resources."""
        return self.role == "partner" or self.partner_id is not None

    def may_see(self, event_type: str) -> bool:
        """Whether events of `event_type` may reach this caller (its key's allowed types)."""
        return self.event_types is None or event_type in self.event_types


class TypeNotAllowed(AppError):
    """403 event_type_not_allowed: event types outside the key's allowed ones (the feed, webhooks)."""

    status_code = 403
    error = "event_type_not_allowed"


NO_PARTNER = ""  # matches no id: a partner caller without a partner sees nothing


def _header(request: Request, name: str) -> str | None:
    value = request.headers.get(name)
    return unquote(value) if value else None


async def caller(request: Request) -> Caller:
    role = _header(request, "x-valuechain-role")
    partner = _header(request, "x-valuechain-partner")
    if role == "partner" and partner is None:
        partner = NO_PARTNER
    return Caller(
        actor=_header(request, "x-valuechain-actor"),
        role=role,
        partner_id=partner,
        person_id=_header(request, "x-valuechain-person"),
        pii=request.headers.get("x-valuechain-pii") == "1",
        event_types=_event_types(_header(request, "x-valuechain-event-types")),
    )


def _event_types(header: str | None) -> frozenset[str] | None:
    # A key limited to patterns that match nothing today sees nothing (not everything).
    return None if header is None else allowed_types(tuple(sorted(set(header.split()))))


CallerDep = Annotated[Caller, Depends(caller)]
