"""What a client's request may take (issue 19, items 3, 4 and 6b): header caps, read
deadlines, chunked trailers, transfer codings and idle connections, checked by
gateway/server.py's protocol against raw sockets that misbehave on purpose."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from gateway.main import create_app
from gateway.server import GatewayHttpProtocol, protocol_class
from gateway.settings import GatewaySettings
from tests.gateway.conftest import API_KEY, AUTH, gateway_settings, serve

# Small limits, so that a test sends little and waits less.
LIMITS = {
    "max_request_header_bytes": 4096,
    "max_request_headers": 20,
    "request_header_timeout_s": 0.3,
    "request_body_idle_timeout_s": 0.3,
    "request_body_timeout_s": 1.0,
}


@pytest.fixture(scope="module")
async def gateway(start_gateway):
    return await start_gateway(**LIMITS)


class Raw:
    """A raw TCP connection to the gateway."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self) -> tuple[int, dict[str, str], bytes]:
        """The next answer: status, headers, body (by its content-length)."""

        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
        status_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await asyncio.wait_for(self.reader.readexactly(int(headers.get("content-length", "0"))), 10)
        return int(status_line.split()[1]), headers, body

    async def closed(self) -> bool:
        """True once the gateway closed the connection (with nothing more sent)."""

        try:
            rest = await asyncio.wait_for(self.reader.read(), 10)
        except ConnectionResetError:
            return True
        assert rest == b"", rest
        return True

    def close(self) -> None:
        self.writer.close()


async def connect(client) -> Raw:
    url = client.base_url
    reader, writer = await asyncio.open_connection(url.host, url.port)
    return Raw(reader, writer)


def head(path: str = "/v1/offers/o1", method: str = "GET", extra: bytes = b"", auth: bool = True) -> bytes:
    lines = b"%s %s HTTP/1.1\r\nhost: gw.example\r\n" % (method.encode(), path.encode())
    if auth:
        lines += b"authorization: Bearer %s\r\n" % API_KEY.encode()
    return lines + extra


async def refused(client, *writes: bytes, pause: float = 0.0) -> tuple[int, dict]:
    conn = await connect(client)
    try:
        for data in writes:
            await conn.send(data)
            if pause:
                await asyncio.sleep(pause)
        status, headers, body = await conn.answer()
        assert headers["content-type"] == "application/json" and headers["connection"] == "close"
        assert await conn.closed()
        return status, json.loads(body)
    finally:
        conn.close()


# -- header caps: 431 ------------------------------------------------------------------


async def test_a_huge_header_value_is_431(gateway):
    status, body = await refused(gateway, head(extra=b"x-big: " + b"a" * 1_000_000 + b"\r\n\r\n"))
    assert status == 431
    assert body == {"error": "request_header_fields_too_large", "detail": "request head over 4096 bytes"}


async def test_too_many_headers_is_431(gateway):
    many = b"".join(b"x-h%d: v\r\n" % i for i in range(20_000))  # as the probe sent
    status, body = await refused(gateway, head(extra=many + b"\r\n"))
    assert status == 431
    assert body == {"error": "request_header_fields_too_large", "detail": "more than 20 request header lines"}


async def test_a_head_that_never_ends_is_cut_at_the_cap(gateway):
    # One header value sent in pieces and never finished: llhttp would keep growing it.
    # The fifth piece crosses the cap (writing more after the close would reset the
    # connection, and the answer with it).
    writes = [head(extra=b"x-endless: ")] + [b"a" * 1000] * 5
    status, body = await refused(gateway, *writes, pause=0.01)
    assert status == 431 and body["error"] == "request_header_fields_too_large"


async def test_a_long_url_counts_towards_the_head(gateway):
    status, _ = await refused(gateway, head(path="/v1/offers/" + "a" * 5000, extra=b"\r\n"))
    assert status == 431


async def test_heads_within_the_caps_pass(gateway):
    extra = b"".join(b"x-h%d: %s\r\n" % (i, b"v" * 100) for i in range(15))
    response = await gateway.get("/v1/offers/o1", headers={**AUTH, **{f"x-h{i}": "v" * 100 for i in range(10)}})
    assert response.status_code == 200
    conn = await connect(gateway)
    try:
        await conn.send(head(extra=extra + b"\r\n"))
        status, _, body = await conn.answer()
        assert status == 200 and json.loads(body)["headers"]["x-h14"] == "v" * 100
    finally:
        conn.close()


# -- deadlines: 408 --------------------------------------------------------------------


async def test_half_sent_headers_are_408(gateway):
    status, body = await refused(gateway, head(extra=b"x-slow: "))
    assert status == 408
    assert body == {"error": "request_timeout", "detail": "request head not received within 0.3 s"}


async def test_a_connection_that_sends_nothing_is_closed_without_an_answer(gateway):
    conn = await connect(gateway)
    try:
        assert await conn.closed()
    finally:
        conn.close()


async def test_a_body_shorter_than_its_content_length_is_408(gateway):
    status, body = await refused(gateway, head("/v1/offers", "POST", b'content-length: 100\r\n\r\n{"a": 1'))
    assert status == 408
    assert body == {"error": "request_timeout", "detail": "no request body bytes for 0.3 s"}


async def test_a_chunked_body_that_lies_about_its_size_is_408(gateway):
    chunked = head("/v1/offers", "POST", b"transfer-encoding: chunked\r\n\r\n64\r\n" + b"x" * 10)
    status, body = await refused(gateway, chunked)
    assert status == 408 and body["error"] == "request_timeout"


async def trickle(conn: Raw, until: asyncio.Task) -> None:
    """A byte every 0.1 s until `until` is done."""

    for _ in range(100):
        if until.done():
            return
        try:
            await conn.send(b"x")
        except ConnectionError:
            return
        await asyncio.sleep(0.1)


async def test_a_body_trickled_past_the_deadline_is_408(start_gateway):
    # A long idle timeout, so that only the whole body's deadline can end it, however
    # late a busy machine wakes the trickle up.
    gateway = await start_gateway(**{**LIMITS, "request_body_idle_timeout_s": 30.0})
    conn = await connect(gateway)
    try:
        await conn.send(head("/v1/offers", "POST", b"content-length: 1000\r\n\r\n"))
        answer = asyncio.create_task(conn.answer())
        await trickle(conn, answer)
        status, _, body = await answer
        assert status == 408
        assert json.loads(body) == {"error": "request_timeout", "detail": "request body not received within 1 s"}
    finally:
        conn.close()


async def test_a_body_trickled_after_the_answer_only_closes(gateway):
    # No key: the gateway answers 401 before reading the body, whose bytes keep coming
    # one by one (each used to put off uvicorn's keep-alive timeout).
    conn = await connect(gateway)
    try:
        await conn.send(head("/v1/offers", "POST", b"content-length: 1000\r\n\r\nabc", auth=False))
        status, _, _ = await conn.answer()
        assert status == 401
        closed = asyncio.create_task(conn.closed())
        await trickle(conn, closed)
        assert await closed  # no second (408) answer to a request nobody sent
    finally:
        conn.close()


# -- chunked trailers are never request headers (item 4) --------------------------------


def chunked_with_trailers(trailers: bytes, extra: bytes = b"", auth: bool = True) -> bytes:
    # Head, body and trailers in one write: one packet on loopback.
    return head("/v1/offers", "POST", extra + b"transfer-encoding: chunked\r\n\r\n", auth=auth) + (
        b"2\r\n{}\r\n0\r\n" + trailers + b"\r\n"
    )


async def test_a_trailer_does_not_authenticate(gateway):
    conn = await connect(gateway)
    try:
        await conn.send(chunked_with_trailers(b"authorization: Bearer %s\r\n" % API_KEY.encode(), auth=False))
        status, _, body = await conn.answer()
        assert status == 401 and json.loads(body)["error"] == "unauthorized"
    finally:
        conn.close()


async def test_trailers_do_not_reach_the_service_as_headers(gateway, stand_ins):
    trailers = b"x-request-id: trailer-id\r\nhost: trailer.example\r\nx-from-trailer: 1\r\n"
    conn = await connect(gateway)
    try:
        await conn.send(chunked_with_trailers(trailers, extra=b"x-request-id: head-id\r\n"))
        status, headers, body = await conn.answer()
        assert status == 200 and json.loads(body)["body"] == "{}"
        seen = json.loads(body)["headers"]
        assert seen["x-forwarded-host"] == "gw.example"
        assert seen["x-request-id"] == headers["x-request-id"] == "head-id"
        assert "x-from-trailer" not in seen
    finally:
        conn.close()


async def test_trailers_count_towards_the_header_cap(gateway):
    trailers = b"".join(b"x-t%d: v\r\n" % i for i in range(30))
    status, body = await refused(gateway, chunked_with_trailers(trailers))
    assert status == 431 and body["error"] == "request_header_fields_too_large"


# -- transfer codings (item 6b) and parse errors ------------------------------------------


@pytest.mark.parametrize("coding", [b"gzip, chunked", b"deflate,chunked", b"identity, chunked"])
async def test_a_transfer_coding_other_than_chunked_is_501(gateway, coding):
    request = head("/v1/offers", "POST", b"transfer-encoding: " + coding + b"\r\n\r\n") + b"2\r\n{}\r\n0\r\n\r\n"
    status, body = await refused(gateway, request)
    assert status == 501 and body["error"] == "not_implemented"
    assert coding.decode() in body["detail"]


async def test_chunked_alone_passes_in_any_case(gateway):
    conn = await connect(gateway)
    try:
        await conn.send(head("/v1/offers", "POST", b"transfer-encoding: Chunked\r\n\r\n") + b"2\r\n{}\r\n0\r\n\r\n")
        status, _, body = await conn.answer()
        assert status == 200 and json.loads(body)["body"] == "{}"
    finally:
        conn.close()


async def test_an_invalid_request_is_a_json_400(gateway):
    status, body = await refused(gateway, b"GET /v1/offers/o1 HTTP/1.1\r\nbad header\r\n\r\n")
    assert status == 400 and body == {"error": "bad_request", "detail": "invalid HTTP request"}


# -- idle connections per client --------------------------------------------------------


async def test_a_client_keeps_at_most_its_share_of_idle_connections(start_gateway):
    client = await start_gateway(max_idle_connections_per_client=2, request_header_timeout_s=30.0)
    first, second = await connect(client), await connect(client)
    try:
        # Both used once and kept alive, then a third one opens: the oldest waiting one goes.
        for conn in (first, second):
            await conn.send(head() + b"\r\n")
            assert (await conn.answer())[0] == 200
        third = await connect(client)
        try:
            assert await first.closed()
            await third.send(head() + b"\r\n")
            assert (await third.answer())[0] == 200
            await second.send(head() + b"\r\n")
            assert (await second.answer())[0] == 200
        finally:
            third.close()
    finally:
        first.close()
        second.close()


# -- how the gateway is served ------------------------------------------------------------


def test_python_m_gateway_serves_with_the_gateway_protocol(monkeypatch):
    import gateway.__main__ as entry

    seen: dict = {}
    monkeypatch.setattr(entry.uvicorn, "run", lambda app, **options: seen.update(options, app=app))
    entry.main(["--host", "0.0.0.0", "--port", "8123"])
    assert seen["http"] is GatewayHttpProtocol
    assert (seen["app"], seen["factory"], seen["host"], seen["port"]) == (
        "gateway.main:create_app",
        True,
        "0.0.0.0",
        8123,
    )


async def test_a_worker_reads_its_limits_from_the_environment(monkeypatch, stand_ins, nats_stub, tmp_path):
    # A worker process imports GatewayHttpProtocol by name (limits unset) and reads
    # them as the app does; a subclass keeps this test's reading to itself.
    monkeypatch.setenv("VALUECHAIN_GATEWAY_MAX_REQUEST_HEADERS", "7")
    protocol = type("FromEnvironment", (GatewayHttpProtocol,), {})
    app = create_app(gateway_settings(stand_ins, nats_stub, tmp_path), admin_key=API_KEY)
    async with serve(app, http=protocol) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.get("/healthz", headers={f"x-h{i}": "v" for i in range(8)})
        assert response.status_code == 431
        assert response.json()["detail"] == "more than 7 request header lines"
        assert protocol.limits is not None and GatewayHttpProtocol.limits is None


async def test_time_the_gateway_is_behind_is_not_the_clients():
    # An app that takes a while before it reads a large body: uvicorn stops reading
    # (flow control) and the client's bytes wait in the socket. No 408 for that.
    async def slow_reader(scope, receive, send):
        if scope["type"] != "http":
            return
        await asyncio.sleep(4.0)
        size, more = 0, True
        while more:
            message = await receive()
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(b"%d" % size))]}
        )
        await send({"type": "http.response.body", "body": b"%d" % size})

    # The app sleeps well past both limits; the limits still leave room for a loaded
    # machine to move the megabyte once the app reads (0.2/0.5 s made a busy CI flaky, and
    # 0.5/1.5 s a CI on a machine running at half speed).
    settings = GatewaySettings(request_body_idle_timeout_s=1.0, request_body_timeout_s=3.0)
    async with serve(slow_reader, http=protocol_class(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.post("/", content=b"x" * 1_000_000)
    assert response.status_code == 200 and response.text == "1000000"
