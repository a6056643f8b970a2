"""The touchpoints after which a survey rule may send a survey: one table, event type → how
to read its customer and channel, and whether this event is the touchpoint.

A survey names event types in its `triggers`; a type not in `TRIGGERS` is refused (422). A
new touchpoint is one line here (its contract must exist in shared/events/contracts.py): the
`engage-surveys` consumer subscribes to exactly these types.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Trigger:
    description: str
    # The channel the touchpoint happened on (null when the event does not say: a purchase).
    channel: Callable[[Any], str | None]
    # Whether this event is the touchpoint (a purchase is one only when it is the first).
    applies: Callable[[Any], bool] = lambda data: True
    customer: Callable[[Any], str] = lambda data: data.customer_id


TRIGGERS: dict[str, Trigger] = {
    "crm.identify.transaction.recorded": Trigger(
        "a first purchase (purchase_count 1)", channel=lambda data: None, applies=lambda data: data.purchase_count == 1
    ),
    "crm.engage.conversation.closed": Trigger("a closed conversation", channel=lambda data: data.channel),
    "crm.lifecycle.ticket.solved": Trigger("a solved ticket", channel=lambda data: data.channel),
}
