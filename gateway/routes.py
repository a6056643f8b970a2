"""The route table: which `/v1` method + path goes to which service.

This is the gateway's allow-list. A request whose path is not in it gets 404,
a known path with another method gets 405; nothing falls through to a service.
Each line names exactly the methods the service serves on that path: the 405's
`Allow` header is made from them, so a method it lists must work (a test holds
the table and the services' routes equal, method by method).

To expose a new operation, add a line to `ROUTES`, naming the scope each method
needs (gateway/access/roles.py): `read=` for GET, `write=` for every other method,
or `scope=` for all of them; `scope=ANY_CALLER` for any authenticated caller, and
`public=True` for a route that needs no key at all (a customer's signed link):

    r("GET POST", "/v1/things", "identify", read="things:read", write="things:write"),
    r("GET", "/v1/things/{id}", "identify", read="things:read"),
    r("GET", "/v1/reports/{rest:path}", "value", scope="reports:read"),   # a whole subtree (see below)

A row that leaves a method without a scope, or names a scope that is not in the
vocabulary, fails at import (and a test walks every row).

Patterns are literal segments and `{name}` placeholders (exactly one non-empty
path segment); a final `{name:path}` matches one or more remaining segments.
The path is forwarded unchanged unless `upstream=` gives the service-side path.
`service=None` marks the gateway's own handlers (served by the FastAPI app).
Literal segments win over placeholders, as in Starlette. A subtree route
cannot say which methods each path under it takes, so its 405s would advertise
methods that then fail: ROUTES lists every operation instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypedDict
from urllib.parse import unquote

from gateway.access.roles import ANY_CALLER, SCOPE_SET
from gateway.settings import SERVICES


@dataclass(frozen=True, slots=True)
class Route:
    methods: frozenset[str]
    pattern: str
    service: str | None
    # Service-side path when it differs from the gateway path (static routes only).
    upstream: str | None = None
    # Label for metrics and logs; the pattern unless given.
    name: str = ""
    # The answer is passed on chunk by chunk as it arrives (exports), not buffered whole.
    stream: bool = False
    upstream_bytes: bytes | None = field(default=None, compare=False, repr=False)
    # The scope each method needs (ANY_CALLER: any authenticated caller); empty when public.
    scopes: Mapping[str, str] = field(default_factory=dict, compare=False)
    # No key needed: customers' signed links (their signature is the service's to check).
    public: bool = False
    # This route's request body limit when it differs from max_request_body_bytes (read whole,
    # like any body: inbound email's raw messages with their attachments).
    max_body: int | None = None
    # This route's answer may take longer than request_timeout_s (a campaign's launch over a
    # million customers): its own limit, in seconds.
    timeout_s: float | None = None

    @property
    def local(self) -> bool:
        return self.service is None


def r(
    methods: str,
    pattern: str,
    service: str | None,
    *,
    read: str | None = None,
    write: str | None = None,
    scope: str | None = None,
    public: bool = False,
    upstream: str | None = None,
    stream: bool = False,
    max_body: int | None = None,
    timeout_s: float | None = None,
) -> Route:
    method_set = frozenset(methods.split())
    scopes: dict[str, str] = {}
    if public:
        if read or write or scope:
            raise ValueError(f"a public route needs no scope: {pattern}")
    else:
        for method in method_set:
            needed = scope or (read if method == "GET" else write)
            if needed is None:
                raise ValueError(f"{method} {pattern} names no scope (read=, write=, scope= or public=True)")
            if needed not in SCOPE_SET and needed != ANY_CALLER:
                raise ValueError(f"{method} {pattern}: unknown scope {needed!r}")
            scopes[method] = needed
    return Route(
        methods=method_set,
        pattern=pattern,
        service=service,
        upstream=upstream,
        name=pattern,
        stream=stream,
        upstream_bytes=upstream.encode("ascii") if upstream else None,
        scopes=MappingProxyType(scopes),
        public=public,
        max_body=max_body,
        timeout_s=timeout_s,
    )


class ReadWrite(TypedDict):
    read: str
    write: str


def rw(resource: str) -> ReadWrite:
    """The scopes of most rows: reads need `<resource>:read`, writes `<resource>:write`."""
    return {"read": f"{resource}:read", "write": f"{resource}:write"}


CUSTOMERS = rw("customers")
PORTFOLIO = rw("portfolio")
TRANSACTIONS = rw("transactions")
INTERACTIONS = rw("interactions")
NETWORK = rw("network")
WEBHOOKS = rw("webhooks")
OFFERS = rw("offers")
CONSENT = rw("consent")
VALUE_MAP = rw("value_map")
IDEAS = rw("ideas")
COMMUNITIES = rw("communities")
MESSAGES = rw("messages")
MIB = 1024 * 1024
CAMPAIGNS = rw("campaigns")
FEEDBACK = rw("feedback")
TICKETS = rw("tickets")


ROUTES: tuple[Route, ...] = (
    # identify: customers, transactions, imports, portfolio, duplicates
    r("GET POST", "/v1/customers", "identify", **CUSTOMERS),
    r("GET PATCH", "/v1/customers/{id}", "identify", **CUSTOMERS),
    r("GET", "/v1/customers/export", "identify", **CUSTOMERS, stream=True),
    r("GET", "/v1/customers/{id}/transactions", "identify", **TRANSACTIONS),
    r("GET PUT", "/v1/customers/{id}/costs", "identify", **PORTFOLIO),
    r("GET", "/v1/customers/{id}/duplicates", "identify", **CUSTOMERS),
    r("POST", "/v1/customers/{id}/merge", "identify", **CUSTOMERS),
    r("GET POST", "/v1/transactions", "identify", **TRANSACTIONS),
    r("POST", "/v1/transactions:batch", "identify", **TRANSACTIONS),
    r("POST", "/v1/transactions/{id}/refund", "identify", **TRANSACTIONS),
    r("POST", "/v1/transactions/{id}/void", "identify", **TRANSACTIONS),
    r("GET", "/v1/transactions/{id}/refunds", "identify", **TRANSACTIONS),
    r("GET PUT", "/v1/fx-rates", "identify", **TRANSACTIONS),
    r("GET", "/v1/transactions/export", "identify", **TRANSACTIONS, stream=True),
    # An import's progress and errors are its importer's: no separate read scope.
    r("GET POST", "/v1/imports", "identify", scope="imports:write"),
    r("GET", "/v1/imports/{id}", "identify", scope="imports:write"),
    r("GET", "/v1/imports/{id}/errors", "identify", scope="imports:write"),
    r("GET POST", "/v1/portfolio/refits", "identify", **PORTFOLIO),
    r("GET", "/v1/portfolio/refits/{id}", "identify", **PORTFOLIO),
    r("GET", "/v1/portfolio/model", "identify", **PORTFOLIO),
    r("GET", "/v1/portfolio/segments", "identify", **PORTFOLIO),
    r("GET", "/v1/portfolio/pareto", "identify", **PORTFOLIO),
    r("GET", "/v1/portfolio/significant", "identify", **PORTFOLIO),
    # GDPR: erasure (Art. 17) and its report
    r("POST", "/v1/customers/{id}/erasure", "identify", scope="privacy:write"),
    r("GET", "/v1/erasures/{id}", "identify", scope="privacy:write"),
    # lifecycle
    r("GET", "/v1/customers/{id}/lifecycle", "lifecycle", **CUSTOMERS),
    r("GET", "/v1/lifecycle/customers", "lifecycle", **CUSTOMERS),
    # lifecycle: loyalty
    r("GET PUT", "/v1/loyalty/programme", "lifecycle", read="loyalty:read", write="loyalty:write"),
    r("POST", "/v1/loyalty/sweeps", "lifecycle", scope="loyalty:write"),
    r("GET", "/v1/customers/{id}/loyalty", "lifecycle", scope="loyalty:read"),
    r("POST", "/v1/customers/{id}/loyalty/redemptions", "lifecycle", scope="loyalty:write"),
    # lifecycle: analytics
    r("GET", "/v1/lifecycle/cohorts", "lifecycle", read="lifecycle:read"),
    r("GET", "/v1/lifecycle/survival", "lifecycle", read="lifecycle:read"),
    r("GET", "/v1/lifecycle/funnel", "lifecycle", read="lifecycle:read"),
    # lifecycle: tickets
    r("GET POST", "/v1/tickets", "lifecycle", **TICKETS),
    r("GET PATCH", "/v1/tickets/{id}", "lifecycle", **TICKETS),
    r("GET POST", "/v1/tickets/{id}/comments", "lifecycle", **TICKETS),
    r("GET", "/v1/tickets/{id}/history", "lifecycle", **TICKETS),
    r("GET", "/v1/customers/{id}/tickets", "lifecycle", **TICKETS),
    r("GET POST", "/v1/sla-policies", "lifecycle", **TICKETS),
    r("GET PUT", "/v1/sla-policies/{id}", "lifecycle", **TICKETS),
    r("GET POST", "/v1/business-calendars", "lifecycle", **TICKETS),
    r("GET", "/v1/business-calendars/{id}", "lifecycle", **TICKETS),
    # lifecycle: playbooks (their results are value's measurement: /v1/playbooks/{id}/results, below)
    r("GET POST", "/v1/playbooks", "lifecycle", **rw("lifecycle")),
    r("GET PATCH", "/v1/playbooks/{id}", "lifecycle", **rw("lifecycle")),
    r("GET", "/v1/playbooks/{id}/entries", "lifecycle", **rw("lifecycle")),
    r("GET", "/v1/customers/{id}/playbooks", "lifecycle", read="lifecycle:read"),
    # lifecycle: stages (rules, sweeps, churn risk)
    r("GET PUT", "/v1/lifecycle/rules", "lifecycle", read="lifecycle:read", write="lifecycle:write"),
    r("GET", "/v1/lifecycle/rules/versions", "lifecycle", read="lifecycle:read"),
    r("GET POST", "/v1/lifecycle/sweeps", "lifecycle", read="lifecycle:read", write="lifecycle:write"),
    r("GET", "/v1/lifecycle/at-risk", "lifecycle", read="lifecycle:read"),
    # engage
    r("GET POST", "/v1/interactions", "engage", **INTERACTIONS),
    r("GET", "/v1/interactions/{id}", "engage", **INTERACTIONS),
    r("GET", "/v1/customers/{id}/timeline", "engage", **INTERACTIONS),
    # engage: conversations, messages and inbound email
    r("GET POST", "/v1/conversations", "engage", **MESSAGES),
    r("GET PATCH", "/v1/conversations/{id}", "engage", **MESSAGES),
    r("GET POST", "/v1/conversations/{id}/messages", "engage", **MESSAGES),
    r("GET", "/v1/customers/{id}/conversations", "engage", **MESSAGES),
    r("POST", "/v1/messages", "engage", **MESSAGES),
    r("GET", "/v1/messages/{id}", "engage", **MESSAGES),
    r("POST", "/v1/messages/{id}/link", "engage", **MESSAGES),
    r("GET", "/v1/messages/{id}/attachments/{attachment_id}", "engage", **MESSAGES),
    # A mail provider's inbound webhook (its own key with messages:write): raw messages with
    # their attachments, up to 25 MiB.
    r("POST", "/v1/channels/email/inbound", "engage", scope="messages:write", max_body=25 * MIB),
    r("GET", "/v1/channels/email/unmatched", "engage", **MESSAGES),
    # engage: outbound mail and templates
    r("POST", "/v1/emails", "engage", scope="messages:write"),
    r("GET", "/v1/emails/{id}", "engage", scope="messages:read"),
    r("GET POST", "/v1/templates", "engage", read="messages:read", write="messages:write"),
    r("GET", "/v1/templates/fields", "engage", scope="messages:read"),
    r("GET PUT DELETE", "/v1/templates/{id}", "engage", read="messages:read", write="messages:write"),
    # engage: consent, preferences and unsubscribe links
    r("GET POST", "/v1/customers/{id}/consent", "engage", **CONSENT),
    r("POST", "/v1/consent:batch", "engage", **CONSENT),
    r("GET POST", "/v1/unsubscribe/{token}", "engage", public=True),
    # engage: surveys, feedback and experience data
    r("GET POST", "/v1/surveys", "engage", **FEEDBACK),
    r("GET PATCH", "/v1/surveys/{id}", "engage", **FEEDBACK),
    r("POST", "/v1/surveys/{id}/send", "engage", **FEEDBACK),
    r("GET POST", "/v1/surveys/{id}/responses", "engage", **FEEDBACK),
    r("GET", "/v1/customers/{id}/feedback", "engage", **FEEDBACK),
    r("GET", "/v1/feedback/report", "engage", **FEEDBACK),
    # A customer's signed link (services/engage/feedback: one answer per link).
    r("GET POST", "/v1/feedback/{token}", "engage", public=True),
    # engage: communities
    r("GET POST", "/v1/communities", "engage", **COMMUNITIES),
    r("GET", "/v1/communities/{id}", "engage", **COMMUNITIES),
    r("GET POST", "/v1/communities/{id}/members", "engage", **COMMUNITIES),
    r("DELETE", "/v1/communities/{id}/members/{customer_id}", "engage", **COMMUNITIES),
    r("GET POST", "/v1/communities/{id}/posts", "engage", **COMMUNITIES),
    r("GET", "/v1/communities/{id}/posts/{post_id}", "engage", **COMMUNITIES),
    r("GET POST", "/v1/communities/{id}/posts/{post_id}/replies", "engage", **COMMUNITIES),
    r("POST", "/v1/communities/{id}/posts/{post_id}/helpful", "engage", **COMMUNITIES),
    r("DELETE", "/v1/communities/{id}/posts/{post_id}/helpful/{customer_id}", "engage", **COMMUNITIES),
    r("POST", "/v1/communities/{id}/posts/{post_id}/hide", "engage", scope="communities:moderate"),
    r("POST", "/v1/communities/{id}/posts/{post_id}/unhide", "engage", scope="communities:moderate"),
    r("POST", "/v1/communities/{id}/posts/{post_id}/lock", "engage", scope="communities:moderate"),
    r("POST", "/v1/communities/{id}/posts/{post_id}/unlock", "engage", scope="communities:moderate"),
    r("GET", "/v1/communities/{id}/hidden-posts", "engage", scope="communities:moderate"),
    r("GET", "/v1/customers/{id}/communities", "engage", **COMMUNITIES),
    # network. A partner key sees only its own stakeholder record (network reads
    # x-valuechain-partner); who referred whom is about customers, not partners.
    r("GET POST", "/v1/stakeholders", "network", **NETWORK),
    r("GET PATCH", "/v1/stakeholders/{id}", "network", **NETWORK),
    # network: stakeholders. A partner key sees only its own stakeholder's customers,
    # relations and performance row (network narrows them to x-valuechain-partner).
    r("GET", "/v1/stakeholders/performance", "network", **NETWORK),
    r("GET", "/v1/stakeholders/{id}/customers", "network", **NETWORK),
    r("GET POST", "/v1/customers/{id}/relations", "network", **NETWORK),
    r("DELETE", "/v1/customers/{id}/relations/{relation_id}", "network", **NETWORK),
    r("GET", "/v1/customers/{id}/network", "network", **NETWORK),
    # network: referrals. Who referred whom is about customers (customers:read); the
    # programme's terms are network's (a partner key may read them: nothing in them is a partner's).
    r("GET", "/v1/customers/{id}/referrals", "network", **CUSTOMERS),
    r("GET", "/v1/referrals", "network", read="customers:read"),
    r("GET PUT", "/v1/referral-programme", "network", **NETWORK),
    # network: the event feed (services/network/feed), and the gateway's own public schemas of
    # the events (gateway/schemas.py): documentation a partner's validator fetches from an
    # event's `dataschema`, no key needed (the same text as docs/events.md).
    r("GET", "/v1/events", "network", scope="events:read"),
    r("GET", "/v1/schemas", None, public=True),
    r("GET", "/v1/schemas/{type}/{version}", None, public=True),
    # network: webhooks. A partner key sees and manages only its own subscriptions
    # (network reads x-valuechain-partner); x-valuechain-pii decides what they deliver.
    r("GET POST", "/v1/webhooks", "network", **WEBHOOKS),
    r("GET PATCH DELETE", "/v1/webhooks/{id}", "network", **WEBHOOKS),
    r("POST", "/v1/webhooks/{id}/rotate-secret", "network", scope="webhooks:write"),
    r("GET", "/v1/webhooks/{id}/deliveries", "network", scope="webhooks:read"),
    r("POST", "/v1/webhooks/{id}/deliveries/{delivery_id}/retry", "network", scope="webhooks:write"),
    r("POST", "/v1/webhooks/{id}/replay", "network", scope="webhooks:write"),
    # value
    r("GET POST", "/v1/offers", "value", **OFFERS),
    r("GET", "/v1/offers/{id}", "value", **OFFERS),
    r("POST", "/v1/offers/{id}/redeem", "value", **OFFERS),
    r("GET", "/v1/customers/{id}/offers", "value", **OFFERS),
    # value: offer templates, campaigns and next best offer
    r("GET POST", "/v1/offer-templates", "value", **OFFERS),
    r("GET", "/v1/offer-templates/{id}", "value", **OFFERS),
    r("POST", "/v1/offer-templates/{id}/offers", "value", **OFFERS),
    r("GET POST", "/v1/campaigns", "value", **CAMPAIGNS),
    r("GET PATCH", "/v1/campaigns/{id}", "value", **CAMPAIGNS),
    # A preview reads (a POST only because it computes).
    r("POST", "/v1/campaigns/{id}/preview", "value", scope="campaigns:read"),
    r("POST", "/v1/campaigns/{id}/schedule", "value", **CAMPAIGNS),
    # A launch answers once every offer is issued: about a minute for a million customers.
    r("POST", "/v1/campaigns/{id}/launch", "value", **CAMPAIGNS, timeout_s=300),
    r("POST", "/v1/campaigns/{id}/complete", "value", **CAMPAIGNS),
    r("POST", "/v1/campaigns/{id}/cancel", "value", **CAMPAIGNS),
    r("GET", "/v1/campaigns/{id}/members", "value", **CAMPAIGNS),
    r("GET", "/v1/campaigns/{id}/results", "value", **CAMPAIGNS),
    r("GET", "/v1/customers/{id}/next-best-offer", "value", read="offers:read"),
    r("GET", "/v1/customers/{id}/promotions", "value", **CAMPAIGNS),
    r("GET", "/v1/playbooks/{id}/results", "value", **CAMPAIGNS),
    # value: ideas. A customer acts through the signed link value makes (its token is checked by value).
    r("GET POST", "/v1/ideas", "value", **IDEAS),
    r("GET", "/v1/ideas/{id}", "value", **IDEAS),
    r("POST", "/v1/ideas/{id}/status", "value", **IDEAS),
    r("POST", "/v1/ideas/{id}/votes", "value", **IDEAS),
    r("GET POST", "/v1/ideas/{id}/comments", "value", **IDEAS),
    r("GET", "/v1/customers/{id}/ideas", "value", **IDEAS),
    r("GET", "/v1/customers/{id}/ideas-link", "value", scope="ideas:write"),
    r("GET POST", "/v1/public/ideas/{token}", "value", public=True),
    r("POST", "/v1/public/ideas/{token}/{id}/votes", "value", public=True),
    r("POST", "/v1/public/ideas/{token}/{id}/comments", "value", public=True),
    # value: the value map
    r("GET", "/v1/value-map", "value", **VALUE_MAP),
    r("GET POST", "/v1/value-map/attributes", "value", **VALUE_MAP),
    r("GET PATCH DELETE", "/v1/value-map/attributes/{id}", "value", **VALUE_MAP),
    r("GET POST", "/v1/value-map/competitors", "value", **VALUE_MAP),
    r("GET PATCH DELETE", "/v1/value-map/competitors/{id}", "value", **VALUE_MAP),
    r("POST", "/v1/value-map/ratings:batch", "value", **VALUE_MAP),
    r("GET", "/v1/customers/{id}/value-ratings", "value", **VALUE_MAP),
    # the gateway's own: the customer 360 view (gateway/composition.py), API keys, the caller
    r("GET", "/v1/customers/{id}/360", None, **CUSTOMERS),
    r("GET POST", "/v1/api-keys", None, scope="keys:admin"),
    r("GET DELETE", "/v1/api-keys/{id}", None, scope="keys:admin"),
    r("POST", "/v1/api-keys/{id}/rotate", None, scope="keys:admin"),
    r("GET", "/v1/me", None, scope=ANY_CALLER),
    # the gateway's own: a customer's data export (Art. 15/20), gathered from every service (gateway/exports.py)
    r("POST", "/v1/customers/{id}/exports", None, scope="pii:read"),
    r("GET", "/v1/exports/{id}", None, scope="pii:read"),
    r("GET", "/v1/exports/{id}/download", None, scope="pii:read"),
    # operators: each service's dead letters
    *(
        r("GET", f"/v1/ops/{service}/dead-letters", service, scope="ops", upstream="/v1/ops/dead-letters")
        for service in SERVICES
    ),
    # the gateway's own: the audit log (gateway/audit), read-only
    r("GET", "/v1/audit", None, scope="audit:read"),
    r("GET", "/v1/audit/verify", None, scope="audit:read"),
)


class _Node:
    __slots__ = ("param", "routes", "static", "tail")

    def __init__(self) -> None:
        self.static: dict[str, _Node] = {}
        self.param: _Node | None = None
        # Routes ending in `{name:path}` here, and routes ending exactly here: method -> Route.
        self.tail: dict[str, Route] | None = None
        self.routes: dict[str, Route] | None = None


class Match:
    """The outcome of a lookup: a route, or 404 (`route is None and not allowed`), or 405."""

    __slots__ = ("allowed", "route")

    def __init__(self, route: Route | None, allowed: frozenset[str] | None = None):
        self.route = route
        self.allowed = allowed


NOT_FOUND = Match(None)


def _param_ok(segment: str) -> bool:
    # A placeholder takes one real segment: not empty, not a dot segment, and no
    # percent-encoded slash that the service would decode into a second segment.
    if not segment or segment == "." or segment == "..":
        return False
    if "%" in segment:
        decoded = unquote(segment)
        if "/" in decoded or "\\" in decoded or decoded in (".", ".."):
            return False
    return True


class RouteTable:
    """A segment trie over `ROUTES`; `match(method, path)` costs a few dict lookups."""

    def __init__(self, routes: tuple[Route, ...] | list[Route] = ROUTES):
        self.routes = tuple(routes)
        self._root = _Node()
        seen: set[tuple[str, tuple[str, ...]]] = set()
        for route in self.routes:
            segments = self._segments(route.pattern)
            shape = tuple("{}" if s.startswith("{") else s for s in segments)
            for method in route.methods:
                if (method, shape) in seen:
                    raise ValueError(f"duplicate route {method} {route.pattern}")
                seen.add((method, shape))
            self._insert(route, segments)

    @staticmethod
    def _segments(pattern: str) -> list[str]:
        if not pattern.startswith("/"):
            raise ValueError(f"route pattern must start with '/': {pattern!r}")
        segments = pattern.split("/")[1:]
        for i, segment in enumerate(segments):
            if segment.startswith("{"):
                if not segment.endswith("}"):
                    raise ValueError(f"bad placeholder {segment!r} in {pattern!r}")
                if segment.endswith(":path}") and i != len(segments) - 1:
                    raise ValueError(f"{{name:path}} must be the last segment in {pattern!r}")
            elif not segment:
                raise ValueError(f"empty segment in {pattern!r}")
        return segments

    def _insert(self, route: Route, segments: list[str]) -> None:
        if route.upstream is not None and any(s.startswith("{") for s in segments):
            raise ValueError(f"upstream rewrite needs a static pattern: {route.pattern!r}")
        node = self._root
        for segment in segments:
            if segment.startswith("{") and segment.endswith(":path}"):
                if node.tail is None:
                    node.tail = {}
                for method in route.methods:
                    node.tail[method] = route
                return
            if segment.startswith("{"):
                if node.param is None:
                    node.param = _Node()
                node = node.param
            else:
                node = node.static.setdefault(segment, _Node())
        if node.routes is None:
            node.routes = {}
        for method in route.methods:
            node.routes[method] = route

    def match(self, method: str, path: str) -> Match:
        """Look up `path` (the raw, still percent-encoded path, without query)."""

        segments = path.split("/")
        if segments[0] != "":
            return NOT_FOUND
        near: list[dict[str, Route]] = []
        route = self._find(self._root, segments, 1, method, near)
        if route is not None:
            return Match(route)
        if near:
            return Match(None, frozenset(near[0]))
        return NOT_FOUND

    def _find(
        self, node: _Node, segments: list[str], i: int, method: str, near: list[dict[str, Route]]
    ) -> Route | None:
        # Depth first, literal segments before placeholders before `{name:path}`;
        # `near` collects the leaves that fit the path but not the method (for 405).
        if i == len(segments):
            routes = node.routes
            if routes is not None:
                route = routes.get(method)
                if route is not None:
                    return route
                near.append(routes)
            return None
        segment = segments[i]
        child = node.static.get(segment)
        if child is not None:
            route = self._find(child, segments, i + 1, method, near)
            if route is not None:
                return route
        if node.param is not None and _param_ok(segment):
            route = self._find(node.param, segments, i + 1, method, near)
            if route is not None:
                return route
        tail = node.tail
        if tail is not None and all(_param_ok(s) for s in segments[i:]):
            route = tail.get(method)
            if route is not None:
                return route
            near.append(tail)
        return None

    def by_service(self, service: str) -> list[Route]:
        return [route for route in self.routes if route.service == service]
