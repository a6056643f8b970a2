"""Import uploads stream through the gateway (issue 12): a 60 MiB upload reaches the
service whole while the gateway's memory stays bounded, with the client's length passed
on, or chunked when the client sent none; over the upload limit is 413."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.gateway.conftest import API_KEY, AUTH, free_port, serve

MIB = 1024 * 1024
UPLOAD_MIB = 60
CSV = {**AUTH, "content-type": "text/csv"}


def upload_app(seen: list[dict]) -> FastAPI:
    """identify's upload route, reading the body as a stream (the real one spools it)."""

    app = FastAPI()

    @app.post("/v1/imports", response_model=None)
    async def imports(request: Request) -> dict | JSONResponse:
        if "refuse" in request.query_params:  # answers before reading the body
            return JSONResponse({"error": "validation_error", "detail": []}, status_code=422)
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.stream():
            digest.update(chunk)
            size += len(chunk)
        result = {
            "bytes": size,
            "sha256": digest.hexdigest(),
            "content_length": request.headers.get("content-length"),
            "transfer_encoding": request.headers.get("transfer-encoding"),
        }
        seen.append(result)
        return result

    return app


def body(mib: int) -> tuple[int, str, object]:
    """A `mib` MiB body made as it is sent (the test holds 1 MiB of it at a time)."""

    block = b"".join(b"c-%07d,2026-01-05,%d.50,EUR\n" % (i, i % 90) for i in range(MIB // 32))
    block = (block * 2)[:MIB]
    digest = hashlib.sha256()
    for _ in range(mib):
        digest.update(block)

    async def chunks():
        for _ in range(mib):
            yield block

    return mib * MIB, digest.hexdigest(), chunks


def peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), in bytes."""

    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.fixture
async def receiver():
    seen: list[dict] = []
    async with serve(upload_app(seen)) as url:
        yield url, seen


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the gateway's peak RSS from /proc")
async def test_a_60_mib_upload_streams_through_a_gateway_of_bounded_memory(receiver, tmp_path):
    url, seen = receiver
    port = free_port()
    env = {
        **os.environ,
        "VALUECHAIN_GATEWAY_PORT": str(port),
        "VALUECHAIN_GATEWAY_IDENTIFY_URL": url,
        "VALUECHAIN_ADMIN_API_KEY": API_KEY,
        "VALUECHAIN_VAR_DIR": str(tmp_path),
        "VALUECHAIN_GATEWAY_ACCESS_LOG": "false",
        "VALUECHAIN_GATEWAY_WORKERS": "1",
    }
    gateway = subprocess.Popen(
        [sys.executable, "-m", "gateway"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60.0) as client:
            for _ in range(500):
                with_server = await _healthy(client)
                if with_server or gateway.poll() is not None:
                    break
                await asyncio.sleep(0.02)
            assert gateway.poll() is None and await _healthy(client), "the gateway did not start"

            # Warm up: the upload path once, small, so what follows measures only the big body.
            size, digest, chunks = body(1)
            assert (await client.post("/v1/imports", headers=CSV, content=chunks())).status_code == 200
            before = peak_rss(gateway.pid)

            size, digest, chunks = body(UPLOAD_MIB)
            # With the client's length (what `valuechain import` sends: a multipart form of known size),
            # and without one (then chunked to the service as well).
            with_length = await client.post(
                "/v1/imports",
                headers={**AUTH, "content-type": "multipart/form-data; boundary=b", "content-length": str(size)},
                content=chunks(),
            )
            chunked = await client.post("/v1/imports", headers=CSV, content=chunks())
            growth = peak_rss(gateway.pid) - before
    finally:
        gateway.terminate()
        gateway.wait(10)
    # Buffered whole, the body alone would have grown the peak by 60 MiB.
    assert growth < 16 * MIB, f"the gateway's peak RSS grew by {growth / MIB:.1f} MiB"
    assert with_length.status_code == 200, with_length.text
    assert with_length.json() == {
        "bytes": size,
        "sha256": digest,
        "content_length": str(size),
        "transfer_encoding": None,
    }
    assert chunked.status_code == 200, chunked.text
    assert chunked.json() == {"bytes": size, "sha256": digest, "content_length": None, "transfer_encoding": "chunked"}
    assert len(seen) == 3


async def _healthy(client: httpx.AsyncClient) -> bool:
    try:
        return (await client.get("/healthz")).status_code == 200
    except httpx.TransportError:
        return False


async def test_an_upload_over_the_limit_is_413(start_gateway, receiver):
    url, seen = receiver
    gw = await start_gateway(identify_url=url, max_upload_body_bytes=2 * MIB)
    size, _, chunks = body(2)
    assert (await gw.post("/v1/imports", headers=CSV, content=chunks())).json()["bytes"] == size  # at the limit
    size, _, chunks = body(3)
    # A length over the limit is refused before anything reaches the service...
    response = await gw.post("/v1/imports", headers={**CSV, "content-length": str(size)}, content=chunks())
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert "upload" in response.json()["detail"]
    # ...and a chunked body when it passes the limit (the service's request is cut off).
    response = await gw.post("/v1/imports", headers=CSV, content=chunks())
    assert response.status_code == 413
    assert [s["bytes"] for s in seen] == [2 * MIB]
    # JSON to the upload route is not an upload: the 1 MiB limit holds.
    response = await gw.post(
        "/v1/imports", headers={**AUTH, "content-type": "application/json"}, content=b"1" * MIB * 2
    )
    assert response.status_code == 413


async def test_a_service_refusing_an_upload_early_is_answered_at_once(start_gateway, receiver):
    url, seen = receiver
    gw = await start_gateway(identify_url=url)
    _, _, chunks = body(20)
    response = await gw.post("/v1/imports?refuse=1", headers=CSV, content=chunks())
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"
    # The gateway is fine afterwards, and so is the next upload.
    _, digest, chunks = body(1)
    response = await gw.post("/v1/imports", headers=CSV, content=chunks())
    assert response.json()["sha256"] == digest
    assert len(seen) == 1  # the refused one never got to the handler's reading
