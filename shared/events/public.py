"""The events partner systems see: the public CloudEvent of a stream message, which
types a partner may ask for, and the public JSON Schema of each type.

Webhook deliveries and the pollable feed (`GET /v1/events`) send the same bytes for
the same event and caller: the CloudEvent as it was published, with its personal
fields (the contracts' `Personal` marks) nulled for a caller without `pii:read`.
Dead letters and any type the catalog does not know are never public.

Type patterns (webhook filters, the feed's `types`, an API key's allowed types) are an
exact public type (`crm.identify.customer.created`) or a prefix of whole segments
followed by `.*` (`crm.identify.customer.*`, `crm.identify.*`, `crm.*`), which matches
every public type under it, however deep. A pattern that matches no public type is
unknown (422 where a client gave it). Patterns resolve to sets of exact types, so
matching an event is one set lookup.

Each type's public schema (`/v1/schemas/<type>/v<version>.json`, served by the gateway)
is the JSON Schema of its contract's payload, the CloudEvent's `data`: personal fields
marked `x-personal` and nullable (a redacted payload still validates), and open to
fields added later (a payload changes only by adding fields: docs/partners.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache, lru_cache
from typing import Any

import orjson

from shared.events.contracts import CATALOG, Contract, DeadLetter
from shared.privacy.classification import SCHEMA_KEY, personal_fields
from shared.privacy.scrub import scrub_data

# Every type a partner may subscribe to or read from the feed.
PUBLIC_TYPES: frozenset[str] = frozenset(t for t, c in CATALOG.items() if c.model is not DeadLetter)

WILDCARD = "*"
MAX_PATTERN_LENGTH = 200
# Lower-case segments of letters, digits and underscores; `*` only as the last segment.
_PATTERN = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)*(\.\*)?$")
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def public_event(raw: bytes, *, pii: bool) -> bytes | None:
    """The public CloudEvent JSON of the stream message `raw`; None when it is not public."""

    try:
        event: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(event, dict):
        return None
    contract = CATALOG.get(str(event.get("type")))
    if contract is None or contract.model is DeadLetter:
        return None
    data = event.get("data")
    if pii or not isinstance(data, dict) or not scrub_data(contract, data):
        return raw
    return orjson.dumps(event)


def public_event_on(subject: str, raw: bytes, *, pii: bool) -> bytes | None:
    """`public_event(raw, pii=pii)` for a stream message on `subject` (an event's subject is
    its type), without parsing it when nothing in it can need redaction: the feed's and
    replays' fast path, the same bytes."""

    if subject in PUBLIC_TYPES and (pii or not _personal(subject)):
        return raw
    return public_event(raw, pii=pii)


@cache
def _personal(event_type: str) -> bool:
    """Whether events of this type can carry personal data (else they need no redaction)."""

    contract = CATALOG.get(event_type)
    return contract is not None and bool(personal_fields(contract.model))


# --- type patterns -------------------------------------------------------------------


class UnknownEventType(ValueError):
    """A type pattern that is malformed or matches no public type."""


@lru_cache(maxsize=4096)
def types_matching(pattern: str) -> frozenset[str]:
    """The public types `pattern` matches (UnknownEventType when it is malformed or matches none)."""

    if len(pattern) > MAX_PATTERN_LENGTH or not _PATTERN.match(pattern):
        raise UnknownEventType(
            f"{pattern[:MAX_PATTERN_LENGTH]!r} is not an event type: write a type such as "
            "crm.identify.customer.created, or a prefix with .* such as crm.identify.customer.*"
        )
    if pattern.endswith(".*"):
        prefix = pattern[:-1]
        found = frozenset(t for t in PUBLIC_TYPES if t.startswith(prefix))
    else:
        found = frozenset({pattern}) & PUBLIC_TYPES
    if not found:
        raise UnknownEventType(f"unknown event type {pattern!r}: see GET /v1/schemas for the public types")
    return found


def resolve_types(patterns: Iterable[str]) -> frozenset[str]:
    """Every public type one of `patterns` matches (UnknownEventType for a pattern that matches none)."""

    found: set[str] = set()
    for pattern in patterns:
        found |= types_matching(pattern)
    return frozenset(found)


def check_pattern(pattern: str) -> str:
    """`pattern` when it matches a public type (a pydantic AfterValidator: ValueError otherwise)."""

    types_matching(pattern)
    return pattern


@lru_cache(maxsize=1024)
def allowed_types(patterns: tuple[str, ...]) -> frozenset[str]:
    """The types an API key's allowed `patterns` grant today. Unlike `resolve_types`, a
    pattern that matches nothing (a type since retired) grants nothing instead of failing."""

    found: set[str] = set()
    for pattern in patterns:
        try:
            found |= types_matching(pattern)
        except UnknownEventType:
            continue
    return frozenset(found)


def nats_subject(pattern: str) -> str:
    """The NATS subject filter for `pattern` (event types are their subjects): `.*` becomes `.>`."""

    return pattern[:-1] + ">" if pattern.endswith(".*") else pattern


# --- public schemas -------------------------------------------------------------------


def schema_path(contract: Contract[Any]) -> str:
    return f"/v1/schemas/{contract.subject}/v{contract.version}.json"


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` accepting null as well (a redacted personal value)."""

    options = schema.get("anyOf")
    if isinstance(options, list):
        if not any(option.get("type") == "null" for option in options):
            schema["anyOf"] = [*options, {"type": "null"}]
        return schema
    kept = {key: value for key, value in schema.items() if key in ("title", "description", "default", SCHEMA_KEY)}
    inner = {key: value for key, value in schema.items() if key not in kept}
    return {**kept, "anyOf": [inner, {"type": "null"}]}


def _redactable(schema: dict[str, Any]) -> dict[str, Any]:
    """A personal field's schema: the field may be null, and a map of personal values
    (customer.updated's `changes`) keeps its keys with null values when redacted."""

    options = schema.get("anyOf")
    for part in [schema, *(options if isinstance(options, list) else [])]:
        values = part.get("additionalProperties")
        if part.get("type") == "object" and isinstance(values, dict):
            part["additionalProperties"] = _nullable(values)
    return _nullable(schema)


def _open(schema: Any) -> Any:
    """`schema` without `additionalProperties: false`: fields added later must not fail a
    partner's validation against a schema it fetched earlier."""

    if isinstance(schema, dict):
        if schema.get("additionalProperties") is False:
            del schema["additionalProperties"]
        for value in schema.values():
            _open(value)
    elif isinstance(schema, list):
        for value in schema:
            _open(value)
    return schema


def public_schema(contract: Contract[Any], base_url: str) -> dict[str, Any]:
    """The JSON Schema of `contract`'s payload (a CloudEvent's `data`) as partners get it."""

    schema = _open(contract.model.model_json_schema(mode="serialization"))
    properties = schema.get("properties", {})
    for name in personal_fields(contract.model):
        if name in properties:
            properties[name] = _redactable(properties[name])
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": base_url + schema_path(contract),
        **schema,
        "title": contract.subject,
        "description": contract.description,
        "x-type": contract.subject,
        "x-version": contract.version,
        "x-producer": contract.producer,
    }


def schema_index(base_url: str) -> dict[str, Any]:
    """Every public type with its version and schema URL (`GET /v1/schemas`)."""

    items = [
        {
            "type": contract.subject,
            "version": contract.version,
            "producer": contract.producer,
            "description": contract.description,
            "personal_fields": sorted(personal_fields(contract.model)),
            "schema": base_url + schema_path(contract),
        }
        for contract in sorted(CATALOG.values(), key=lambda c: c.subject)
        if contract.subject in PUBLIC_TYPES
    ]
    return {"items": items}
