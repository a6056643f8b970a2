"""`make run` twice: the second run keeps the first one's data; SIGTERM stops every process."""

from __future__ import annotations

import asyncio
import socket

from tests.e2e.harness import RunningSuite, postgres_databases


def _leftovers(suite: RunningSuite) -> list[str]:
    """The suite's ports that still accept connections after it stopped (every process binds one)."""

    listening = []
    for name, port in suite.ports.items():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                listening.append(f"{name}:{port}")
        except OSError:
            pass
    return listening


async def test_a_second_run_keeps_the_data_and_sigterm_stops_everything(tmp_path):
    urls, drops = await postgres_databases("rerun")
    try:
        first = RunningSuite(tmp_path / "var", urls)
        await asyncio.to_thread(first.start)
        async with first.client() as gw:
            created = await gw.post("/v1/customers", json={"email": "kept@example.com"})
            assert created.status_code == 201
        assert await asyncio.to_thread(first.stop) == 0
        assert _leftovers(first) == []

        second = RunningSuite(tmp_path / "var", urls)
        second.ports, second.admin_key = first.ports, first.admin_key
        await asyncio.to_thread(second.start)
        try:
            async with second.client() as gw:
                again = await gw.get(f"/v1/customers/{created.json()['id']}")
                assert again.status_code == 200 and again.json()["email"] == "kept@example.com"
        finally:
            assert await asyncio.to_thread(second.stop) == 0
    finally:
        for drop in drops:
            await drop()
