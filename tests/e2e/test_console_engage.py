"""The console's Engage page in a real browser: an agent answers a customer's email (the reply
goes out through engage's send queue, to var/mail/ in the shared suite) and records a consent
change; a marketer reads NPS with its confidence band, over the test's own window, against
GET /v1/feedback/report."""

from __future__ import annotations

import email
from datetime import UTC, datetime, timedelta
from email import policy

from tests.e2e.console import api_key, screenshot, sign_in
from tests.e2e.harness import unique, unique_email
from tests.e2e.test_value_chain import _json_when
from tests.support import wait_until


async def test_an_agent_opens_a_customers_email_replies_and_records_consent(console, running_suite):
    async with running_suite.client() as gw:
        address = unique_email("ines")
        made = await gw.post("/v1/customers", json={"email": address, "name": "Inès Marchand"})
        assert made.status_code == 201, made.text
        customer_id = made.json()["id"]
        # engage knows her address once crm.identify.customer.created is consumed.
        await _json_when(gw, f"/v1/customers/{customer_id}/timeline", lambda b: len(b["items"]) >= 1, "engage knows")
        subject = unique("Where is my parcel? ")
        message_id = f"<{unique()}@example.com>"
        raw = (
            f"From: Ines <{address}>\r\nTo: shop@valuechain.localhost\r\nSubject: {subject}\r\n"
            f"Message-ID: {message_id}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            "It has been a week. <script>alert(1)</script>\r\n"
        ).encode()
        posted = await gw.post("/v1/channels/email/inbound", content=raw, headers={"content-type": "message/rfc822"})
        assert posted.status_code == 201 and posted.json()["outcome"] == "received", posted.text
        conversation_id = posted.json()["message"]["conversation_id"]
        granted = await gw.post(
            f"/v1/customers/{customer_id}/consent",
            json={"purpose": "marketing", "channel": "email", "granted": True, "legal_basis": "consent"},
        )
        assert granted.status_code == 201, granted.text

    await sign_in(console, await api_key(running_suite, "agent"))
    page = console.page
    await console.open("#/engage")
    await page.get_by_label("Customer id", exact=True).fill(customer_id)
    await page.get_by_role("button", name="Show conversations").click()
    await page.get_by_role("link", name=subject).click()
    await page.get_by_role("heading", level=1, name=subject).wait_for()
    # The customer's text is text: the markup shows as typed.
    await page.get_by_text("It has been a week. <script>alert(1)</script>").wait_for()

    await page.get_by_role("textbox", name="Reply").fill("It left our warehouse today.\nSorry for the wait.")
    await page.get_by_role("button", name="Send reply").click()
    await page.get_by_text("Reply queued: engage's sender emails it to the customer.").wait_for()
    await page.get_by_role("heading", name="Our reply", exact=False).wait_for()
    await screenshot(console, "engage-conversation-reply")

    async with running_suite.client() as gw:
        thread = (await gw.get(f"/v1/conversations/{conversation_id}/messages")).json()["items"]
        [reply] = [m for m in thread if m["direction"] == "outbound"]
        assert reply["body"] == "It left our warehouse today.\nSorry for the wait."
        assert (reply["subject"], reply["to_address"], reply["in_reply_to"]) == (f"Re: {subject}", address, message_id)
        await _json_when(gw, f"/v1/emails/{reply['id']}", lambda b: b["status"] == "sent", "the reply sent")
    eml = running_suite.var_dir / "mail" / f"{reply['id']}.eml"
    await wait_until(eml.exists, what="the reply's .eml file")
    sent = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert (sent["To"], sent["In-Reply-To"]) == (address, message_id)

    # From the conversation to the customer's consent: the ledger, and a withdrawal recorded.
    await page.get_by_role("link", name="This customer's consent").click()
    await page.get_by_role("heading", level=1, name="Consent").wait_for()
    ledger = page.get_by_role("table", name="Every change, newest first")
    await ledger.get_by_role("cell", name="granted").wait_for()
    await page.get_by_label("Purpose").select_option("marketing")
    await page.get_by_label("Channel").select_option("email")
    await page.get_by_label("Granted or withdrawn").select_option("withdrawn")
    await page.get_by_label("Legal basis").select_option("consent")
    await page.get_by_label("Source (a code, optional)").fill("console")
    await page.get_by_role("button", name="Record").click()
    await page.get_by_text("Recorded.", exact=True).wait_for()
    await ledger.get_by_role("cell", name="withdrawn").wait_for()
    await screenshot(console, "engage-consent-ledger")
    async with running_suite.client() as gw:
        consent = (await gw.get(f"/v1/customers/{customer_id}/consent")).json()
    assert [(c["purpose"], c["channel"], c["granted"]) for c in consent["current"]] == [("marketing", "email", False)]
    assert consent["items"][0]["source"] == "console"


def _local(moment: datetime) -> str:
    """What a datetime-local input holds: local time to the second, no zone (the browser runs here)."""
    return moment.astimezone().strftime("%Y-%m-%dT%H:%M:%S")


async def test_survey_results_draw_nps_with_its_band_and_match_the_report(console, running_suite):
    # The test's own window: from its start to just after its last answer (responses arrive "now").
    started = datetime.now(UTC).replace(microsecond=0)
    async with running_suite.client() as gw:
        made = await gw.post("/v1/customers", json={"email": unique_email("nps"), "name": "Nadia"})
        assert made.status_code == 201, made.text
        customer_id = made.json()["id"]
        questions = [
            {"id": "nps", "type": "nps", "text": "How likely are you to recommend us?"},
            {"id": "csat", "type": "csat", "text": "How satisfied are you?"},
            {"id": "ces", "type": "ces", "text": "How easy was it?"},
        ]
        survey = await gw.post("/v1/surveys", json={"name": unique("Console NPS "), "questions": questions})
        assert survey.status_code == 201, survey.text
        path = f"/v1/surveys/{survey.json()['id']}/responses"
        # NPS 10, 10, 9, 8, 5, 2: three promoters, one passive, two detractors (a band, not one class).
        answers = [(10, 5, 7), (10, 4, 6), (9, 4, 5), (8, 3, 6), (5, 5, 4), (2, 2, 3)]

        async def first():
            body = {"customer_id": customer_id, "answers": {"nps": 10, "csat": 5, "ces": 7}}
            answer = await gw.post(path, json=body)
            return answer if answer.status_code != 422 else None  # until engage knows the customer

        assert (await wait_until(first, timeout=15, interval=0.05, what="engage knows")).status_code == 201
        for nps, csat, ces in answers[1:]:
            body = {"customer_id": customer_id, "answers": {"nps": nps, "csat": csat, "ces": ces}}
            assert (await gw.post(path, json=body)).status_code == 201
        ended = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
        window = {"from": started.isoformat(), "to": ended.isoformat()}
        report = (await gw.get("/v1/feedback/report", params={"metric": "nps", "by": "month", **window})).json()
    [cell] = report["cells"]
    assert cell["responses"] == 6 and cell["low"] is not None

    await sign_in(console, await api_key(running_suite, "marketer"))
    page = console.page
    await console.open("#/engage")
    await page.get_by_label("From", exact=True).fill(_local(started))
    await page.get_by_label("To (empty: now)").fill(_local(ended))
    await page.get_by_role("button", name="Show results").click()

    nps = page.get_by_test_id("nps-chart")
    expected = [cell["key"], cell["score"], cell["low"], cell["high"], 6, 3, 1, 2]

    async def table_matches():
        rows = await nps.locator("tbody tr").evaluate_all("rows => rows.map(r => [...r.cells].map(c => c.textContent))")
        if len(rows) != 1 or rows[0][0] != cell["key"]:
            return False
        shown = [float(text.replace(",", "").replace("−", "-")) for text in rows[0][1:]]
        return all(abs(a - b) <= 0.05 for a, b in zip(shown, expected[1:], strict=True))

    await wait_until(table_matches, timeout=15, interval=0.1, what="the NPS table of the test's window")
    await nps.get_by_text("Show the numbers").click()
    plot = nps.locator(".plot")
    await plot.locator(".main-svg").first.wait_for()
    traces = await plot.evaluate("el => el.data.map(t => ({name: t.name, fill: t.fill || null, y: t.y}))")
    band = next(t for t in traces if t["fill"] == "tonexty")
    assert band["name"] == "95% interval" and band["y"] == [cell["high"]]
    assert next(t for t in traces if t["name"] == "NPS")["y"] == [cell["score"]]
    await screenshot(console, "engage-survey-results")

    # One segment: the customer has none yet, so the champions have no answers in this window.
    await page.get_by_label("Segment", exact=True).select_option("champions")
    await page.get_by_role("button", name="Show results").click()
    await page.get_by_text("No NPS answers from the champions segment in this period.").wait_for()
