"""The Operators page in a real browser: an admin sees every service's readiness and the dead
letters, makes an API key through the page (its secret shown once), finds it in the list, sees
its creation in the audit log, revokes it and sees that in the key's own audit trail."""

from __future__ import annotations

import re

from playwright.async_api import expect

from shared.settings import SERVICES
from tests.e2e.console import api_key, refresh_until, screenshot, sign_in
from tests.e2e.harness import unique


async def test_an_admin_checks_the_suite_and_makes_a_key_the_audit_log_shows(console, running_suite):
    await sign_in(console, await api_key(running_suite, "admin"))
    page = console.page
    await page.get_by_role("navigation", name="Pages").get_by_role("link", name="Operators").click()
    await page.get_by_role("heading", name="Operators", level=1).wait_for()

    for name in (*SERVICES, "nats"):
        await expect(page.get_by_test_id(f"ready-{name}")).to_contain_text("ready")
        await expect(page.get_by_test_id(f"ready-{name}").locator(".error")).to_have_count(0)
    dead_letters = page.get_by_role("table", name="Dead letters per service")
    for service in SERVICES:  # loaded for each: "none", or how many (the shared suite may have some)
        await expect(dead_letters.get_by_role("row").filter(has_text=service)).to_contain_text(re.compile("none|[0-9]"))

    name = unique("console-made-")
    await page.get_by_label("Name", exact=True).fill(name)
    await page.get_by_label("Role", exact=True).select_option("readonly")
    await page.get_by_role("button", name="Make the key").click()
    secret = await page.get_by_label("New API key").input_value()
    assert secret.startswith("vc_")
    async with running_suite.client() as gw:  # the key shown is a working key of that role
        me = await gw.get("/v1/me", headers={"Authorization": f"Bearer {secret}"})
        assert (me.status_code, me.json()["role"]) == (200, "readonly")

    row = page.get_by_role("table", name=re.compile("^API keys")).get_by_role("row").filter(has_text=name)
    await expect(row).to_contain_text("readonly")
    await expect(row).to_contain_text(f"vc_{secret[3:11]}")  # its prefix, never the secret

    # The audit log, only the signed-in admin's own entries: a fresh key, so its one write is this.
    await page.get_by_role("button", name="Only mine").click()
    entries = page.get_by_role("table", name="Audit entries, newest first")
    created = entries.get_by_role("row").filter(has_text="POST").filter(has_text="/v1/api-keys").filter(has_text="201")
    await refresh_until(created, page.get_by_role("button", name="Show entries"), timeout=15.0)

    # Revoked through the page, the key's own trail shows its creation (the handler names the new
    # key) and its revocation (its id is the path's parameter).
    await row.get_by_role("button", name=f"Revoke key {name}").click()
    await page.get_by_role("button", name="Revoke", exact=True).click()
    await expect(row).to_contain_text("revoked")
    await row.get_by_role("button", name=f"Audit trail of key {name}").click()
    revoked = entries.get_by_role("row").filter(has_text="DELETE").filter(has_text="/v1/api-keys/{id}")
    await refresh_until(revoked, page.get_by_role("button", name="Show entries"), timeout=15.0)
    await expect(entries.get_by_role("row").filter(has_text="POST").filter(has_text="/v1/api-keys")).to_have_count(1)
    await page.get_by_role("button", name="Verify", exact=True).click()
    await expect(page.get_by_text("The chain holds")).to_be_visible()
    await screenshot(console, "operators")
