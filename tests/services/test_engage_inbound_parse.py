"""Reading raw inbound mail (services/engage/inbound/parse.py): pure, no database."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.engage.inbound.parse import Bounce, Malformed, ParsedMail, parse


def test_a_reply_names_the_messages_it_answers_nearest_first_and_keeps_its_date_in_utc():
    mail = parse(
        b"From: =?utf-8?q?Ad=C3=A9le?= <adele@example.com>\r\n"
        b"To: Shop <shop@example.com>, other@example.com\r\n"
        b"Subject: =?utf-8?q?R=C3=A9ponse?=\r\n"
        b"Date: Tue, 01 Dec 2026 12:00:00 +0200\r\n"
        b"Message-ID: <c@x>\r\n"
        b"In-Reply-To: <b@x>\r\n"
        b"References: <a@x> <b@x>\r\n\r\n"
        b"Merci\r\n"
    )
    assert isinstance(mail, ParsedMail)
    assert (mail.from_address, mail.to_address, mail.subject, mail.body) == (
        "adele@example.com",
        "shop@example.com",
        "Réponse",
        "Merci",
    )
    assert mail.thread_ids == ["<b@x>", "<a@x>"]
    assert mail.date == datetime(2026, 12, 1, 10, tzinfo=UTC)


def test_an_html_only_mail_keeps_its_markup_as_text():
    mail = parse(b"From: a@example.com\r\nContent-Type: text/html\r\n\r\n<p>Hi <b>there</b></p>\r\n")
    assert isinstance(mail, ParsedMail) and mail.body == "<p>Hi <b>there</b></p>"


def test_a_dsn_with_the_original_message_attached_and_no_status_is_a_hard_failure():
    report = parse(
        b"From: postmaster@example.net\r\n"
        b'Content-Type: multipart/report; report-type="delivery-status"; boundary="B"\r\n\r\n'
        b"--B\r\nContent-Type: text/plain\r\n\r\nFailed.\r\n"
        b"--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; example.net\r\nOriginal-Message-ID: <ours-1@shop>\r\n\r\n"
        b"Original-Recipient: rfc822;bob@example.com\r\nAction: failed\r\n\r\n"
        b"--B\r\nContent-Type: message/rfc822\r\n\r\n"
        b"From: shop@example.com\r\nMessage-ID: <ours-2@shop>\r\n\r\nHello\r\n"
        b"--B--\r\n"
    )
    assert isinstance(report, Bounce)
    assert report.original_message_ids == ["<ours-1@shop>", "<ours-2@shop>"]
    assert (report.recipient, report.failed, report.hard) == ("bob@example.com", True, True)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"  \r\n", "empty"),
        (b"no headers here at all\r\n", "no header section"),
        (b"Subject: hi\r\n\r\nbody\r\n", "no From address"),
        (b"From: <@>\r\n\r\nbody\r\n", "no From address"),
        (b"From: a@example.com\r\nContent-Type: multipart/mixed; boundary=Z\r\n\r\n--Z--\r\n", "no body"),
    ],
)
def test_malformed_mail_is_refused_with_its_reason(raw, why):
    with pytest.raises(Malformed, match=why):
        parse(raw)
