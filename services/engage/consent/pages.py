"""The two small HTML pages of an unsubscribe link: the confirmation (a form that POSTs
back to the same address) and the answer. No script, no style sheet, no image, nothing
fetched: a strict Content-Security-Policy says so to the browser, and the pages name no
person (they may be opened by whoever the mail was forwarded to)."""

from __future__ import annotations

from html import escape

from fastapi.responses import HTMLResponse

# Nothing may load; the form may post only to this origin; no framing; the token in the
# address is not sent on as a Referer.
CSP = "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "x-frame-options": "DENY",
}

_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>{title}</title></head>
<body>
<h1>{title}</h1>
{body}
</body>
</html>
"""


def _channel(channel: str) -> str:
    return escape("email" if channel == "email" else channel.replace("_", " "))


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(title=escape(title), body=body), headers=HEADERS)


def confirm(channel: str) -> HTMLResponse:
    """GET: asks; changes nothing."""

    return _page(
        "Unsubscribe",
        f"<p>Stop receiving marketing messages by {_channel(channel)}?</p>\n"
        '<form method="post">\n'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">\n'
        '<button type="submit">Unsubscribe</button>\n'
        "</form>",
    )


def done(channel: str) -> HTMLResponse:
    """POST: the answer, the same however often it is posted."""

    return _page(
        "You are unsubscribed",
        f"<p>You will receive no more marketing messages by {_channel(channel)}. "
        "Messages about your orders and requests still reach you.</p>",
    )
