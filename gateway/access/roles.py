"""The scope vocabulary and the roles that grant scopes.

Every row of the route table (gateway/routes.py) names the scope each method needs;
a caller's scopes are its role's plus the extra scopes its key was given. Scopes are
coarse on purpose (a resource and read/write): a frontend asks `GET /v1/me` once and
hides what the caller may not do. Changing a role's scopes here changes every key of
that role at once (within the key cache's TTL); a key stores its role, not its scopes.
"""

from __future__ import annotations

SCOPES: tuple[str, ...] = (
    "customers:read",
    "customers:write",
    "portfolio:read",
    "portfolio:write",
    "transactions:read",
    "transactions:write",
    "imports:write",
    "interactions:read",
    "interactions:write",
    "network:read",
    "network:write",
    "offers:read",
    "offers:write",
    "campaigns:read",
    "campaigns:write",
    # lifecycle: stages, rules, sweeps and playbooks; tickets and SLAs; the loyalty programme.
    "lifecycle:read",
    "lifecycle:write",
    "tickets:read",
    "tickets:write",
    "loyalty:read",
    "loyalty:write",
    # engage: conversations and messages, consent, surveys and feedback, communities.
    "messages:read",
    "messages:write",
    "consent:read",
    "consent:write",
    "feedback:read",
    "feedback:write",
    "communities:read",
    "communities:write",
    "communities:moderate",
    # value: customers' ideas, and the perceived value against competitors.
    "ideas:read",
    "ideas:write",
    "value_map:read",
    "value_map:write",
    # network: partner systems' webhook subscriptions (events:read is the pollable feed).
    "webhooks:read",
    "webhooks:write",
    "events:read",
    "keys:admin",
    "audit:read",
    "ops",
    "pii:read",
    "privacy:write",
)
SCOPE_SET = frozenset(SCOPES)

# Not a scope: the route marker of a `/v1` route any authenticated caller may use (`GET /v1/me`).
ANY_CALLER = "authenticated"

_READ_ALL = frozenset(s for s in SCOPES if s.endswith(":read") and s not in {"audit:read", "pii:read"})

ROLES: dict[str, frozenset[str]] = {
    # Everything, the bootstrap admin key's role.
    "admin": SCOPE_SET,
    # Runs the CRM: every business read and write, the audit log; no keys, no operations.
    "manager": _READ_ALL
    | {
        "customers:write",
        "portfolio:write",
        "transactions:write",
        "imports:write",
        "interactions:write",
        "network:write",
        "offers:write",
        "campaigns:write",
        "lifecycle:write",
        "tickets:write",
        "loyalty:write",
        "messages:write",
        "consent:write",
        "feedback:write",
        "communities:write",
        "communities:moderate",
        "ideas:write",
        "value_map:write",
        "webhooks:write",
        "audit:read",
        "pii:read",
        "privacy:write",
    },
    # Front line: looks customers up, records what happened, works tickets.
    "agent": frozenset(
        {
            "customers:read",
            "customers:write",
            "transactions:read",
            "interactions:read",
            "interactions:write",
            "offers:read",
            "lifecycle:read",
            "tickets:read",
            "tickets:write",
            "loyalty:read",
            "loyalty:write",
            "messages:read",
            "messages:write",
            "consent:read",
            "consent:write",
            "feedback:read",
            "feedback:write",
            "communities:read",
            "communities:write",
            "communities:moderate",
            "pii:read",
        }
    ),
    # Segments, offers and campaigns; reads customers but changes none.
    "marketer": frozenset(
        {
            "customers:read",
            "portfolio:read",
            "interactions:read",
            "offers:read",
            "offers:write",
            "campaigns:read",
            "campaigns:write",
            "lifecycle:read",
            "loyalty:read",
            "messages:read",
            "consent:read",
            "feedback:read",
            "communities:read",
            "ideas:read",
            "ideas:write",
            "value_map:read",
            "value_map:write",
            "events:read",
        }
    ),
    # Reads everything business-side, writes nothing, sees no personal data beyond what reads carry today.
    "analyst": _READ_ALL,
    # A partner system: its own stakeholder record, the event feed and its own webhook
    # subscriptions; nothing about customers (personal fields reach it as null).
    "partner": frozenset({"network:read", "events:read", "webhooks:read", "webhooks:write"}),
    # Dashboards and wallboards.
    "readonly": _READ_ALL - {"events:read", "webhooks:read"},
    # Runs the suite: /metrics and /v1/ops/*, no business data.
    "operator": frozenset({"ops"}),
}

ROLE_NAMES: tuple[str, ...] = tuple(ROLES)


def scopes_of(role: str, extra: frozenset[str] | tuple[str, ...] = ()) -> frozenset[str]:
    return ROLES[role] | frozenset(extra)
