"""An event with the personal fields of erased customers nulled.

An event is about a customer when its envelope `subject` or one of its contract's
`customers` fields names it; only then are its personal fields (the contract's
`Personal` marks) nulled: a customer created as referred by an erased one is the
other person's data and stays. A dead letter carries the whole failed event in `raw`:
that event is scrubbed the same way, and the error (which may quote the payload) is
replaced.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import orjson

from shared.events.contracts import CATALOG, Contract, DeadLetter
from shared.events.envelope import Event
from shared.privacy.classification import ERASED, personal_fields


def _names(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


def is_about(subject: str | None, data: dict[str, Any], contract: Contract[Any], ids: Collection[str]) -> bool:
    if subject in ids:
        return True
    return any(name in ids for field in contract.customers for name in _names(data.get(field)))


def _nulled(value: Any) -> Any:
    # A map of personal values (customer.updated's `changes`) keeps its keys: which fields changed.
    return dict.fromkeys(value) if isinstance(value, dict) else None


def scrub_data(contract: Contract[Any], data: dict[str, Any]) -> bool:
    """Null `data`'s personal fields in place; whether anything changed."""

    changed = False
    for name in personal_fields(contract.model):
        value = data.get(name)
        if value is None or value == _nulled(value):
            continue
        data[name] = _nulled(value)
        changed = True
    return changed


def _scrub_event(event: dict[str, Any], ids: Collection[str]) -> bool:
    contract = CATALOG.get(str(event.get("type")))
    data = event.get("data")
    if contract is None or not isinstance(data, dict):
        return False
    if contract.model is DeadLetter:
        raw = data.get("raw")
        inner = scrub_event_json(raw.encode(), ids) if isinstance(raw, str) else None
        if inner is None:
            return False
        data["raw"] = inner.decode()
        data["error"] = ERASED
        return True
    if not is_about(event.get("subject"), data, contract, ids):
        return False
    return scrub_data(contract, data)


def scrub_event_json(raw: bytes, ids: Collection[str]) -> bytes | None:
    """The CloudEvent JSON `raw` scrubbed for the erased `ids`; None when nothing changed
    (not about them, nothing personal left, or not an event at all)."""

    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(event, dict) or not _scrub_event(event, ids):
        return None
    return orjson.dumps(event)


def scrub_typed(event: Event[Any]) -> Event[Any]:
    """A typed event (as handlers get it) with its personal fields nulled."""

    contract = CATALOG.get(event.type)
    if contract is None:
        return event
    fields = personal_fields(contract.model)
    updates = {name: _nulled(getattr(event.data, name)) for name in fields if getattr(event.data, name) is not None}
    if not updates:
        return event
    return event.model_copy(update={"data": event.data.model_copy(update=updates)})
