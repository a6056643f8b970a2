"""docs/partners.md's receiver example is examples/webhook_receiver.py, and it works: run as
a process, it accepts a delivery signed with standardwebhooks and refuses a forged one."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
from standardwebhooks import Webhook

from services.network.webhooks.signing import new_secret
from tests.support import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]


def doc_example() -> str:
    text = (ROOT / "docs" / "partners.md").read_text(encoding="utf-8")
    section = text.split("\n## Verifying signatures\n", 1)[1].split("\n## ", 1)[0]
    [code] = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    return code


def test_the_doc_example_is_the_example_file():
    example = (ROOT / "examples" / "webhook_receiver.py").read_text(encoding="utf-8")
    assert example.split("# --- receiver ---\n", 1)[1] == doc_example()


async def test_the_doc_example_verifies_a_signed_delivery_and_refuses_a_forged_one(tmp_path):
    secret, port = new_secret(), free_port()
    script = tmp_path / "receiver.py"
    script.write_text(doc_example())
    env = {**os.environ, "WEBHOOK_SECRET": secret, "PORT": str(port)}
    process = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        body = b'{"id": "evt-1", "type": "crm.identify.customer.created", "data": {"id": "c1"}}'
        headers = {
            "webhook-id": "evt-1",
            "webhook-timestamp": str(int(datetime.now(UTC).timestamp())),
            "webhook-signature": Webhook(secret).sign("evt-1", datetime.now(UTC), body.decode()),
            "content-type": "application/json",
        }
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

            async def listening():
                try:
                    return await client.post("/", content=body, headers=headers)
                except httpx.ConnectError:
                    return None

            accepted = await wait_until(listening, what="the receiver listening")
            assert accepted.status_code == 204
            forged = await client.post("/", content=body.replace(b"c1", b"c2"), headers=headers)
            assert forged.status_code == 400
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=5)
    assert out.decode().splitlines() == ["crm.identify.customer.created {'id': 'c1'}"]
