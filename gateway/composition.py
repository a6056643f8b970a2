"""The customer 360 view: one answer assembled from all five services.

`GET /v1/customers/{id}/360` asks, in parallel and each with
`composition_timeout_s`, every part of `PARTS`: one line each (the field of the
answer, the service, its path, whether it is a list, what the field says). The
response model `Customer360` is made from the same table, so adding a part is
adding its line.

Rules:

* identify answers 404 -> the 360 answers 404 (the customer does not exist).
* Any other part answering 404 -> that part is empty (`null` / `[]`): the
  service has nothing for the customer yet (events are still on their way).
* A service that is down, times out, answers 5xx or something that is not
  JSON -> its part is empty and listed in `missing` with the reason; the 360
  still answers 200. That includes identify: when identify cannot be reached
  the answer is 200 with `"customer": null` and `customer` in `missing`, so a
  screen can still show what the other services know (the caller can tell a
  degraded answer by `missing` being non-empty).
* List parts accept a JSON list or an object wrapping it in `items`, `data`
  or `results` (whichever the service uses for its pages).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson
from pydantic import BaseModel, Field, create_model

from gateway.upstream import UpstreamError, Upstreams, UpstreamTimeout

TIMELINE_LIMIT = 10


@dataclass(frozen=True)
class Part:
    name: str  # the field of the answer
    service: str
    path: str  # with `{id}`
    is_list: bool
    description: str | None = None


PARTS: tuple[Part, ...] = (
    Part(
        "customer",
        "identify",
        "/v1/customers/{id}",
        False,
        "identify's customer; null when identify could not be reached",
    ),
    Part("lifecycle", "lifecycle", "/v1/customers/{id}/lifecycle", False),
    Part("loyalty", "lifecycle", "/v1/customers/{id}/loyalty", False, "Loyalty points balance, tier and ledger"),
    Part(
        "timeline",
        "engage",
        f"/v1/customers/{{id}}/timeline?limit={TIMELINE_LIMIT}",
        True,
        f"The {TIMELINE_LIMIT} most recent timeline entries (engage)",
    ),
    Part("offers", "value", "/v1/customers/{id}/offers", True),
    Part(
        "consent",
        "engage",
        "/v1/customers/{id}/consent",
        False,
        "The customer's current consent per purpose and channel and the newest ledger entries (engage)",
    ),
    Part("ideas", "value", "/v1/customers/{id}/ideas", True, "The ideas the customer proposed, newest first (value)"),
    Part("promotions", "value", "/v1/customers/{id}/promotions", True, "The campaigns the customer was in (value)"),
    Part("referrals", "network", "/v1/customers/{id}/referrals", True),
    Part(
        "network",
        "network",
        "/v1/customers/{id}/network",
        False,
        "The customer's current relations to stakeholders (account manager, resellers, suppliers, introducers) "
        "and their history (network)",
    ),
    Part(
        "playbooks",
        "lifecycle",
        "/v1/customers/{id}/playbooks",
        True,
        "The retention and win-back playbooks the customer entered, newest first (lifecycle)",
    ),
    Part(
        "communities",
        "engage",
        "/v1/customers/{id}/communities",
        True,
        "The communities the customer is or was in (engage)",
    ),
    Part("conversations", "engage", "/v1/customers/{id}/conversations", True),
    Part("feedback", "engage", "/v1/customers/{id}/feedback", True, "The customer's survey responses (engage)"),
    Part("tickets", "lifecycle", "/v1/customers/{id}/tickets", True, "The customer's after-sales tickets (lifecycle)"),
)


class MissingPart(BaseModel):
    part: str
    service: str
    reason: str


def _field(part: Part) -> Any:
    kind: Any = list if part.is_list else dict | None
    return (kind, Field(description=part.description)) if part.description else (kind, ...)


# The 360 answer: one field per part (empty when the part could not be had), and `missing`.
Customer360: type[BaseModel] = create_model(
    "Customer360",
    __module__=__name__,
    **{part.name: _field(part) for part in PARTS},
    missing=(list[MissingPart], Field(description="Parts that could not be fetched, and why")),
)

_LIST_KEYS = ("items", "data", "results")


class CustomerNotFound(Exception):
    pass


def _as_list(value: Any) -> list[Any] | None:
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        for key in _LIST_KEYS:
            inner = value.get(key)
            if isinstance(inner, list):
                return inner
    return None


async def compose_360(
    upstreams: Upstreams,
    customer_id: str,
    *,
    request_id: str,
    correlation_id: str,
    timeout: float,
    on_upstream_error: Callable[[str, str], None] | None = None,
) -> dict[str, Any]:
    """Fetch the parts in parallel; raise CustomerNotFound when identify says 404."""

    quoted = quote(customer_id, safe="")
    headers = (
        f"accept: application/json\r\nx-request-id: {request_id}\r\nx-correlation-id: {correlation_id}\r\n"
    ).encode("latin-1")
    results = await asyncio.gather(
        *(
            upstreams[part.service].request(
                "GET", part.path.replace("{id}", quoted).encode("ascii"), headers, timeout=timeout
            )
            for part in PARTS
        ),
        return_exceptions=True,
    )

    view: dict[str, Any] = {}
    missing: list[dict[str, str]] = []
    for part, result in zip(PARTS, results):
        empty: Any = [] if part.is_list else None
        view[part.name] = empty
        if isinstance(result, BaseException):
            if not isinstance(result, UpstreamError):
                raise result
            if on_upstream_error is not None:
                on_upstream_error(part.service, result.kind)
            reason = (
                f"{part.service} timed out" if isinstance(result, UpstreamTimeout) else f"{part.service} unavailable"
            )
            missing.append({"part": part.name, "service": part.service, "reason": reason})
            continue
        if result.status == 404:
            if part.name == "customer":
                raise CustomerNotFound(customer_id)
            continue
        if result.status != 200:
            missing.append(
                {"part": part.name, "service": part.service, "reason": f"{part.service} answered {result.status}"}
            )
            continue
        try:
            value = orjson.loads(result.body)
        except orjson.JSONDecodeError:
            missing.append({"part": part.name, "service": part.service, "reason": f"{part.service} answered non-JSON"})
            continue
        if part.is_list:
            value = _as_list(value)
            if value is None:
                missing.append(
                    {
                        "part": part.name,
                        "service": part.service,
                        "reason": f"{part.service} answered an unexpected shape",
                    }
                )
                continue
        view[part.name] = value
    view["missing"] = missing
    return view
