"""End to end: staff save a template and send a customer an email through the gateway; with
no SMTP server configured it lands in var/mail/ as an .eml file, and the customer's timeline
shows it sent (the running suite, `valuechain run`)."""

from __future__ import annotations

import asyncio
import email
from email import policy

from tests.e2e.harness import unique_email
from tests.e2e.test_value_chain import _json_when
from tests.support import wait_until


async def test_an_email_sent_through_the_gateway_is_written_to_var_mail(running_suite):
    async with running_suite.client() as gw:
        address = unique_email("ada")
        ada = (await gw.post("/v1/customers", json={"email": address, "name": "Ada Lovelace"})).json()
        template = await gw.post(
            "/v1/templates",
            json={"name": "Receipt", "purpose": "service", "subject": "Thank you, {{ first_name }}", "body": "Hi!"},
        )
        assert template.status_code == 201, template.text
        unknown = await gw.post(
            "/v1/templates", json={"name": "Bad", "purpose": "service", "subject": "x", "body": "{{ secret }}"}
        )
        assert unknown.status_code == 422 and unknown.json()["detail"][0]["field"] == "body.body", unknown.text
        # engage knows the customer once identify's created event reached it: until then 422.
        sent = None
        for _ in range(200):
            sent = await gw.post(
                "/v1/emails",
                json={"customer_id": ada["id"], "purpose": "service", "template_id": template.json()["id"]},
            )
            if sent.status_code != 422:
                break
            await asyncio.sleep(0.05)
        assert sent.status_code == 202, sent.text
        queued = sent.json()
        await _json_when(gw, f"/v1/emails/{queued['id']}", lambda b: b["status"] == "sent", "email sent")
        eml = running_suite.var_dir / "mail" / f"{queued['id']}.eml"
        await wait_until(eml.exists, what="the .eml file")
        message = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
        assert (message["To"], message["Subject"]) == (address, "Thank you, Ada")
        await _json_when(
            gw,
            f"/v1/customers/{ada['id']}/timeline",
            lambda b: any(item["type"] == "crm.engage.message.sent" for item in b["items"]),
            "the sent email on the timeline",
        )
