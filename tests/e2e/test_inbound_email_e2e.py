"""End to end: a mail provider posts a customer's email with a large attachment through the
gateway (inbound email's own 25 MiB limit), staff read it, download the attachment and see the
conversation in the customer's 360 view (the running suite, `valuechain run`)."""

from __future__ import annotations

import base64
import hashlib

from tests.e2e.harness import unique, unique_email
from tests.e2e.test_value_chain import _json_when

MIB = 1024 * 1024


def _mail_with_attachment(content: bytes, sender: str, message_id: str) -> bytes:
    encoded = base64.encodebytes(content).decode()
    return (
        f"From: Grace <{sender}>\r\n"
        "To: shop@valuechain.localhost\r\n"
        "Subject: Photos of the damaged parcel\r\n"
        f"Message-ID: {message_id}\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="XX"\r\n\r\n'
        "--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe box was crushed, photos attached.\r\n"
        "--XX\r\nContent-Type: image/jpeg\r\n"
        'Content-Disposition: attachment; filename="parcel.jpg"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
        f"{encoded}\r\n--XX--\r\n"
    ).encode()


async def test_inbound_email_through_the_gateway_up_to_25_mib(running_suite):
    async with running_suite.client() as gw:
        address = unique_email("grace")
        grace = await gw.post("/v1/customers", json={"email": address, "name": "Grace"})
        assert grace.status_code == 201, grace.text
        customer_id = grace.json()["id"]
        # engage knows her address once crm.identify.customer.created is consumed.
        await _json_when(gw, f"/v1/customers/{customer_id}/timeline", lambda b: len(b["items"]) >= 1, "engage knows")

        photo = bytes(range(256)) * (2 * MIB // 256)  # 2 MiB: over the 1 MiB of JSON routes
        raw = _mail_with_attachment(photo, address, f"<{unique()}@example.com>")
        posted = await gw.post(
            "/v1/channels/email/inbound", content=raw, headers={"content-type": "message/rfc822"}, timeout=60
        )
        assert posted.status_code == 201, posted.text
        message = posted.json()["message"]
        assert message["customer_id"] == customer_id and posted.json()["outcome"] == "received"
        [attachment] = message["attachments"]
        assert attachment["size"] == len(photo) and attachment["sha256"] == hashlib.sha256(photo).hexdigest()

        download = await gw.get(f"/v1/messages/{message['id']}/attachments/{attachment['id']}")
        assert download.status_code == 200 and download.content == photo
        assert download.headers["x-content-type-options"] == "nosniff"
        assert download.headers["content-disposition"].startswith("attachment;")

        too_large = await gw.post(
            "/v1/channels/email/inbound",
            content=b"x" * (25 * MIB + 1),
            headers={"content-type": "message/rfc822"},
            timeout=60,
        )
        assert (too_large.status_code, too_large.json()["error"]) == (413, "payload_too_large")
        # Other routes keep the 1 MiB limit.
        big_json = await gw.post("/v1/messages", content=b"{" + b" " * (MIB + 1) + b"}", timeout=60)
        assert big_json.status_code == 413

        view = await _json_when(
            gw,
            f"/v1/customers/{customer_id}/360",
            lambda b: b["conversations"] and any(i["type"] == "crm.engage.message.received" for i in b["timeline"]),
            "the conversation and the message in the 360",
        )
        assert view["conversations"][0]["id"] == message["conversation_id"]
