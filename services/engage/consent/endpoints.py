"""engage's consent HTTP API (thin): a customer's consent, batches, and the public
unsubscribe pages of RFC 8058 links."""

from __future__ import annotations

from collections import Counter
from urllib.parse import parse_qs

from fastapi import APIRouter, Request, status
from fastapi.responses import HTMLResponse

from services.engage.consent import pages, service
from services.engage.consent.schemas import (
    ConsentBatch,
    ConsentBatchOut,
    ConsentCreate,
    ConsentEntryOut,
    CustomerConsent,
)
from shared.db.database import utcnow
from shared.http.deps import ReadSession, WriteSession
from shared.http.errors import field_error
from shared.http.pagination import PagingByTime
from shared.signed_links import SignedLinks

router = APIRouter(prefix="/v1", tags=["engage"])


@router.post(
    "/customers/{customer_id}/consent",
    status_code=status.HTTP_201_CREATED,
    response_model=ConsentEntryOut,
    responses={404: {"description": "No such customer"}, 409: {"description": "`customer_merged`"}},
)
async def record_consent(customer_id: str, body: ConsentCreate, session: WriteSession):
    """Record one consent entry (granted or withdrawn) for a purpose on a channel.

    Appended to the customer's ledger and announced as `crm.engage.consent.changed`."""
    return await service.record_one(session=session, customer_id=customer_id, data=body, now=utcnow())


@router.get(
    "/customers/{customer_id}/consent",
    response_model=CustomerConsent,
    responses={404: {"description": "No such customer"}, 409: {"description": "`customer_merged`"}},
)
async def customer_consent(customer_id: str, session: ReadSession, page: PagingByTime):
    """The customer's current consent per purpose and channel, and the ledger (newest first, paginated)."""
    current, history = await service.consent_of(
        session=session, customer_id=customer_id, before=page.after, limit=page.fetch
    )
    return {
        "customer_id": customer_id,
        "current": current,
        **page.of(history, lambda entry: (entry["changed_at"], entry["id"])),
    }


@router.post("/consent:batch", response_model=ConsentBatchOut)
async def record_consent_batch(body: ConsentBatch, session: WriteSession):
    """Record 1 to 1,000 consent entries for many customers at once, answered item by item.

    One transaction (a business moving from another system): each item is recorded, or
    gets its own error naming its index and field (invalid, an unknown customer, a merged
    one); a bad item does not stop the others."""
    items = await service.record_batch(session=session, items=body.items, now=utcnow())
    counts = Counter(item["status"] for item in items)
    return {"items": items, "recorded": counts["recorded"], "errors": counts["error"]}


# --- the unsubscribe link (public: the signed token is the only credential) -------------


def _links(request: Request) -> SignedLinks:
    return SignedLinks.from_settings(request.app.state.runtime.settings)


@router.get(
    "/unsubscribe/{token}",
    response_class=HTMLResponse,
    responses={200: {"content": {"text/html": {}}}, 400: {"description": "`bad_token`: tampered with or expired"}},
)
async def unsubscribe_page(token: str, request: Request):
    """The unsubscribe link's confirmation page (HTML); it changes nothing.

    A form that POSTs back. Mail scanners follow links, so a GET never unsubscribes (RFC 8058)."""
    _customer_id, channel = service.unsubscribe_target(_links(request), token)
    return pages.confirm(channel)


ONE_CLICK = "One-Click"


@router.post(
    "/unsubscribe/{token}",
    response_class=HTMLResponse,
    responses={
        200: {"content": {"text/html": {}}},
        400: {"description": "`bad_token`: tampered with or expired; nothing changes"},
        422: {"description": "A body that is not RFC 8058's `List-Unsubscribe=One-Click`"},
    },
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "properties": {"List-Unsubscribe": {"type": "string", "enum": [ONE_CLICK]}},
                    }
                }
            },
        }
    },
)
async def unsubscribe(token: str, request: Request, session: WriteSession):
    """Withdraw marketing consent on the link's channel (RFC 8058 one-click POST).

    The body is `List-Unsubscribe=One-Click`, form-encoded, or none. Unsubscribing again
    changes nothing and answers the same page."""
    customer_id, channel = service.unsubscribe_target(_links(request), token)
    await _one_click_body(request)
    await service.unsubscribe(session=session, customer_id=customer_id, channel=channel, now=utcnow())
    return pages.done(channel)


async def _one_click_body(request: Request) -> None:
    """An empty body, or RFC 8058's form (url-encoded or multipart); anything else is 422."""

    body = await request.body()
    if not body.strip():
        return
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        form = await request.form()
        values = [str(value) for value in form.getlist("List-Unsubscribe")]
    elif content_type in ("application/x-www-form-urlencoded", ""):
        values = parse_qs(body.decode("latin-1"), keep_blank_values=True).get("List-Unsubscribe", [])
    else:
        values = []
    if values != [ONE_CLICK]:
        raise field_error("body.List-Unsubscribe", f"the body must be List-Unsubscribe={ONE_CLICK} (RFC 8058)")
