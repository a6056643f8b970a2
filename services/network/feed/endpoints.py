"""GET /v1/events: the event feed (scope events:read; docs/partners.md, "The event feed")."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from services.network.feed import service, stream
from services.network.feed.schemas import FeedPage
from shared.http.caller import CallerDep

router = APIRouter(prefix="/v1", tags=["network"])

MAX_LIMIT = 1000
CURSOR_DIGITS = 19  # a uint64, as the stream numbers its messages


@router.get(
    "/events",
    response_model=FeedPage,
    responses={
        409: {
            "description": "`cursor_expired`: `after` is older than the stream keeps; `oldest_cursor` names the oldest"
        },
        403: {"description": "`event_type_not_allowed`: every type asked for is outside the key's allowed types"},
    },
)
async def read_events(
    request: Request,
    caller: CallerDep,
    after: Annotated[
        str | None,
        Query(
            description="A cursor (`next_cursor` or an item's `cursor`): events after it. None: from the oldest kept",
            max_length=CURSOR_DIGITS,
            pattern=r"^[0-9]+$",
        ),
    ] = None,
    types: Annotated[
        list[str] | None,
        Query(
            description="Event types, or prefixes with `.*` (crm.identify.customer.*); comma-separated or repeated. "
            "None: every type the key may see"
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Events per page")] = 100,
) -> Response:
    """The public CloudEvents in stream order, each once, as far back as the stream keeps them
    (VALUECHAIN_STREAM_MAX_AGE_S). Poll with the page's `next_cursor` as `after`."""

    patterns = [p.strip() for value in types or () for p in value.split(",") if p.strip()]
    wanted, subject = service.narrow(patterns, caller.event_types)
    bus = request.app.state.runtime.bus
    try:
        nc = await stream.connection(bus).client()
    except stream.StreamUnavailable as exc:
        raise service.FeedUnavailable(f"the event stream cannot be read now: {exc}") from None
    result = await service.page(
        nc=nc,
        js=nc.jetstream(),
        stream_name=bus.stream,
        after=int(after) if after else 0,
        limit=limit,
        types=wanted,
        subject=subject,
        pii=caller.pii,
    )
    return Response(result.json(), media_type="application/json")
