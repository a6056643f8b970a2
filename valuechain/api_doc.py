"""Generate docs/api.md: every operation the gateway routes, as the services declare it.

`python -m valuechain.api_doc` writes the file; tests/test_api_doc.py fails when it is
stale. Operations come from each service's own OpenAPI document, matched against
the gateway's route table, so the page lists what is really served.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from gateway.access.roles import ANY_CALLER
from gateway.routes import ROUTES, Route, RouteTable
from shared.settings import GATEWAY_PORT, SERVICES, local_url, service_settings

DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"

HEADER = """# HTTP API

Generated from the gateway's route table (`gateway/routes.py`) and the services'
OpenAPI documents by `python -m valuechain.api_doc`; do not edit by hand. The
running gateway serves the full schema at `/openapi.json` and `/docs`.

- **Base URL**: the gateway, `<gateway>` by default.
- **Auth**: every `/v1` route needs `Authorization: Bearer <credential>`: an API key
  (`vc_...`, made with `POST /v1/api-keys`), a JWT from the company's identity provider
  when one is configured, or the bootstrap admin key (`var/admin-api-key`, or
  `VALUECHAIN_ADMIN_API_KEY`). Without a valid one, 401 `unauthorized`, the same answer
  whatever the reason. Each operation needs the **scope** its row names (a role's scopes
  plus a key's extra ones; docs/security.md); without it, 403 `insufficient_scope`
  naming the scope, also in `WWW-Authenticate` (RFC 6750). `GET /v1/me` tells a caller
  its role and scopes. A partner key sees only its own partner's resources (another
  partner's id is 404). `/metrics` needs `ops`; `/healthz`, `/readyz`, `/openapi.json`
  and `/docs` need no key.
- **Ids**: send `X-Request-ID` and `X-Correlation-ID` to trace a request; the
  gateway mints them when absent and returns both. The correlation id travels
  into every event the request causes.
- **Errors**: always JSON, in one of two shapes (schemas `Error` and `FieldErrors`
  in `/openapi.json`, where each operation lists the ones it can answer):
  - `{"error": "<code>", "detail": "<sentence>"}` (`Error`): 401 `unauthorized`
    (missing or wrong key), 403 `insufficient_scope`, 404 `not_found` (unknown id or
    route), 405 `method_not_allowed` (the `Allow` header lists the methods that work
    there), 409 `conflict` or `customer_merged`
    (a duplicate, a resource in the wrong state, a merged customer: the sentence
    names the id to use), 413 `payload_too_large` (a body over 1 MiB, an upload over
    200 MiB), 429 `rate_limited` (the key's rate limit: retry after `Retry-After`
    seconds; every authenticated answer says what is left in `RateLimit` and
    `RateLimit-Policy`, see docs/security.md), 500 `internal_error` (the
    detail names the request id the log has it under),
    502 `bad_gateway` (a service is unavailable), 504 `gateway_timeout`.
  - `{"error": "<code>", "detail": [{"field", "message", "type"}, ...]}`
    (`FieldErrors`): 422 `validation_error` and 400 `malformed_json`. `field` names
    where: `body.<field>` (`body.items.3.amount` in a batch), `query.<name>`,
    `path.<name>`, a form field's name, or `body` for a rule across fields;
    `type` is the kind (`missing`, `value_error`, ...). Unknown fields are refused,
    never dropped.
- **Query parameters**: each operation takes only those listed below. Any other
  is 422 (`"field": "query.<name>"`, `"type": "extra_forbidden"`) on every route,
  `/healthz`, `/metrics`, `/openapi.json` and `/docs` included, and a parameter
  that is not a list given twice is 422 (`"type": "multiple_values"`): nothing
  the client sent is ignored. A value holding a NUL is 422 too. Times (`from`, `to`) need a
  time zone.
- **Text**: text fields refuse NUL, other control characters (a multi-line text
  such as an interaction's summary keeps line feeds and tabs) and bidirectional
  formatting characters (U+200E, U+200F, U+202A–U+202E, U+2066–U+2069) with 422.
- **Dates**: a purchase's `occurred_at` and a refit's `calibration_end` lie from
  1970-01-01T00:00:00Z to now plus one day (both configurable, see
  docs/operations.md); outside them, 422 stating the bounds.
- **Pagination**: lists take `limit` (1–200, default 50) and `cursor`, and answer
  `{"items": [...], "next_cursor": "..." | null}`; pass `next_cursor` back as
  `cursor` for the next page. A cursor is opaque unpadded base64url
  (`^[A-Za-z0-9_-]*$`, at most 1024 characters); any other, or one this API did not
  issue, is 422 naming `query.cursor`, on every list.
- **Money**: amounts are decimal strings (at most 4 decimal places), never negative;
  a margin is at most its amount; currencies are ISO 4217 codes. Every sum is in the
  reporting currency (`VALUECHAIN_IDENTIFY_REPORTING_CURRENCY`, USD by default): a
  transaction answers its `amount`/`currency` and its `reporting_amount`/
  `reporting_currency`, converted at the rates of `PUT /v1/fx-rates`; one in a
  currency with no rate for its day is 422 on `currency`. A transaction also shows
  its `status` (`recorded`, or `voided` with `voided_at` and `void_reason`) and its
  `refunded_amount`; its refunds are listed at `GET /v1/transactions/{id}/refunds`.
  A refund is `POST /v1/transactions/{id}/refund` `{amount, reason, occurred_at?,
  external_id?}` (201, or 200 for a repeated `external_id`; 422 on `amount` when it is
  more than is left unrefunded; 409 when the purchase was voided); a void is
  `POST /v1/transactions/{id}/void` `{reason}` (409 when voided already). See
  docs/portfolio.md for what each does to counts, revenue and scores.
""".replace("<gateway>", local_url(GATEWAY_PORT))

SEARCH = """
## Finding customers

`GET /v1/customers` takes, besides `limit` and `cursor`, filters that all combine (AND);
merged customers are never listed (they are reached through their survivor).

- **Exact**: `email` (case-insensitive), `external_id` (exact), `phone` (normalised as
  identify normalises stored phones, then compared in E.164: `+1 415-555-2671` finds
  `(415) 555-2671`; a value that is no phone number is 422).
- **`q`**: case-insensitive substring of the name, email, phone (as given or in E.164)
  or external id; 3 to 200 characters after trimming (fewer is 422 naming `query.q`).
  Every character is literal: `50%` finds "50% Off", `a_b` does not find "axb", and
  quotes or words like `OR` are text. ASCII letters match in any case on both databases;
  other letters (É, Ñ) fold as SQLite's FTS5 folds them, on PostgreSQL as the database's
  `LC_CTYPE` does.
- **Facets**: `segment` (an RFM segment), `kind` (a strategically significant kind),
  `min_clv` / `max_clv` (the **predicted** CLV of the last refit, inclusive; customers
  not yet scored have none and are left out), `last_purchase_after` (inclusive) /
  `last_purchase_before` (exclusive), instants with a time zone.
- **`sort`**: `name`, `created_at`, `clv` (predicted) or `last_purchase`; a leading `-`
  descends (`sort=-clv`). Ties are broken by id in the same direction. Customers without
  a value (no name, not scored, never bought) come last in both directions. Names
  compare by code point (`Z` before `a`), the same on SQLite and PostgreSQL. Without
  `sort`, oldest first.
- **Cursors** hold the sort and the last row's position, so a page never repeats or
  skips a customer while you page; a cursor issued under another `sort` is 422 naming
  `query.cursor`. Every invalid value is 422 naming its field.

## Exports

`GET /v1/customers/export?format=csv|ndjson` streams the customers the same filters,
`q` and `sort` find (no `limit` or `cursor`), one line each, with their scores (segment,
RFM, historic and predicted CLV, expected purchases, probability alive, kinds, model
version) and purchase summary (purchases, first and last purchase, total spend).
`GET /v1/transactions/export?from=&to=&format=` streams the transactions of every
customer with `from <= occurred_at < to` (instants with a time zone), customer by
customer, each customer's oldest first (the order of the index it reads).

Both are streamed as the database is read in pages of 1,000 rows, through the gateway
too, so memory stays flat however large the export. `Content-Disposition` names the
file (`customers-<UTC time>.csv`). In CSV, a text cell starting with `=`, `+`, `-`,
`@`, a tab or a carriage return gets a leading `'` so spreadsheets do not run it as a
formula (OWASP's advice; stored values are unchanged, numbers are written as numbers).
NDJSON is plain JSON. Kinds are `;`-separated in CSV, a list in NDJSON. An unknown
`format` is 422.
"""

# (method, path, scope, text); scope None: the route table's (one place to change it).
GATEWAY_OWN: list[tuple[str, str, str | None, str]] = [
    (
        "GET",
        "/v1/customers/{id}/360",
        None,
        "The customer 360: customer, lifecycle, recent timeline, offers and referrals, "
        "fetched in parallel; parts that could not be fetched are named in `missing`.",
    ),
    (
        "POST",
        "/v1/api-keys",
        None,
        "Make a key `{name, role, scopes?, expires_at?, partner_id?, person_id?, event_types?}` (201); the "
        "answer's `key` is the secret, shown once. `event_types` limits the events the key sees in webhooks "
        "and the feed (types or `.*` prefixes; none: every public type). Unknown role, scope or event type, "
        "an expiry in the past, `partner_id` missing on a `partner` key or given on another: 422 naming the "
        "field. Granting a scope you lack: 403.",
    ),
    (
        "GET",
        "/v1/api-keys",
        None,
        "Every key (revoked ones too), oldest first, cursor-paginated; never a secret.",
    ),
    ("GET", "/v1/api-keys/{id}", None, "One key, with `prefix`, `last_used_at`, `revoked_at`."),
    ("DELETE", "/v1/api-keys/{id}", None, "Revoke a key (204); it stays listed."),
    (
        "POST",
        "/v1/api-keys/{id}/rotate",
        None,
        "A new secret `{overlap_seconds?}` (default 86400, at most 30 days): the old one works until then. "
        "409 for a revoked key.",
    ),
    (
        "GET",
        "/v1/me",
        None,
        "The caller: `id`, `kind`, `role`, `scopes`, `partner_id`, `person_id`, `event_types`.",
    ),
    ("GET", "/v1/ops/{service}/dead-letters", "ops", "Events a service's consumers gave up on (per service)."),
    (
        "GET",
        "/v1/audit",
        None,
        "The audit log, newest first: every write through the gateway (`actor`, `resource`, `from`, `to`, "
        "`limit`, `cursor`).",
    ),
    (
        "GET",
        "/v1/audit/verify",
        None,
        "Checks the audit log's hash chain: ok with the count and head, or the first broken entry.",
    ),
    (
        "POST",
        "/v1/customers/{id}/exports",
        None,
        "Start a customer's data export (GDPR Art. 15/20), a job gathering what every service holds and why "
        "(202; 404 for an unknown customer). Only whoever asked, or an admin, sees the job (docs/privacy.md).",
    ),
    ("GET", "/v1/exports/{id}", None, "The job: `running`, `done`, `failed`, `downloaded` or `expired`."),
    (
        "GET",
        "/v1/exports/{id}/download",
        None,
        "The finished document, once (then 410); 409 while running or failed; 410 once expired "
        "(`VALUECHAIN_GATEWAY_EXPORT_RETENTION_S`). Recorded in the audit log.",
    ),
    (
        "GET",
        "/v1/schemas",
        None,
        "Every public event type with its version, personal fields and the URL of its JSON Schema.",
    ),
    (
        "GET",
        "/v1/schemas/{type}/{version}",
        None,
        "An event type's JSON Schema (`/v1/schemas/<type>/v<n>.json`, the URL in each event's `dataschema`): "
        "personal fields marked `x-personal` and nullable (docs/partners.md). 404 for an unknown type or version.",
    ),
    ("GET", "/healthz", "none", "Liveness."),
    ("GET", "/readyz", "none", "200 only when every service and NATS are ready, else 503 naming what is not."),
    ("GET", "/metrics", "ops", "Prometheus metrics of the gateway; each service serves its own."),
    (
        "GET",
        "/openapi.json, /docs",
        "none",
        "The merged OpenAPI document and its UI, Swagger UI served by the gateway "
        "itself under `/docs/assets/` (works offline).",
    ),
    (
        "GET",
        "/console/",
        "none",
        "The console, the web app for the people who run the CRM (docs/console.md); its pages call `/v1` "
        "with the user's own key or JWT.",
    ),
]


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def _matches(route_pattern: str, service_path: str) -> bool:
    if route_pattern.endswith(":path}"):
        prefix = _shape(route_pattern[: route_pattern.rindex("{")])
        return _shape(service_path).startswith(prefix)
    return _shape(route_pattern) == _shape(service_path)


def _summary(operation: dict) -> str:
    text = (operation.get("description") or operation.get("summary") or "").strip().splitlines()
    return text[0] if text else ""


def _body(operation: dict) -> str:
    schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    return schema.get("$ref", "").rsplit("/", 1)[-1]


def _query(operation: dict) -> str:
    return ", ".join(f"`{p['name']}`" for p in operation.get("parameters", ()) if p.get("in") == "query")


def _scope(route: Route, method: str) -> str:
    if route.public:
        return "none (public)"
    scope = route.scopes[method]
    return "any caller" if scope == ANY_CALLER else f"`{scope}`"


def _own_scope(method: str, path: str, given: str | None) -> str:
    if given is None:
        route = RouteTable().match(method, path).route
        assert route is not None, f"{method} {path} is not in the route table"
        return _scope(route, method)
    return given if " " in given else f"`{given}`"


def operations() -> dict[str, list[tuple[str, str, str, str, str, str, str]]]:
    found: dict[str, list] = {}
    for service in SERVICES:
        app = importlib.import_module(f"services.{service}.main").create_app(service_settings(service))
        spec = app.openapi()
        rows = []
        for route in ROUTES:
            if route.service != service or route.pattern.startswith("/v1/ops/"):
                continue
            for path, item in spec["paths"].items():
                if not _matches(route.pattern, path):
                    continue
                for method, operation in item.items():
                    if method.upper() not in route.methods:
                        continue
                    codes = ", ".join(code for code in operation.get("responses", {}) if code.startswith("2"))
                    rows.append(
                        (
                            method.upper(),
                            path,
                            _summary(operation),
                            _body(operation),
                            codes,
                            _query(operation),
                            _scope(route, method.upper()),
                        )
                    )
        found[service] = sorted(set(rows), key=lambda row: (row[1], row[0]))
    return found


def render() -> str:
    lines = [HEADER, SEARCH]
    for service, rows in operations().items():
        lines += [
            f"## {service}",
            "",
            "| method | path | scope | query | request body | success | what it does |",
            "|---|---|---|---|---|---|---|",
        ]
        for method, path, summary, body, codes, query, scope in rows:
            lines.append(f"| {method} | `{path}` | {scope} | {query} | {body and f'`{body}`'} | {codes} | {summary} |")
        lines.append("")
    lines += ["## gateway", "", "| method | path | scope | what it does |", "|---|---|---|---|"]
    lines += [
        f"| {method} | `{path}` | {_own_scope(method, path, scope)} | {text} |"
        for method, path, scope, text in GATEWAY_OWN
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    DOC.write_text(render())
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
