"""The console against WCAG 2.1 AA, in a real browser: axe-core (the axe-playwright-python
package ships it) finds no violation on any page, colour contrast included; and the console
works by keyboard alone, with the focus visible."""

from __future__ import annotations

from axe_playwright_python.async_playwright import Axe
from playwright.async_api import expect

from tests.e2e.console import sign_in

PAGES = ("portfolio", "customers", "import", "engage", "value", "lifecycle", "partners", "operators")
WCAG_21_AA = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}


async def test_no_page_has_a_wcag_21_aa_violation(console, running_suite):
    await sign_in(console, running_suite.admin_key)
    page = console.page
    axe = Axe()
    found = {}
    for name in ("sign-in", *PAGES):
        if name == "sign-in":
            await page.evaluate("sessionStorage.clear()")
            await console.open()
            await page.get_by_label("API key").wait_for()
        else:
            if name == "portfolio":
                await sign_in(console, running_suite.admin_key)
            await console.open(f"#/{name}")
            await page.get_by_role("heading", level=1).first.wait_for()
            await expect(page.locator("main [aria-busy=true]")).to_have_count(0, timeout=30_000)
            await page.wait_for_load_state("networkidle")
        results = await axe.run(page, options=WCAG_21_AA)
        violations = results.response["violations"]
        if violations:
            found[name] = [(v["id"], v["impact"], [node["target"] for node in v["nodes"][:3]]) for v in violations]
    assert found == {}, found


async def focused(page) -> dict:
    return await page.evaluate(
        """() => {
            const el = document.activeElement;
            const style = getComputedStyle(el);
            return {tag: el.tagName, text: (el.innerText || el.value || el.getAttribute("aria-label") || "").trim(),
                    id: el.id, outline: style.outlineStyle, width: style.outlineWidth};
        }"""
    )


async def test_the_console_works_by_keyboard_alone_with_the_focus_visible(console, running_suite):
    page = console.page
    await console.open()
    await page.get_by_label("API key").wait_for()
    assert (await focused(page))["id"] == "api-key"  # the sign-in field has the focus on arrival
    await page.keyboard.type(running_suite.admin_key)
    await page.keyboard.press("Enter")
    await page.get_by_test_id("role").wait_for()

    await page.reload()
    await page.get_by_test_id("role").wait_for()
    await page.keyboard.press("Tab")
    skip = await focused(page)
    assert (skip["tag"], skip["text"]) == ("A", "Skip to the page")
    assert skip["outline"] == "solid" and skip["width"] == "3px"  # :focus-visible, console.css
    await page.keyboard.press("Tab")
    await page.keyboard.press("Tab")
    link = await focused(page)
    assert (link["tag"], link["text"]) == ("A", "Customers") and link["outline"] == "solid"
    await page.keyboard.press("Enter")
    await page.get_by_label("Search customers").wait_for()
    heading = await focused(page)
    assert (heading["tag"], heading["text"]) == ("H1", "Customers")  # a route change moves the focus to its heading
    await page.keyboard.press("Tab")
    assert (await focused(page))["id"] == "q"  # then straight on to the search
    await page.keyboard.type("zz-nobody-has-this-name")
    await page.get_by_test_id("search-status").get_by_text("0 customers shown.").wait_for()
