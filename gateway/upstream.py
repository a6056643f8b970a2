"""The gateway's upstream HTTP/1.1 client: one keep-alive connection pool per service.

Why not httpx or aiohttp: measured on the 2-core dev box with wrk in front of a
plain FastAPI endpoint (docs/benchmarks.md), a bare pure-ASGI proxy on a shared
aiohttp ClientSession did 3,800-4,050 req/s where the same proxy on this client
did 5,300-5,450 (nginx: 4,600-4,900), before any gateway logic (auth, routing,
logs, metrics); httpx is slower still. The cost is the clients' generality
(per-request objects, tracing hooks, cookie jars, URL objects, multidicts).
The gateway needs very little of it: requests to a handful of known services,
bodies that fit in memory, JSON answers. So this module is a small asyncio
Protocol around httptools' response parser (llhttp, the parser uvicorn uses)
with:

* per-service pools of keep-alive connections, LIFO reuse, idle connections
  dropped after `keepalive_expiry` (below uvicorn's 5 s keep-alive timeout) and
  at most `max_connections` open (callers wait for a free one);
* one retry on a fresh connection when a reused connection turns out to have
  been closed by the service before answering anything (the keep-alive race),
  for idempotent methods or requests carrying an Idempotency-Key;
* explicit connect and total timeouts (`UpstreamTimeout`); refused or broken
  connections and protocol errors become `UpstreamUnavailable`;
* chunked and content-length bodies (llhttp de-chunks), 100 Continue skipped
  (any other 1xx is refused), caps on the header block and the response size;
  trailers are read and dropped, never taken for the answer's headers;
* a connection goes back to the pool only after a complete answer with nothing
  after it: extra bytes (a second answer) or any error mid-answer close it.

Bodies are buffered whole in both directions (the services answer with JSON
pages), except the answers of `ServicePool.stream` (exports): those are handed on
chunk by chunk as they arrive, reading from the service paused while the caller is
behind, so a gateway holds a few chunks of an export, never all of it; and the
request bodies of `ServicePool.upload` (import uploads, up to 200 MB), sent chunk
by chunk as the client sends them, writing paused while the service is behind.
"""

from __future__ import annotations

import asyncio
import ssl as _ssl
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, NamedTuple, cast
from urllib.parse import urlsplit

import httptools

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})

# Caps on an answer's header block (its status line and headers, interim 1xx
# answers included). Without them a service sending endless 1 KB header lines
# grew a gateway from 55 MB to 7.4 GB in 30 s (issue 19): the parser keeps every
# header until the block ends. Our services answer with a handful of headers in
# well under 1 KiB; nginx reads an upstream's head into one 4-8 KiB buffer, h11
# allows 16 KiB. 64 KiB and 100 lines leave plenty of room and bound what one
# connection can make the gateway hold. Over either cap: the connection is
# dropped and the request fails as unavailable (502). Checked once per read and
# once per header line, so they cost the hot path a comparison or two.
MAX_RESPONSE_HEAD_BYTES = 64 * 1024
MAX_RESPONSE_HEADER_LINES = 100

# Failed health checks in a row (a /readyz that is not 200 or not in time) that take a
# replica of a service out of the rotation (ReplicaSet.checked); HAProxy's default `fall`
# is 3, Kubernetes' failureThreshold 3: at the gateway's 2 s, two are 2-4 s of failing.
CHECK_FALLS = 2


class UpstreamError(Exception):
    """A request to a service got no usable answer."""

    kind = "error"
    # True when nothing of the request left the gateway (no connection was opened):
    # another replica of the service may take it, whatever its method (ReplicaSet).
    before_send = False

    def __init__(self, service: str, detail: str = ""):
        super().__init__(f"{service}: {detail}" if detail else service)
        self.service = service
        self.detail = detail


class UpstreamUnavailable(UpstreamError):
    kind = "unavailable"


class UpstreamTimeout(UpstreamError):
    kind = "timeout"


class UpstreamConnectFailed(UpstreamUnavailable):
    """The connection was refused or could not be opened: nothing was sent."""

    before_send = True


class UpstreamConnectTimeout(UpstreamTimeout):
    """The connection did not open within the connect timeout: nothing was sent."""

    before_send = True


class NoHealthyReplica(UpstreamUnavailable):
    """Every replica of the service is out of rotation (a 503 naming the service)."""

    kind = "no_replica"


class UpstreamResponse(NamedTuple):
    status: int
    # Lower-cased header names, as received.
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class _Closed(Exception):
    """The connection closed (or broke) before a complete answer."""

    def __init__(self, got_bytes: bool, detail: str):
        super().__init__(detail)
        self.got_bytes = got_bytes


class _Connection(asyncio.Protocol):
    __slots__ = (
        "_body",
        "_complete",
        "_counted",
        "_drain",
        "_got_bytes",
        "_head_bytes",
        "_head_request",
        "_headers",
        "_in_head",
        "_lines",
        "_parser",
        "_pool",
        "_read",
        "_size",
        "_stream",
        "_waiter",
        "_write_paused",
        "closed",
        "idle_since",
        "transport",
        "used",
    )

    def __init__(self, pool: ServicePool):
        self._pool = pool
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[tuple[UpstreamResponse, bool]] | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._size = 0
        self._got_bytes = False
        # Set once this exchange's final answer is complete: any byte after it means
        # the connection is out of step with its requests (see data_received).
        self._complete = False
        self._head_request = False
        # Bytes read while the answer's head is incomplete (MAX_RESPONSE_HEAD_BYTES).
        self._in_head = False
        self._head_bytes = 0
        # Header and trailer lines of the answer (MAX_RESPONSE_HEADER_LINES), and the
        # bytes read after its head (framing and trailers included; see data_received).
        self._lines = 0
        self._read = 0
        self.closed = False
        # Set while a streamed answer's body is handed on (ServicePool.stream).
        self._stream: _Stream | None = None
        self.idle_since = 0.0
        self.used = False
        # Holds one of the pool's connection slots (set once connected).
        self._counted = False
        # Flow control of an upload: set while the transport's write buffer is full.
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None

    # -- asyncio.Protocol -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a TCP connection's

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool._forget(self)
        closed = _Closed(self._got_bytes, str(exc) if exc else "connection closed by the service")
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(closed)
        if self._stream is not None:
            self._stream.fail(closed)
        self._resume_upload()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._resume_upload()

    def _resume_upload(self) -> None:
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None and self._stream is None:
            # Bytes nobody asked for (an idle connection): the stream is no longer in sync.
            self.close()
            return
        if self._complete:
            # Bytes after a complete answer, in a later read: never reuse the connection.
            self.close()
            return
        self._got_bytes = True
        try:
            self._parser.feed_data(data)
        except Exception as exc:  # noqa: BLE001 - HttpParserError, HttpParserUpgrade, or ours via a callback
            cause = exc.__context__
            if isinstance(cause, _Closed):
                self._fail(cause)
            else:
                self._fail(_Closed(True, f"invalid HTTP response: {exc!r}"))
        else:
            if self._in_head:
                # The head is still incomplete after this read: all of it counts
                # (a read that completes the head may carry body bytes, uncounted).
                self._head_bytes += len(data)
                if self._head_bytes > MAX_RESPONSE_HEAD_BYTES:
                    self._fail(_TooLarge(True, f"response header block over {MAX_RESPONSE_HEAD_BYTES} bytes"))
            elif self._stream is None:
                # A buffered answer's body is capped in on_body; what llhttp does not hand
                # on (chunk framing, trailers: it keeps a trailer whole until it ends) may
                # take as much again, so an endless trailer is cut off too.
                self._read += len(data)
                if self._read > 2 * self._pool.max_response_bytes + MAX_RESPONSE_HEAD_BYTES:
                    self._fail(_TooLarge(True, f"response larger than {self._pool.max_response_bytes} bytes"))

    # -- httptools callbacks ----------------------------------------------

    def on_message_begin(self) -> None:
        if self._complete:
            # A second answer after the final one, in the same read: a service that
            # answers twice (or a smuggled answer) would reach the next request.
            raise _Closed(True, "bytes after a complete response")
        self._headers = []
        self._body = []
        self._size = 0
        self._lines = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._lines += 1
        if self._lines > MAX_RESPONSE_HEADER_LINES:
            raise _TooLarge(True, f"more than {MAX_RESPONSE_HEADER_LINES} response header lines")
        if self._in_head:
            name = name.lower()
            if name == b"transfer-encoding":
                self._check_coding(value)
            self._headers.append((name, value))
        # else: a trailer of a chunked answer (llhttp reports both alike): counted,
        # never an answer header passed on to the client.

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status > 599:
            # Not a status (RFC 9110 15: 100-599); the gateway's server could not even
            # write it. llhttp and h11 take any three digits.
            raise _Closed(True, f"invalid status code {status}")
        if status < 200:
            if status != 100:
                # The gateway never asks to switch protocols (101), and our services
                # have no other interim answer to give: a 101 passed on as final would
                # hand the client a connection in another protocol. Refused (a 502).
                raise _Closed(True, f"unexpected interim answer {status} (only 100 Continue is expected)")
            return  # 100 Continue: the real answer follows
        self._in_head = False
        if self._head_request:
            # No body follows an answer to HEAD whatever it announces; the parser
            # cannot know that, so finish here and do not reuse the connection.
            self._finish(keep_alive=False)
        elif self._stream is not None:
            self._finish(keep_alive=False)  # the head; the body follows through the stream

    def on_body(self, body: bytes) -> None:
        if self._stream is not None:
            self._stream.feed(body)
            return
        self._size += len(body)
        if self._size > self._pool.max_response_bytes:
            raise _TooLarge(True, f"response larger than {self._pool.max_response_bytes} bytes")
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._parser.get_status_code() == 100:
            return  # 100 Continue: the real answer follows
        self._complete = True
        if self._stream is not None:
            self._stream.end(self._parser.should_keep_alive())
            return
        self._finish(keep_alive=self._parser.should_keep_alive())

    # -- internals ----------------------------------------------------------

    def _check_coding(self, value: bytes) -> None:
        """Only `chunked`, once: llhttp de-chunks `gzip, chunked` and leaves the body
        gzipped with nothing left to say so (the gateway drops Transfer-Encoding), and
        takes chunked twice as once. Our services never send another coding (h11
        refuses them too)."""

        if value.strip().lower() != b"chunked" or any(name == b"transfer-encoding" for name, _ in self._headers):
            raise _Closed(True, f"unsupported Transfer-Encoding in the response: {value!r}")

    def _finish(self, keep_alive: bool) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        body = self._body
        payload = body[0] if len(body) == 1 else b"".join(body)
        waiter.set_result((UpstreamResponse(self._parser.get_status_code(), self._headers, payload), keep_alive))

    def _fail(self, exc: Exception) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._pool._forget(self)
            if self.transport is not None:
                self.transport.close()

    async def open_stream(
        self, request: bytes, head_request: bool, timeout: float, loop: asyncio.AbstractEventLoop
    ) -> tuple[UpstreamResponse, bool]:
        """Send the request and return the answer's head; its body comes through `_stream`."""

        self._stream = _Stream(self, loop)
        try:
            return await self.exchange(request, head_request, timeout, loop)
        except BaseException:
            self._stream = None
            raise

    def _begin(
        self, head_request: bool, loop: asyncio.AbstractEventLoop
    ) -> asyncio.Future[tuple[UpstreamResponse, bool]]:
        waiter: asyncio.Future[tuple[UpstreamResponse, bool]] = loop.create_future()
        self._waiter = waiter
        self._got_bytes = False
        self._complete = False
        self._in_head = True
        self._head_bytes = 0
        self._read = 0
        self._head_request = head_request
        return waiter

    async def exchange(
        self, request: bytes, head_request: bool, timeout: float, loop: asyncio.AbstractEventLoop
    ) -> tuple[UpstreamResponse, bool]:
        waiter = self._begin(head_request, loop)
        timer = loop.call_later(timeout, _expire, waiter)
        try:
            assert self.transport is not None, "a pool hands out connected connections only"
            self.transport.write(request)
            return await waiter
        finally:
            timer.cancel()
            self._waiter = None
            self._body = []

    async def upload(
        self,
        head: bytes,
        body: AsyncIterator[bytes],
        chunked: bool,
        timeout: float,
        loop: asyncio.AbstractEventLoop,
    ) -> UpstreamResponse:
        """Send the request head, then the body chunk by chunk (framed as chunks when
        `chunked`), waiting whenever the transport's write buffer is full; then wait
        for the answer. An answer that comes before the body is all sent (a service
        refusing the upload early) ends the sending: it is the answer."""

        waiter = self._begin(False, loop)
        transport = self.transport
        assert transport is not None, "a pool hands out connected connections only"
        try:
            transport.write(head)
            async for chunk in body:
                if waiter.done():
                    break
                transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                if self._write_paused:
                    await self._drained(timeout, loop)
            else:
                if chunked and not waiter.done():
                    transport.write(b"0\r\n\r\n")
            timer = loop.call_later(timeout, _expire, waiter)
            try:
                response, _ = await waiter
            finally:
                timer.cancel()
            return response
        finally:
            self._waiter = None
            self._body = []
            if waiter.done() and not waiter.cancelled():
                waiter.exception()  # retrieved: the caller's error (or the answer) wins
            else:
                waiter.cancel()

    async def _drained(self, timeout: float, loop: asyncio.AbstractEventLoop) -> None:
        if self.closed:
            return
        drain = self._drain = loop.create_future()
        timer = loop.call_later(timeout, _expire, drain)
        try:
            await drain
        finally:
            timer.cancel()
            self._drain = None


class _TooLarge(_Closed):
    pass


class _Stream:
    """A streamed answer's body between the connection and its reader: reading from
    the service pauses while HIGH_WATER chunks wait, and resumes below LOW_WATER."""

    HIGH_WATER = 16
    LOW_WATER = 4

    __slots__ = ("_chunks", "_conn", "_loop", "_paused", "_ready", "done", "error", "keep_alive")

    def __init__(self, conn: _Connection, loop: asyncio.AbstractEventLoop):
        self._conn = conn
        self._loop = loop
        self._chunks: deque[bytes] = deque()
        self._ready: asyncio.Future[None] | None = None
        self._paused = False
        self.done = False
        self.keep_alive = False
        self.error: Exception | None = None

    def _wake(self) -> None:
        ready = self._ready
        if ready is not None and not ready.done():
            ready.set_result(None)

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        if len(self._chunks) >= self.HIGH_WATER and not self._paused and self._conn.transport is not None:
            self._paused = True
            self._conn.transport.pause_reading()
        self._wake()

    def end(self, keep_alive: bool) -> None:
        self.done = True
        self.keep_alive = keep_alive
        self._wake()

    def fail(self, exc: Exception) -> None:
        if not self.done:
            self.error = exc
            self._wake()

    async def next(self, timeout: float) -> bytes | None:
        """The next chunk, or None at the end; _Closed when the connection broke,
        _Expired when nothing came for `timeout` seconds."""

        chunks = self._chunks
        while not chunks:
            if self.error is not None:
                raise self.error
            if self.done:
                return None
            ready = self._ready = self._loop.create_future()
            timer = self._loop.call_later(timeout, _expire, ready)
            try:
                await ready
            finally:
                timer.cancel()
                self._ready = None
        chunk = chunks.popleft()
        if self._paused and len(chunks) < self.LOW_WATER and not self._conn.closed and self._conn.transport is not None:
            self._paused = False
            self._conn.transport.resume_reading()
        return chunk


class UpstreamStream:
    """A streamed answer: `status` and `headers` at once, then `chunks()`. Call
    `close()` when done (in a finally): a fully read answer gives its connection
    back to the pool, anything else closes it."""

    def __init__(self, pool: ServicePool, conn: _Connection, head: UpstreamResponse, idle_timeout: float):
        self.status = head.status
        self.headers = head.headers
        self._pool = pool
        self._conn: _Connection | None = conn
        self._idle_timeout = idle_timeout
        self._finished = False

    async def chunks(self) -> AsyncIterator[bytes]:
        assert self._conn is not None and self._conn._stream is not None, "read before close(), once"
        stream = self._conn._stream
        while True:
            try:
                chunk = await stream.next(self._idle_timeout)
            except _Expired:
                raise UpstreamTimeout(self._pool.service, "timed out between chunks of a streamed response") from None
            except _Closed as exc:
                raise UpstreamUnavailable(self._pool.service, str(exc)) from None
            if chunk is None:
                self._finished = True
                return
            yield chunk

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        stream, conn._stream = conn._stream, None
        keep_alive = self._finished and stream is not None and stream.keep_alive
        self._pool._release(conn, keep_alive, asyncio.get_running_loop())


class _Expired(Exception):
    pass


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(_Expired())


class ServicePool:
    """Keep-alive HTTP/1.1 connections to one service."""

    def __init__(
        self,
        service: str,
        base_url: str,
        *,
        connect_timeout: float = 2.0,
        max_connections: int = 256,
        max_idle: int = 64,
        keepalive_expiry: float = 4.0,
        max_response_bytes: int = 64 * 1024 * 1024,
        internal_secret: str = "",
    ):
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{service}: expected an http(s) URL, got {base_url!r}")
        self.service = service
        self.base_url = base_url
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl: _ssl.SSLContext | None = _ssl.create_default_context() if parts.scheme == "https" else None
        default_port = (parts.scheme == "https" and self.port == 443) or (parts.scheme == "http" and self.port == 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = (host if default_port else f"{host}:{self.port}").encode("idna")
        # Rendered once: every request to the service carries the internal secret (shared/internal_auth.py).
        self.fixed_headers = b"x-valuechain-internal: %s\r\n" % internal_secret.encode() if internal_secret else b""
        self.base_path = parts.path.rstrip("/").encode("ascii")
        self.connect_timeout = connect_timeout
        self.max_connections = max_connections
        self.max_idle = max_idle
        self.keepalive_expiry = keepalive_expiry
        self.max_response_bytes = max_response_bytes
        # As one replica of its service (ReplicaSet): requests under way, whether it is in
        # the rotation, and what its last health check (or a refused connection) said.
        self.in_flight = 0
        self.healthy = True
        self.health = "ready"
        self.failed_checks = 0
        self._idle: deque[_Connection] = deque()
        self._open = 0
        self._waiters: deque[asyncio.Future[_Connection | None]] = deque()
        self._closing = False

    @property
    def open_connections(self) -> int:
        return self._open

    @property
    def idle_connections(self) -> int:
        return sum(1 for conn in self._idle if not conn.closed)

    async def request(
        self,
        method: str,
        target: bytes,
        headers: bytes = b"",
        body: bytes = b"",
        *,
        timeout: float = 30.0,
        retry_non_idempotent: bool = False,
    ) -> UpstreamResponse:
        """Send one request and return the whole answer.

        `target` is the path and query (percent-encoded as sent on the wire),
        `headers` the pre-rendered header lines (`b"name: value\\r\\n"...`) without
        Host, Content-Length, Connection. Raises UpstreamUnavailable or
        UpstreamTimeout.
        """

        response, _ = await self._exchange(
            method, target, headers, body, timeout, retry_non_idempotent, _Connection.exchange
        )
        return response

    async def stream(
        self, method: str, target: bytes, headers: bytes = b"", *, timeout: float = 30.0
    ) -> UpstreamStream:
        """Send one request (no body) and return its answer's head, with the body to be
        read chunk by chunk: `timeout` bounds the wait for the head and for each chunk,
        not the whole answer (an export of a million rows takes a while)."""

        head, conn = await self._exchange(method, target, headers, b"", timeout, False, _Connection.open_stream)
        return UpstreamStream(self, conn, head, timeout)

    async def upload(
        self,
        method: str,
        target: bytes,
        headers: bytes,
        body: AsyncIterator[bytes],
        *,
        length: int | None,
        timeout: float = 30.0,
    ) -> UpstreamResponse:
        """Send one request whose body comes chunk by chunk (an import upload) and
        return the whole answer. The body goes with the client's length when it gave
        one, chunked otherwise, and is never held whole: writing pauses while the
        service is behind. `timeout` bounds each wait for the service (to take more
        of the body, then to answer), not the whole upload.

        On a new connection (unless the pool is at its limit and hands one over),
        closed afterwards: a body read once cannot be sent again, so the keep-alive
        race that `request` retries must not happen, and a fresh connection cannot
        have been closed by the service meanwhile.
        An exception from `body` (the client went away, the body is too large)
        propagates after the connection is closed."""

        loop = asyncio.get_running_loop()
        framing = b"transfer-encoding: chunked\r\n\r\n" if length is None else b"content-length: %d\r\n\r\n" % length
        conn = await self._acquire(loop, loop.time() + timeout, fresh=True)
        conn.used = True
        try:
            head = self._render(method, target, headers, framing)
            return await conn.upload(head, body, length is None, timeout, loop)
        except _Expired:
            raise UpstreamTimeout(self.service, "timed out sending the upload or waiting for the answer") from None
        except _Closed as exc:
            raise UpstreamUnavailable(self.service, str(exc)) from None
        finally:
            self._release(conn, False, loop)

    def _render(self, method: str, target: bytes, headers: bytes, framing: bytes, body: bytes = b"") -> bytes:
        """The request line, the headers, `framing` (the length and the blank line), the body."""

        return b"".join(
            (
                method.encode("ascii"),
                b" ",
                self.base_path,
                target,
                b" HTTP/1.1\r\nhost: ",
                self.host_header,
                b"\r\n",
                self.fixed_headers,
                headers,
                framing,
                body,
            )
        )

    async def _exchange(
        self,
        method: str,
        target: bytes,
        headers: bytes,
        body: bytes,
        timeout: float,
        retry_non_idempotent: bool,
        run: Callable[
            [_Connection, bytes, bool, float, asyncio.AbstractEventLoop], Awaitable[tuple[UpstreamResponse, bool]]
        ],
    ) -> tuple[UpstreamResponse, _Connection]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if body or method in ("POST", "PUT", "PATCH"):
            length = b"content-length: %d\r\n\r\n" % len(body)
        else:
            length = b"\r\n"
        request = self._render(method, target, headers, length, body)
        may_retry = retry_non_idempotent or method in IDEMPOTENT
        head_request = method == "HEAD"
        streaming = run is _Connection.open_stream
        attempt = 0
        while True:
            attempt += 1
            conn = await self._acquire(loop, deadline)
            reused = conn.used
            conn.used = True
            remaining = deadline - loop.time()
            if remaining <= 0:
                self._release(conn, False, loop)
                raise UpstreamTimeout(self.service, "timed out")
            try:
                response, keep_alive = await run(conn, request, head_request, remaining, loop)
            except _Expired:
                conn.close()
                raise UpstreamTimeout(self.service, "timed out waiting for the response") from None
            except _TooLarge as exc:
                conn.close()
                raise UpstreamUnavailable(self.service, str(exc)) from None
            except _Closed as exc:
                conn.close()
                if reused and not exc.got_bytes and may_retry and attempt == 1:
                    continue  # the service closed an idle keep-alive connection: try a new one
                raise UpstreamUnavailable(self.service, str(exc)) from None
            except BaseException:
                # Cancelled mid-exchange: the connection's state is unknown.
                conn.close()
                raise
            if not streaming:
                self._release(conn, keep_alive, loop)
            return response, conn

    async def _acquire(self, loop: asyncio.AbstractEventLoop, deadline: float, fresh: bool = False) -> _Connection:
        while True:
            if self._closing:
                raise UpstreamUnavailable(self.service, "gateway shutting down")
            idle = self._idle
            if idle and not fresh:
                now = loop.time()
                while idle:
                    conn = idle.pop()
                    if conn.closed:
                        continue
                    if now - conn.idle_since > self.keepalive_expiry:
                        conn.close()
                        continue
                    return conn
            if self._open < self.max_connections:
                return await self._connect(loop, deadline)
            # At the limit: wait for a connection to come back or to close.
            waiter: asyncio.Future[_Connection | None] = loop.create_future()
            self._waiters.append(waiter)
            timer = loop.call_later(max(deadline - loop.time(), 0), _expire, waiter)
            try:
                handed_over = await waiter  # a connection, or None: a slot to open one in
            except _Expired:
                raise UpstreamTimeout(self.service, "no free connection in time") from None
            except BaseException:
                # Cancelled after being handed a connection (or a free slot): pass it on.
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    handed = waiter.result()
                    if handed is not None:
                        self._release(handed, True, loop)
                    else:
                        self._wake_one()
                raise
            finally:
                timer.cancel()
                if not waiter.done():
                    try:
                        self._waiters.remove(waiter)
                    except ValueError:
                        pass
            if handed_over is not None:
                return handed_over

    async def _connect(self, loop: asyncio.AbstractEventLoop, deadline: float) -> _Connection:
        self._open += 1
        conn = None
        try:
            timeout = min(self.connect_timeout, max(deadline - loop.time(), 0))
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(self),
                    self.host,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=self.host if self.ssl else None,
                ),
                timeout,
            )
        except TimeoutError:
            self._slot_freed()
            raise UpstreamConnectTimeout(self.service, "timed out connecting") from None
        except OSError as exc:
            self._slot_freed()
            raise UpstreamConnectFailed(self.service, f"cannot connect: {exc.strerror or exc}") from None
        except BaseException:
            self._slot_freed()
            raise
        if conn.closed:  # closed again before we got it
            self._slot_freed()
            raise UpstreamUnavailable(self.service, "connection closed while opening")
        conn._counted = True
        return conn

    def _release(self, conn: _Connection, keep_alive: bool, loop: asyncio.AbstractEventLoop) -> None:
        if not keep_alive or conn.closed or self._closing:
            conn.close()
            return
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        if len(self._idle) >= self.max_idle:
            # Compact out connections that closed while idle before giving up on this one.
            self._idle = deque(c for c in self._idle if not c.closed)
            if len(self._idle) >= self.max_idle:
                conn.close()
                return
        conn.idle_since = loop.time()
        self._idle.append(conn)

    def _forget(self, conn: _Connection) -> None:
        # Called once per connection when it closes (either side).
        if conn._counted:
            conn._counted = False
            self._slot_freed()

    def _slot_freed(self) -> None:
        self._open -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # go and open a new connection
                return

    async def aclose(self) -> None:
        self._closing = True
        while self._idle:
            self._idle.pop().close()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(UpstreamUnavailable(self.service, "gateway shutting down"))
        await asyncio.sleep(0)


class ReplicaSet:
    """The replicas of one service, each a ServicePool, behind the pool's interface
    (`request`, `stream`, `upload`): the gateway's load balancer.

    A request goes to the healthy replica with the fewest requests under way, ties
    broken in turn (so an idle set is plain round robin). Least-in-flight rather than
    round robin because replicas of one service are not equal: the one holding a
    background lease (a refit, an import, a sweep) answers slower, and least-in-flight
    sends it less without anyone saying so; for 2-3 replicas the choice is a scan of
    2-3 counters.

    A replica leaves the rotation when a connection to it cannot be opened (refused,
    or not within the connect timeout) and when its /readyz fails CHECK_FALLS times in
    a row (gateway/health.py checks every replica periodically; `checked`); the check
    puts it back once /readyz answers 200. A request whose connection could not be opened has sent nothing, so it goes
    to another healthy replica once, whatever its method; a request that reached a
    replica is never sent again (a POST may have been applied). With no healthy
    replica, NoHealthyReplica (a 503 naming the service).

    A service with one replica never uses this class (Upstreams hands out its pool
    itself: nothing to choose, nothing added to the hot path, a refused connection
    is a 502 as before).
    """

    def __init__(self, service: str, urls: list[str], **pool_options: Any):
        if len(set(urls)) != len(urls):
            raise ValueError(f"{service}: a replica URL is listed twice in {urls}")
        self.service = service
        self.replicas = [ServicePool(service, url, **pool_options) for url in urls]
        self._healthy = list(self.replicas)
        self._turn = 0
        # Called with (pool, healthy) when a replica leaves or rejoins the rotation (a log line).
        self.on_change: Callable[[ServicePool, bool], None] | None = None

    @property
    def healthy_count(self) -> int:
        return len(self._healthy)

    def checked(self, pool: ServicePool, result: str, *, refused: bool = False) -> None:
        """A health check's `result` ("ready", or why not): a ready replica is back in the
        rotation at once; one that is not leaves it after CHECK_FALLS checks in a row, or at
        once when its connection was `refused` (the process is gone). One slow /readyz of a
        busy replica is not enough to send all its load to the others."""

        if result == "ready":
            pool.failed_checks = 0
            self.set_health(pool, True, result)
            return
        pool.failed_checks += 1
        if refused or pool.failed_checks >= CHECK_FALLS:
            self.set_health(pool, False, result)
        else:
            pool.health = result

    def set_health(self, pool: ServicePool, healthy: bool, detail: str) -> None:
        """Take a replica out of the rotation or put it back (`detail`: why, for /readyz)."""

        pool.health = detail
        if pool.healthy == healthy:
            return
        pool.healthy = healthy
        self._healthy = [replica for replica in self.replicas if replica.healthy]
        if self.on_change is not None:
            self.on_change(pool, healthy)

    def _pick(self, avoid: ServicePool | None = None) -> ServicePool:
        healthy = self._healthy
        count = len(healthy)
        if count == 0 or (count == 1 and healthy[0] is avoid):
            raise NoHealthyReplica(
                self.service,
                f"no healthy replica ({len(self.replicas) - count} of {len(self.replicas)} out of rotation)",
            )
        turn = self._turn = (self._turn + 1) % count
        best: ServicePool | None = None
        for offset in range(count):
            pool = healthy[(turn + offset) % count]
            if pool is avoid:
                continue
            if best is None or pool.in_flight < best.in_flight:
                best = pool
                if not pool.in_flight:
                    break
        assert best is not None
        return best

    def _failed(self, pool: ServicePool, exc: UpstreamError) -> None:
        if exc.before_send:
            self.set_health(pool, False, f"not ready: {exc.detail}")

    async def _call(self, timeout: float, run: Callable[[ServicePool, float], Awaitable[Any]]) -> Any:
        """`run` on a picked replica; once more on another when the first could not connect."""

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pool = self._pick()
        pool.in_flight += 1
        try:
            return await run(pool, timeout)
        except UpstreamError as exc:
            self._failed(pool, exc)
            if not exc.before_send or deadline - loop.time() <= 0:
                raise
        finally:
            pool.in_flight -= 1
        pool = self._pick(avoid=pool)  # NoHealthyReplica if it was the last one in rotation
        pool.in_flight += 1
        try:
            return await run(pool, deadline - loop.time())
        except UpstreamError as exc:
            self._failed(pool, exc)
            if exc.before_send and not self._healthy:
                raise NoHealthyReplica(self.service, "no healthy replica: none accepts connections") from None
            raise
        finally:
            pool.in_flight -= 1

    async def request(
        self,
        method: str,
        target: bytes,
        headers: bytes = b"",
        body: bytes = b"",
        *,
        timeout: float = 30.0,
        retry_non_idempotent: bool = False,
    ) -> UpstreamResponse:
        """ServicePool.request on a replica (see the class docstring)."""

        async def run(pool: ServicePool, left: float) -> UpstreamResponse:
            return await pool.request(
                method, target, headers, body, timeout=left, retry_non_idempotent=retry_non_idempotent
            )

        response: UpstreamResponse = await self._call(timeout, run)
        return response

    async def stream(
        self, method: str, target: bytes, headers: bytes = b"", *, timeout: float = 30.0
    ) -> UpstreamStream:
        """ServicePool.stream on a replica (counted under way until the head is in)."""

        async def run(pool: ServicePool, left: float) -> UpstreamStream:
            return await pool.stream(method, target, headers, timeout=left)

        stream: UpstreamStream = await self._call(timeout, run)
        return stream

    async def upload(
        self,
        method: str,
        target: bytes,
        headers: bytes,
        body: AsyncIterator[bytes],
        *,
        length: int | None,
        timeout: float = 30.0,
    ) -> UpstreamResponse:
        """ServicePool.upload on a replica: a connection that could not be opened has
        read nothing of `body` yet, so another replica may still take it whole."""

        async def run(pool: ServicePool, left: float) -> UpstreamResponse:
            return await pool.upload(method, target, headers, body, length=length, timeout=left)

        response: UpstreamResponse = await self._call(timeout, run)
        return response

    async def aclose(self) -> None:
        for pool in self.replicas:
            await pool.aclose()


class Upstreams:
    """The pools for every service: the one upstream client of a gateway process.

    `urls` gives each service its replicas' base URLs (or one URL as a string). A
    service with one replica is served by its ServicePool, one with several by a
    ReplicaSet over theirs."""

    def __init__(self, urls: Mapping[str, str | Sequence[str]], **pool_options: Any):
        self.pools: dict[str, ServicePool | ReplicaSet] = {}
        for service, given in urls.items():
            replicas = [given] if isinstance(given, str) else list(given)
            if not replicas:
                raise ValueError(f"{service}: no URL")
            self.pools[service] = (
                ServicePool(service, replicas[0], **pool_options)
                if len(replicas) == 1
                else ReplicaSet(service, replicas, **pool_options)
            )

    def __getitem__(self, service: str) -> ServicePool | ReplicaSet:
        return self.pools[service]

    def replicas(self, service: str) -> list[ServicePool]:
        """The service's replicas (one pool each), in the order of its URLs."""

        upstream = self.pools[service]
        return upstream.replicas if isinstance(upstream, ReplicaSet) else [upstream]

    def replica_sets(self) -> list[ReplicaSet]:
        """The services with several replicas: the ones whose rotation health checks keep."""

        return [upstream for upstream in self.pools.values() if isinstance(upstream, ReplicaSet)]

    async def aclose(self) -> None:
        for pool in self.pools.values():
            await pool.aclose()
