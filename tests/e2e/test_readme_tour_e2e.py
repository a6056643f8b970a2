"""The README's tour, run as a reader runs it, then the whole event feed read after it (issue 16:
"a test reads the whole feed after the README tour and finds every event once, in order").

The shell blocks of the README's tour sections ("A short tour", "Talk with customers", "Keep
customers", "Partners and the network") run in order in one bash, against a suite of this
module's own: the tour uses fixed emails (ada@example.com, ...), sets the fx rates, the referral
programme and a default SLA policy, and runs sweeps: all of which would change what the shared
suite's other modules see. Only what a clone has no say over is changed in the text: the
gateway's address and key, the receiver's port, and where `var/` and `.venv/bin/python` are.

The tour's own `sleep`s are a reader's pauses, not a test's waits: this test does not judge the
printed lines (a slow machine may print a step before its effect); it waits, through the API,
for the tour's last effects (the webhook delivered, Grace's referral rewarded) and then reads
the whole feed with tests/e2e/feed_check.py.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys

import pytest

from tests.e2e.feed_check import assert_the_whole_feed
from tests.e2e.harness import ROOT, scratch_suite
from tests.support import free_port, wait_until

SECTIONS = ("A short tour", "Talk with customers", "Keep customers", "Partners and the network")


def tour_script(readme: str) -> str:
    blocks = []
    for section in SECTIONS:
        found = re.search(r"^## " + re.escape(section) + r"\n(.*?)(?=^## )", readme, re.S | re.M)
        assert found, f"README has no section {section!r}"
        section_blocks = re.findall(r"```sh\n(.*?)```", found.group(1), re.S)
        assert section_blocks, f"README's {section!r} has no sh block"
        blocks += section_blocks
    return "\n".join(blocks)


@pytest.fixture(scope="module")
def tour_suite(tmp_path_factory):
    """The module's own suite (see the docstring), its links pointing at its own gateway."""

    var_dir = tmp_path_factory.mktemp("tour") / "var"
    port = free_port()
    saved = os.environ.get("VALUECHAIN_PUBLIC_BASE_URL")
    os.environ["VALUECHAIN_PUBLIC_BASE_URL"] = f"http://127.0.0.1:{port}"
    try:
        with scratch_suite(var_dir, "e2e-tour", gateway_port=port) as suite:
            yield suite
    finally:
        if saved is None:
            os.environ.pop("VALUECHAIN_PUBLIC_BASE_URL", None)
        else:
            os.environ["VALUECHAIN_PUBLIC_BASE_URL"] = saved


async def test_the_whole_feed_after_the_readme_tour_holds_every_public_event_once_in_order(tour_suite, tmp_path):
    receiver_port = free_port()
    script = tour_script((ROOT / "README.md").read_text())
    for old, new in (
        ("GW=http://127.0.0.1:8000", f"GW={tour_suite.gateway_url}"),
        ("$(cat var/admin-api-key)", tour_suite.admin_key),
        ("var/mail/", f"{tour_suite.var_dir}/mail/"),
        (".venv/bin/python", sys.executable),
        ("127.0.0.1:8900", f"127.0.0.1:{receiver_port}"),
    ):
        assert old in script, f"the tour no longer has {old!r}: update this test"
        script = script.replace(old, new)
    env = {**os.environ, "PORT": str(receiver_port), "PYTHONPATH": str(ROOT)}
    tour = subprocess.Popen(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its background receiver goes with it, whatever happens
    )
    try:
        stdout, stderr = tour.communicate(timeout=300)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(tour.pid, signal.SIGTERM)
    output = stdout[-3000:] + stderr[-3000:]
    assert tour.returncode == 0, output

    async with tour_suite.client() as gw:
        grace = (await gw.get("/v1/customers", params={"email": "grace@example.com"})).json()["items"]
        assert len(grace) == 1, output

        async def rewarded():
            referrals = (await gw.get(f"/v1/customers/{grace[0]['id']}/referrals")).json()["items"]
            return referrals and referrals[0]["status"] == "rewarded"

        await wait_until(rewarded, timeout=30, what="Grace's referral rewarded, the tour's last effect")
        hooks = (await gw.get("/v1/webhooks")).json()["items"]
        assert len(hooks) == 1

        async def delivered():
            items = (await gw.get(f"/v1/webhooks/{hooks[0]['id']}/deliveries")).json()["items"]
            return any(item["outcome"] == "delivered" for item in items)

        await wait_until(delivered, timeout=30, what="the tour's purchase delivered to its receiver")
        held = await assert_the_whole_feed(gw, tour_suite.nats_url)
    # The tour's customers, purchases, stage changes, offers, tickets, referrals and more.
    assert held > 50
