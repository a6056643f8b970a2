"""The upstream client (gateway/upstream.py) against raw asyncio HTTP servers on loopback."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from gateway.upstream import MAX_RESPONSE_HEADER_LINES, ServicePool, UpstreamTimeout, UpstreamUnavailable
from tests.gateway.conftest import free_port


@contextlib.asynccontextmanager
async def raw_server(handler):
    """`handler(reader, writer, state)`; yields (url, state) where state counts connections."""

    state = {"connections": 0, "requests": []}

    async def on_connect(reader, writer):
        state["connections"] += 1
        try:
            await handler(reader, writer, state)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", state
    finally:
        server.close()
        await server.wait_closed()


async def read_request(reader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    body = await reader.readexactly(length) if length else b""
    return head, body


def response(body: bytes, status: bytes = b"200 OK", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 " + status + b"\r\ncontent-length: %d\r\n" % len(body) + extra + b"\r\n" + body


async def keep_alive_echo(reader, writer, state):
    while True:
        head, body = await read_request(reader)
        state["requests"].append((head, body))
        writer.write(response(b"ok:" + body, extra=b"x-n: %d\r\n" % len(state["requests"])))
        await writer.drain()


async def test_keep_alive_reuses_one_connection():
    async with raw_server(keep_alive_echo) as (url, state):
        pool = ServicePool("svc", url)
        for i in range(5):
            result = await pool.request("POST", b"/x?i=%d" % i, b"content-type: text/plain\r\n", b"b%d" % i)
            assert result.status == 200
            assert result.body == b"ok:b%d" % i
            assert result.header(b"x-n") == str(i + 1).encode()
        assert state["connections"] == 1
        head = state["requests"][0][0]
        assert head.startswith(b"POST /x?i=0 HTTP/1.1\r\nhost: 127.0.0.1:")
        assert b"content-type: text/plain\r\n" in head
        await pool.aclose()


async def test_base_path_is_prefixed():
    async with raw_server(keep_alive_echo) as (url, state):
        pool = ServicePool("svc", url + "/prefix/")
        await pool.request("GET", b"/v1/a")
        assert state["requests"][0][0].startswith(b"GET /prefix/v1/a HTTP/1.1")
        await pool.aclose()


async def test_chunked_response_is_joined():
    async def chunked(reader, writer, state):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        await writer.drain()
        await read_request(reader)
        writer.write(response(b"second"))
        await writer.drain()

    async with raw_server(chunked) as (url, state):
        pool = ServicePool("svc", url)
        result = await pool.request("GET", b"/")
        assert result.body == b"hello world"
        assert (await pool.request("GET", b"/")).body == b"second"
        assert state["connections"] == 1
        await pool.aclose()


async def test_connection_close_is_honoured():
    async def close_each(reader, writer, state):
        await read_request(reader)
        writer.write(response(b"bye", extra=b"connection: close\r\n"))
        await writer.drain()

    async with raw_server(close_each) as (url, state):
        pool = ServicePool("svc", url)
        for _ in range(3):
            assert (await pool.request("GET", b"/")).body == b"bye"
        assert state["connections"] == 3
        await pool.aclose()


async def once_then_silent_close(reader, writer, state):
    # Answers one request, then reads the next and drops the connection without a
    # word, as a server whose keep-alive timeout ran out just then would.
    await read_request(reader)
    writer.write(response(b"fine"))
    await writer.drain()
    await read_request(reader)


async def test_stale_keep_alive_connection_is_retried_for_idempotent_requests():
    async with raw_server(once_then_silent_close) as (url, state):
        pool = ServicePool("svc", url)
        assert (await pool.request("GET", b"/")).body == b"fine"
        assert (await pool.request("GET", b"/")).body == b"fine"
        assert state["connections"] == 2
        await pool.aclose()


async def test_non_idempotent_request_is_retried_only_when_allowed():
    async with raw_server(once_then_silent_close) as (url, state):
        pool = ServicePool("svc", url)
        await pool.request("POST", b"/", body=b"1")
        with pytest.raises(UpstreamUnavailable):
            await pool.request("POST", b"/", body=b"2")
        assert state["connections"] == 1
        await pool.request("POST", b"/", body=b"3")  # a new connection
        # With an idempotency key the caller allows the retry.
        result = await pool.request("POST", b"/", body=b"4", retry_non_idempotent=True)
        assert result.body == b"fine"
        assert state["connections"] == 3
        await pool.aclose()


async def test_idle_connections_expire():
    async with raw_server(keep_alive_echo) as (url, state):
        pool = ServicePool("svc", url, keepalive_expiry=0.05)
        await pool.request("GET", b"/")
        await asyncio.sleep(0.1)
        await pool.request("GET", b"/")
        assert state["connections"] == 2
        await pool.aclose()


async def test_refused_connection_is_unavailable():
    pool = ServicePool("svc", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(UpstreamUnavailable) as info:
        await pool.request("GET", b"/")
    assert info.value.service == "svc"
    assert pool.open_connections == 0


async def test_slow_answer_times_out():
    async def slow(reader, writer, state):
        await read_request(reader)
        await asyncio.sleep(1)

    async with raw_server(slow) as (url, _state):
        pool = ServicePool("svc", url)
        with pytest.raises(UpstreamTimeout):
            await pool.request("GET", b"/", timeout=0.1)
        assert pool.open_connections == 0
        await pool.aclose()


async def test_garbage_answer_is_unavailable():
    async def garbage(reader, writer, state):
        await read_request(reader)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()

    async with raw_server(garbage) as (url, _state):
        pool = ServicePool("svc", url)
        with pytest.raises(UpstreamUnavailable):
            await pool.request("GET", b"/")
        await pool.aclose()


async def test_response_size_cap():
    async def big(reader, writer, state):
        await read_request(reader)
        writer.write(response(b"x" * 5000))
        await writer.drain()

    async with raw_server(big) as (url, _state):
        pool = ServicePool("svc", url, max_response_bytes=1000)
        with pytest.raises(UpstreamUnavailable, match="larger"):
            await pool.request("GET", b"/")
        await pool.aclose()


async def test_connection_limit_makes_callers_wait():
    active = 0
    peak = 0

    async def slowish(reader, writer, state):
        nonlocal active, peak
        while True:
            await read_request(reader)
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.02)
            active -= 1
            writer.write(response(b"ok"))
            await writer.drain()

    async with raw_server(slowish) as (url, state):
        pool = ServicePool("svc", url, max_connections=3)
        results = await asyncio.gather(*(pool.request("GET", b"/") for _ in range(12)))
        assert all(r.body == b"ok" for r in results)
        assert state["connections"] == 3
        assert peak == 3
        await pool.aclose()


async def test_head_request_does_not_wait_for_a_body():
    async def head(reader, writer, state):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    async with raw_server(head) as (url, _state):
        pool = ServicePool("svc", url)
        result = await pool.request("HEAD", b"/", timeout=0.5)
        assert result.status == 200 and result.body == b""
        await pool.aclose()


async def test_interim_100_continue_is_skipped():
    async def continue_first(reader, writer, state):
        await read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + response(b"final"))
        await writer.drain()

    async with raw_server(continue_first) as (url, _state):
        pool = ServicePool("svc", url)
        result = await pool.request("GET", b"/")
        assert (result.status, result.body) == (200, b"final")
        head = await pool.request("HEAD", b"/")
        assert (head.status, head.body) == (200, b"")
        await pool.aclose()


@pytest.mark.parametrize(
    "interim",
    [
        b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n\x81\x05hello",
        b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n" + response(b"final"),
        b"HTTP/1.1 102 Processing\r\n\r\n" + response(b"final"),
    ],
    ids=["101", "103", "102"],
)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_a_1xx_answer_other_than_100_is_unavailable(interim, method):
    # The gateway never asks to switch protocols, and a service of ours has no other
    # interim answer to give: anything but 100 Continue is a broken or hostile service.
    async def interim_answer(reader, writer, state):
        await read_request(reader)
        writer.write(interim)
        await writer.drain()
        await reader.read()

    async with raw_server(interim_answer) as (url, _state):
        pool = ServicePool("svc", url)
        with pytest.raises(UpstreamUnavailable, match="interim"):
            await pool.request(method, b"/")
        assert pool.open_connections == 0
        await pool.aclose()


async def test_a_cancelled_waiter_does_not_leak_the_slot():
    async def slowish(reader, writer, state):
        while True:
            await read_request(reader)
            await asyncio.sleep(0.1)
            writer.write(response(b"ok"))
            await writer.drain()

    async with raw_server(slowish) as (url, state):
        pool = ServicePool("svc", url, max_connections=1)
        first = asyncio.create_task(pool.request("GET", b"/"))
        await asyncio.sleep(0.02)
        waiting = asyncio.create_task(pool.request("GET", b"/"))
        await asyncio.sleep(0.02)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert (await first).body == b"ok"
        assert (await pool.request("GET", b"/")).body == b"ok"
        assert pool.open_connections == 1 and state["connections"] == 1
        await pool.aclose()


async def test_cancelled_request_drops_its_connection():
    async def slow(reader, writer, state):
        await read_request(reader)
        await asyncio.sleep(1)

    async with raw_server(slow) as (url, _state):
        pool = ServicePool("svc", url)
        task = asyncio.create_task(pool.request("GET", b"/"))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.open_connections == 0
        await pool.aclose()


@pytest.mark.parametrize("later", [False, True], ids=["same-write", "later-write"])
async def test_bytes_after_a_complete_answer_never_reach_the_next_request(later):
    # A complete 200 and the start of a second answer, in the same write or a later
    # one: the connection is out of step with its requests and must not go back to
    # the pool, or the next, unrelated request gets the injected 418.
    smuggled = b"HTTP/1.1 418 I'm a teapot\r\nx-injected: yes\r\n"
    sent_extra = asyncio.Event()

    async def smuggler(reader, writer, state):
        await read_request(reader)
        writer.write(response(b"first") + (b"" if later else smuggled))
        await writer.drain()
        if later:
            await asyncio.sleep(0.05)
            writer.write(smuggled)
            await writer.drain()
        sent_extra.set()
        while True:
            await read_request(reader)
            writer.write(b"content-length: 0\r\n\r\n" + response(b"second"))
            await writer.drain()

    async with raw_server(smuggler) as (url, state):
        pool = ServicePool("svc", url)
        first = await pool.request("GET", b"/")
        assert (first.status, first.body) == (200, b"first")
        await sent_extra.wait()
        await asyncio.sleep(0.05)  # let the extra bytes reach the idle connection
        second = await pool.request("GET", b"/other")
        assert (second.status, second.header(b"x-injected")) == (200, None)
        assert state["connections"] == 2
        await pool.aclose()


async def write_endlessly(writer, piece: bytes, stopped: asyncio.Future) -> None:
    """Write `piece` 16 at a time until the client hangs up (`stopped` True) or
    256 MiB went out (False: the client read them all)."""

    try:
        for _ in range(256 * 1024 * 1024 // (len(piece) * 16)):
            writer.write(piece * 16)
            await writer.drain()
    except ConnectionError:
        stopped.set_result(True)
        raise
    stopped.set_result(False)


async def test_endless_response_headers_are_cut_off():
    # 1 KB header lines without end: the client gives up at the header cap (a 502
    # at the gateway) and drops the connection, and does not read on until its timeout.
    stopped = asyncio.get_running_loop().create_future()

    async def endless_headers(reader, writer, state):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n")
        await write_endlessly(writer, b"x-filler: " + b"a" * 1000 + b"\r\n", stopped)

    async with raw_server(endless_headers) as (url, _state):
        pool = ServicePool("svc", url)
        with pytest.raises(UpstreamUnavailable, match="header"):
            await pool.request("GET", b"/")
        assert await stopped, "the client read all 256 MiB of headers"
        assert pool.open_connections == 0
        await pool.aclose()


async def test_too_many_response_header_lines_are_refused():
    async def many_headers(reader, writer, state):
        await read_request(reader)
        writer.write(response(b"ok", extra=b"".join(b"x-h%d: v\r\n" % i for i in range(MAX_RESPONSE_HEADER_LINES + 1))))
        await writer.drain()

    async with raw_server(many_headers) as (url, _state):
        pool = ServicePool("svc", url)
        with pytest.raises(UpstreamUnavailable, match="header"):
            await pool.request("GET", b"/")
        await pool.aclose()


async def test_response_headers_up_to_the_cap_pass():
    async def many_headers(reader, writer, state):
        await read_request(reader)
        writer.write(response(b"ok", extra=b"".join(b"x-h%d: v\r\n" % i for i in range(MAX_RESPONSE_HEADER_LINES - 1))))
        await writer.drain()

    async with raw_server(many_headers) as (url, _state):
        pool = ServicePool("svc", url)
        result = await pool.request("GET", b"/")
        assert (result.status, len(result.headers)) == (200, MAX_RESPONSE_HEADER_LINES)
        await pool.aclose()


async def test_trailers_are_never_answer_headers():
    # A chunked answer's trailers come through llhttp's header callback: they used to
    # join the answer's headers, and so reach the client (or replace x-request-id).
    async def with_trailers(reader, writer, state):
        while True:
            await read_request(reader)
            writer.write(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-kept: 1\r\n\r\n"
                b"2\r\nok\r\n0\r\nx-request-id: injected\r\nset-cookie: a=b\r\n\r\n"
            )
            await writer.drain()

    async with raw_server(with_trailers) as (url, state):
        pool = ServicePool("svc", url)
        for _ in range(2):
            result = await pool.request("GET", b"/")
            assert (result.status, result.headers, result.body) == (
                200,
                [(b"transfer-encoding", b"chunked"), (b"x-kept", b"1")],
                b"ok",
            )
        assert state["connections"] == 1  # a complete answer: the connection is reused
        await pool.aclose()


@pytest.mark.parametrize("part", ["trailer lines", "one trailer"])
async def test_endless_trailers_are_cut_off(part):
    stopped = asyncio.get_running_loop().create_future()

    async def endless_trailers(reader, writer, state):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n")
        if part == "one trailer":
            writer.write(b"x-endless: ")
        piece = b"x-filler: " + b"a" * 1000 + b"\r\n" if part == "trailer lines" else b"a" * 16_000
        await write_endlessly(writer, piece, stopped)

    async with raw_server(endless_trailers) as (url, _state):
        pool = ServicePool("svc", url, max_response_bytes=1024 * 1024)
        with pytest.raises(UpstreamUnavailable):
            await pool.request("GET", b"/")
        assert await stopped, "the client read every trailer byte"
        assert pool.open_connections == 0
        await pool.aclose()
