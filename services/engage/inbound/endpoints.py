"""HTTP API of inbound email (thin): the mail provider's webhook, the unmatched list, linking."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status

from services.engage.conversations.schemas import InboundResult, MessageLink, MessageOut, MessagePage
from services.engage.conversations.service import unmatched
from services.engage.inbound import service
from services.engage.inbound.parse import Bounce, ParsedMail
from services.engage.inbound.service import MAX_INBOUND_BYTES
from shared.http.deps import ReadSession, WriteSession
from shared.http.errors import AppError
from shared.http.pagination import PagingByTime

router = APIRouter(prefix="/v1", tags=["engage: inbound email"])

RAW_TYPES = ("message/rfc822", "application/octet-stream")


class UnsupportedMediaType(AppError):
    status_code = 415
    error = "unsupported_media_type"


class TooLarge(AppError):
    status_code = 413
    error = "payload_too_large"


async def _read_mail(request: Request) -> ParsedMail | Bounce:
    """The posted message, read and parsed before the request's transaction starts."""
    kind = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if kind not in RAW_TYPES:
        raise UnsupportedMediaType(f"post the raw message as {' or '.join(RAW_TYPES)}, not {kind or 'no type'}")
    raw = await request.body()
    if len(raw) > MAX_INBOUND_BYTES:
        raise TooLarge(f"an inbound email here may have at most {MAX_INBOUND_BYTES} bytes")
    return service.read(raw)


# Declared before the session: FastAPI resolves dependencies in order.
InboundMail = Annotated[ParsedMail | Bounce, Depends(_read_mail)]


@router.post(
    "/channels/email/inbound",
    response_model=InboundResult,
    status_code=status.HTTP_201_CREATED,
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The raw RFC 5322 message, as the mail provider received it (at most 25 MiB)",
            "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in RAW_TYPES},
        }
    },
    responses={
        200: {"model": InboundResult, "description": "A Message-ID seen before, or a bounce report"},
        415: {
            "description": "The body is not message/rfc822 or application/octet-stream (`unsupported_media_type`)",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        },
    },
)
async def inbound_email(mail: InboundMail, response: Response, session: WriteSession):
    """A mail provider's inbound webhook: the raw message as the body (Content-Type message/rfc822 or
    application/octet-stream). 201 when stored (threaded to a customer, or kept as unmatched), 200 for
    a Message-ID stored before and for a delivery status notification (it marks its message bounced).
    A malformed message is 422 saying why, and nothing is stored."""
    created, result = await service.receive(session=session, parsed=mail)
    if not created:
        response.status_code = status.HTTP_200_OK
    return result


@router.get("/channels/email/unmatched", response_model=MessagePage)
async def unmatched_email(session: ReadSession, page: PagingByTime):
    """Inbound mail no customer was found for, newest first: link each with POST /v1/messages/{id}/link."""
    rows = await unmatched(session=session, before=page.after, limit=page.fetch)
    return page.of(rows, lambda row: (row["created_at"], row["id"]))


@router.post("/messages/{message_id}/link", response_model=MessageOut)
async def link_message(message_id: str, body: MessageLink, session: WriteSession):
    """Give an unmatched inbound email to its customer: it joins the customer's open email
    conversation (or a new one) and crm.engage.message.received is emitted."""
    return await service.link(session=session, message_id=message_id, customer_id=body.customer_id)
