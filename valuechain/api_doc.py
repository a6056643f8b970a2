"""Generate docs/api.md: every operation the gateway routes, as the services declare it.

`python -m valuechain.api_doc` writes the file; tests/test_api_doc.py fails when it is
stale. Operations come from each service's own OpenAPI document, matched against
the gateway's route table, so the page lists what is really served.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from gateway.routes import ROUTES
from shared.settings import SERVICES, service_settings

DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"

HEADER = """# HTTP API

Generated from the gateway's route table (`gateway/routes.py`) and the services'
OpenAPI documents by `python -m valuechain.api_doc`; do not edit by hand. The
running gateway serves the full schema at `/openapi.json` and `/docs`.

- **Base URL**: the gateway, `http://127.0.0.1:8000` by default.
- **Auth**: every `/v1` route needs `Authorization: Bearer <key>` (the admin key
  in `var/admin-api-key`, or `VALUECHAIN_ADMIN_API_KEY`); otherwise 401.
- **Ids**: send `X-Request-ID` and `X-Correlation-ID` to trace a request; the
  gateway mints them when absent and returns both. The correlation id travels
  into every event the request causes.
- **Errors**: JSON `{"error": ..., "detail": ...}`. 400 malformed JSON or a bad
  cursor, 401 missing or wrong key, 404 unknown id or route, 405 wrong method,
  409 conflict, 413 body too large, 422 invalid fields (`detail` lists
  `{"field", "message", "type"}`; unknown fields are refused, never dropped),
  502 a service is unavailable, 504 a service timed out.
- **Pagination**: lists take `limit` (1–200, default 50) and `cursor`, and answer
  `{"items": [...], "next_cursor": "..." | null}`; pass `next_cursor` back as
  `cursor` for the next page.
"""

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

GATEWAY_OWN = [
    ("GET", "/v1/customers/{id}/360", "The customer 360: customer, lifecycle, recent timeline, offers and referrals, "
     "fetched in parallel; parts that could not be fetched are named in `missing`."),
    ("GET", "/v1/ops/{service}/dead-letters", "Events a service's consumers gave up on (per service)."),
    ("GET", "/healthz", "Liveness (no key)."),
    ("GET", "/readyz", "200 only when every service and NATS are ready, else 503 naming what is not (no key)."),
    ("GET", "/metrics", "Prometheus metrics of the gateway (no key); each service serves its own."),
    ("GET", "/openapi.json, /docs", "The merged OpenAPI document and its UI (no key)."),
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


def operations() -> dict[str, list[tuple[str, str, str, str, str]]]:
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
                    rows.append((method.upper(), path, _summary(operation), _body(operation), codes))
        found[service] = sorted(set(rows), key=lambda row: (row[1], row[0]))
    return found


def render() -> str:
    lines = [HEADER, SEARCH]
    for service, rows in operations().items():
        lines += [f"## {service}", "", "| method | path | request body | success | what it does |", "|---|---|---|---|---|"]
        for method, path, summary, body, codes in rows:
            lines.append(f"| {method} | `{path}` | {body and f'`{body}`'} | {codes} | {summary} |")
        lines.append("")
    lines += ["## gateway", "", "| method | path | what it does |", "|---|---|---|"]
    lines += [f"| {method} | `{path}` | {text} |" for method, path, text in GATEWAY_OWN]
    return "\n".join(lines) + "\n"


def main() -> None:
    DOC.write_text(render())
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
