"""The console's sign-in, navigation by role, and its safety rules, in a real browser."""

from __future__ import annotations

import httpx

from tests.e2e.console import api_key, screenshot, sign_in


async def test_a_marketer_signs_in_and_sees_only_what_the_role_may(console, running_suite):
    key = await api_key(running_suite, "marketer")
    await sign_in(console, key)
    page = console.page
    nav = page.get_by_role("navigation", name="Pages")
    links = await nav.get_by_role("link").all_inner_texts()
    assert "Portfolio" in links and "Customers" in links and "Value" in links
    assert "Operators" not in links and "Import" not in links  # marketers hold neither ops nor imports:write
    assert await page.get_by_test_id("role").inner_text() == "marketer"
    # The key is in the tab's session storage, never in the address bar.
    assert key not in page.url
    assert await page.evaluate("sessionStorage.getItem('valuechain.credential')") == key
    await screenshot(console, "signed-in-marketer")


async def test_a_wrong_key_is_refused_with_a_message(console):
    await console.open()
    await console.page.get_by_label("API key").fill("not-a-key")
    await console.page.get_by_role("button", name="Sign in", exact=True).click()
    await console.page.get_by_text("That key was not accepted.").wait_for()


async def test_the_console_is_served_with_a_strict_content_security_policy(running_suite):
    async with httpx.AsyncClient(base_url=running_suite.gateway_url) as client:
        index = await client.get("/console/")
        script = await client.get("/console/static/js/main.js")
        plotly = await client.get("/console/vendor/plotly.min.js")
        redirect = await client.get("/console")
    assert index.status_code == 200 and "text/html" in index.headers["content-type"]
    csp = index.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "unsafe-eval" not in csp and "frame-ancestors 'none'" in csp
    assert "<script>" not in index.text  # no inline script: every script is a file of this origin
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert plotly.status_code == 200 and plotly.content.startswith(b"/**\n* plotly.js")
    assert redirect.status_code == 308 and redirect.headers["location"] == "/console/"
