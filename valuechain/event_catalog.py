"""Generate docs/events.md from the code: the contracts in shared/events/contracts.py and
the consumers each service declares. `python -m valuechain.event_catalog` writes
it; tests/test_event_catalog.py fails when the committed file is stale."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from shared.events.contracts import CATALOG, DLQ_SUBJECT_PREFIX
from shared.privacy.classification import personal_fields
from shared.settings import SERVICES

DOC = Path(__file__).resolve().parent.parent / "docs" / "events.md"

HEADER = """# Event catalog

Generated from `shared/events/contracts.py` and the services' consumer declarations by
`python -m valuechain.event_catalog`; do not edit by hand (a test fails when this
file is stale).

Every event is a CloudEvents 1.0 envelope in structured JSON mode, published on
the JetStream stream `CRM` (subjects `crm.>`) with `Nats-Msg-Id` set to the event
id. Envelope attributes: `specversion` (`1.0`), `id` (UUID), `source`
(`/valuechain/<service>`), `type` (equals the subject), `time`, `subject` (the
customer id where there is one), `datacontenttype` (`application/json`),
`dataschema` (`<VALUECHAIN_PUBLIC_BASE_URL>/v1/schemas/<subject>/v<version>.json`, the
payload's JSON Schema as the gateway serves it), `correlationid` (the
id of the request or event that started the chain), `causationid` (the event
that caused this one, when a consumer emitted it) and `data` (the payload below).

Payloads change only by adding optional fields; a breaking change is a new type,
published beside the old one through a deprecation window (partners.md, "Public
contracts and versioning").

NATS requires credentials, and each service's user may publish only its own
subjects (`crm.<service>.>` and `crm.dlq.<service>`) and read only its own
consumers (docs/security.md, "Internal credentials"). Partner systems get no
service credentials: they receive these events through the partner webhooks and
event feed. An operator who gives a partner direct NATS access makes a durable
consumer for it, as the NATS admin, and a read-only user that may pull from and
ack that one consumer (docs/security.md shows both); partners do not make their
own consumers.

The consumers named below are the services' consumer specs (`<service>-<purpose>`: their
name in each service's dead letters and metrics, and in its inbox for an event a spec
applied on its own; an event that all the specs of a shared durable applied together is
claimed as `<durable>:all`). A service's specs share one durable
JetStream consumer, `<service>-events`, filtered on the union of their subjects (but
lifecycle's stage changes, `lifecycle-stages`, on a durable of their own, `lifecycle-stage-changes`)
(architecture.md, "Consume").

Fields marked personal (`x-personal` in the schema: a name, email, phone, address,
free text or an outside identifier) are nullable: deliveries to partners without
`pii:read` carry them as null, and an erasure (`crm.identify.customer.erased`) deletes
the events about the erased customer that still hold them (see privacy.md).
"""


def consumers_by_subject() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for service in SERVICES:
        definition = importlib.import_module(f"services.{service}.main").DEFINITION
        for spec in definition.consumers:
            for subject in spec.all_subjects:
                found.setdefault(subject, []).append(f"`{spec.durable(service)}`")
    return found


def _type_of(prop: dict, defs: dict) -> str:
    if "$ref" in prop:
        return _type_of(defs[prop["$ref"].split("/")[-1]], defs)
    if "anyOf" in prop:
        return " or ".join(_type_of(option, defs) for option in prop["anyOf"])
    if "enum" in prop:
        return " \\| ".join(f"`{value}`" for value in prop["enum"])
    kind = prop.get("type", "any")
    if kind == "string" and prop.get("format"):
        return f"string ({prop['format']})"
    if kind == "object":
        return "object"
    if kind == "array":
        return f"array of {_type_of(prop.get('items', {}), defs)}"
    return kind


def published() -> dict:
    """The catalog of the suite's own services (tests may register contracts of their own)."""

    return {subject: c for subject, c in CATALOG.items() if c.producer in SERVICES}


def render() -> str:
    consumers = consumers_by_subject()
    lines = [HEADER, "## Subjects\n", "| subject | producer | consumers | version |", "|---|---|---|---|"]
    for subject, contract in sorted(published().items()):
        users = ", ".join(consumers.get(subject, []))
        if not users:
            users = "operators" if subject.startswith(DLQ_SUBJECT_PREFIX) else "— (partners)"
        lines.append(f"| `{subject}` | {contract.producer} | {users} | v{contract.version} |")
    for subject, contract in sorted(published().items()):
        schema = contract.model.model_json_schema()
        defs = schema.get("$defs", {})
        required = set(schema.get("required", []))
        lines += ["", f"## `{subject}`", "", contract.description, ""]
        personal = personal_fields(contract.model)
        lines += ["| field | type | required | personal |", "|---|---|---|---|"]
        for name, prop in schema["properties"].items():
            kind = personal.get(name, "")
            lines.append(f"| `{name}` | {_type_of(prop, defs)} | {'yes' if name in required else 'no'} | {kind} |")
        lines += [
            "",
            "<details><summary>JSON Schema</summary>",
            "",
            "```json",
            json.dumps(schema, indent=2, sort_keys=True),
            "```",
            "",
            "</details>",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(render())
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
