"""Outbound email's HTTP API: POST /v1/emails and GET /v1/emails/{id} (thin)."""

from __future__ import annotations

from fastapi import APIRouter, status

from services.engage.outbound import service
from services.engage.outbound.schemas import EmailIn, EmailOut
from shared.http.deps import ReadSession, WriteSession

router = APIRouter(prefix="/v1", tags=["engage: outbound mail and templates"])


@router.post("/emails", status_code=status.HTTP_202_ACCEPTED, response_model=EmailOut)
async def send_email(body: EmailIn, session: WriteSession):
    """Queue an email to a customer; the sender sends it (GET /v1/emails/{id} shows how it went).

    Marketing needs the customer's consent for email (409 `no_consent`) and stays within the
    frequency cap (409 `frequency_cap`); every email needs an address (409 `no_address`) that
    has not bounced (409 `undeliverable`). A template that cannot be filled in is 422."""
    return await service.send_email(session=session, data=body)


@router.get("/emails/{message_id}", response_model=EmailOut)
async def get_email(message_id: str, session: ReadSession):
    """One outbound email: its text, status, attempts and the server's last reply."""
    return await service.get_email(session=session, message_id=message_id)
