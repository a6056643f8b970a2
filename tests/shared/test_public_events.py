"""What partners see of the events (shared/events/public.py): type patterns, and the public
JSON Schemas, against which every contract's payload validates, redacted or not."""

from __future__ import annotations

import types
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import jsonschema_rs
import orjson
import pytest
from pydantic import BaseModel

from shared.events.contracts import CATALOG
from shared.events.envelope import make_event
from shared.events.public import (
    PUBLIC_TYPES,
    UnknownEventType,
    allowed_types,
    nats_subject,
    public_event,
    public_event_on,
    public_schema,
    resolve_types,
    types_matching,
)
from shared.privacy.classification import personal_fields
from shared.privacy.scrub import scrub_data

BASE = "https://crm.example.com"


# --- type patterns ----------------------------------------------------------------------


def test_a_pattern_is_a_type_or_a_prefix_with_a_star():
    assert types_matching("crm.identify.customer.created") == {"crm.identify.customer.created"}
    customers = types_matching("crm.identify.customer.*")
    assert "crm.identify.customer.updated" in customers and all(
        t.startswith("crm.identify.customer.") for t in customers
    )
    assert types_matching("crm.*") == PUBLIC_TYPES
    assert resolve_types(["crm.identify.customer.created", "crm.value.*"]) >= {"crm.identify.customer.created"}
    assert nats_subject("crm.identify.*") == "crm.identify.>" and nats_subject("crm.a.b.c") == "crm.a.b.c"


@pytest.mark.parametrize(
    "pattern",
    [
        "",
        "*",
        "crm.identify.customer.creatd",
        "crm.nothing.*",
        "crm.*.created",
        "crm.identify*",
        "CRM.*",
        "crm.dlq.identify",
    ],
)
def test_a_pattern_that_matches_no_public_type_is_unknown(pattern):
    with pytest.raises(UnknownEventType):
        types_matching(pattern)


def test_a_keys_patterns_that_match_nothing_any_more_grant_nothing():
    assert allowed_types(("crm.retired.thing.*",)) == frozenset()
    assert allowed_types(("crm.retired.thing.*", "crm.identify.customer.created")) == {"crm.identify.customer.created"}


# --- public schemas -----------------------------------------------------------------------


def _sample(annotation: Any) -> Any:
    """A JSON value of `annotation` (the first choice of a union, of a Literal)."""

    origin = get_origin(annotation)
    if origin is Annotated:
        return _sample(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return _sample(next(a for a in get_args(annotation) if a is not type(None)))
    if origin is Literal:
        return get_args(annotation)[0]
    if origin is list:
        return [_sample(get_args(annotation)[0])]
    if origin is dict:
        return {"key": _sample(get_args(annotation)[1])}
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {name: _sample(field.annotation) for name, field in annotation.model_fields.items()}
    samples = {str: "text", int: 1, float: 0.5, bool: True, Decimal: Decimal("1.50"), Any: "anything"}
    if annotation in samples:
        return samples[annotation]
    if annotation is datetime:
        return datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    if annotation is date:
        return date(2026, 1, 2)
    raise AssertionError(f"no sample for {annotation!r}")


def _payload(event_type: str) -> dict[str, Any]:
    """A valid payload of `event_type` with every field set, as the producer writes it."""

    model = CATALOG[event_type].model
    data = {name: _sample(field.annotation) for name, field in model.model_fields.items()}
    dumped: dict[str, Any] = model.model_validate(data).model_dump(mode="json")
    return dumped


@pytest.mark.parametrize("event_type", sorted(PUBLIC_TYPES))
def test_every_payload_validates_against_its_public_schema_redacted_or_not(event_type):
    contract = CATALOG[event_type]
    schema = public_schema(contract, BASE)
    assert schema["$id"] == f"{BASE}/v1/schemas/{event_type}/v{contract.version}.json" == contract.dataschema_at(BASE)
    validator = jsonschema_rs.Draft202012Validator(schema, validate_formats=True)
    payload = _payload(event_type)
    validator.validate(payload)
    validator.validate({**payload, "added_later": 1})  # a field added later does not fail an older copy
    for name, kind in personal_fields(contract.model).items():
        assert schema["properties"][name]["x-personal"] == kind

    event = make_event(service=contract.producer, type=event_type, data=payload, dataschema=contract.dataschema)
    redacted = orjson.loads(public_event(event.to_json(), pii=False) or b"")
    validator.validate(redacted["data"])
    assert public_event_on(event_type, event.to_json(), pii=False) == public_event(event.to_json(), pii=False)
    if personal_fields(contract.model):
        assert scrub_data(contract, dict(payload)), "the sample sets the personal fields"
        assert all(redacted["data"][name] in (None, {"key": None}) for name in personal_fields(contract.model))
