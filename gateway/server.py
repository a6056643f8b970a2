"""The gateway's HTTP server protocol: uvicorn's httptools protocol with the limits a
front door needs, which live below ASGI (the app sees a request only once its head
is complete, so it cannot bound one that never completes).

Issue 19 found a gateway that forwarded a 1 MB header value and 20,000 headers, and
held a connection with no deadline for half-sent headers, a body shorter than its
Content-Length and a chunked body that lies about its size. So `GatewayHttpProtocol`

* caps the request head (request line and headers) in bytes and in header lines:
  431 with a JSON body, then close. The bytes of an incomplete head are counted as
  they arrive (llhttp keeps a partial header until it ends), so a head that never
  ends is cut at the cap plus one read;
* gives a request head `request_header_timeout_s` from its first byte (and a new
  connection as long to start one), and a body `request_body_idle_timeout_s` between
  reads and `request_body_timeout_s` in all: 408 with a JSON body, then close. Time
  the gateway itself is behind (reading paused by flow control) is never the
  client's fault and does not count. When an answer already went out (the gateway
  may answer before reading a body, e.g. a 401), the connection is only closed;
* reads chunked trailers and drops them: llhttp reports trailers through the same
  callback as headers, and uvicorn appended them to the request's headers, so a
  trailer in the same packet could authenticate a request or set X-Forwarded-Host;
* refuses a Transfer-Encoding other than exactly `chunked` (`gzip, chunked`): 501,
  where llhttp would de-chunk and the gzip coding would be silently dropped;
* keeps at most `max_idle_connections_per_client` connections per client address
  waiting for a request (new, between requests, or with an incomplete head): over
  it, that client's oldest waiting connection is closed;
* answers llhttp's parse errors with the suite's JSON 400 instead of uvicorn's text;
* closes after a refusal the way nginx does (LINGER_S, LINGER_BYTES), so that the
  client reads the refusal instead of a reset.

Run the gateway with `python -m gateway` (gateway/__main__.py), which serves with this
protocol; `uvicorn gateway.main:create_app` alone would not.

The checks cost the hot path a few comparisons per read and per header, and a dict
insert and removal per request (the idle registry); timers are armed only while a
head or a body is incomplete after a read, so a request that arrives in one packet
arms none.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from gateway.settings import GatewaySettings
from shared.http.errors import error_body

# After a refusal, how long and how much more the connection is read (and dropped)
# before it is closed: closing a socket with unread bytes resets it, and the reset can
# take the refusal with it (a client still sending a 1 MB header got a reset, not its
# 431). nginx's lingering close does the same.
LINGER_S = 2.0
LINGER_BYTES = 4 * 1024 * 1024

# Where a connection is in its current request.
_HEAD = 0  # waiting for a request head, or reading one
_BODY = 1  # head complete, body (or trailers) still coming


@dataclass(frozen=True)
class ClientLimits:
    """What a client's request may take: GatewaySettings' `max_request_header*`,
    `request_*_timeout_s` and `max_idle_connections_per_client` (0: no bound)."""

    max_header_bytes: int
    max_headers: int
    header_timeout: float
    body_idle_timeout: float
    body_timeout: float
    max_idle_per_client: int

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> ClientLimits:
        return cls(
            max_header_bytes=settings.max_request_header_bytes,
            max_headers=settings.max_request_headers,
            header_timeout=settings.request_header_timeout_s,
            body_idle_timeout=settings.request_body_idle_timeout_s,
            body_timeout=settings.request_body_timeout_s,
            max_idle_per_client=settings.max_idle_connections_per_client,
        )


class _Refusal(Exception):
    """A request the protocol answers itself (then closes the connection)."""

    def __init__(self, status: int, error: str, detail: str):
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail


_BAD_REQUEST = _Refusal(400, "bad_request", "invalid HTTP request")


class _Waiting:
    """One server's connections waiting for a request, per client address, oldest first."""

    def __init__(self, limit: int):
        self.limit = limit
        self.by_client: dict[str, dict[GatewayHttpProtocol, None]] = {}

    def add(self, conn: GatewayHttpProtocol, client: str) -> None:
        waiting = self.by_client.get(client)
        if waiting is None:
            waiting = self.by_client[client] = {}
        waiting[conn] = None
        while len(waiting) > self.limit:
            oldest = next(iter(waiting))
            del waiting[oldest]
            oldest.transport.close()

    def discard(self, conn: GatewayHttpProtocol, client: str) -> None:
        waiting = self.by_client.get(client)
        if waiting is not None:
            waiting.pop(conn, None)
            if not waiting:
                del self.by_client[client]


# One registry per uvicorn server (tests run several gateways in one process).
_WAITING: weakref.WeakKeyDictionary[ServerState, _Waiting] = weakref.WeakKeyDictionary()


class GatewayHttpProtocol(HttpToolsProtocol):
    """See the module docstring. `limits` is set on a subclass by `protocol_class`;
    left None (`python -m gateway`'s worker processes import the class by name), it is
    read once per process from the VALUECHAIN_GATEWAY_* environment, as the app is."""

    limits: ClassVar[ClientLimits | None] = None

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        cls = type(self)
        limits = cls.limits
        if limits is None:
            limits = cls.limits = ClientLimits.from_settings(GatewaySettings())
        self._limits = limits
        self._phase = _HEAD
        self._head_bytes = 0  # read while the head is incomplete
        self._header_lines = 0  # this request's header and trailer lines ...
        self._header_size = 0  # ... and their bytes
        self._bad_coding: bytes | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0  # the body's, in all
        self._last_read = 0.0
        self._waiting: _Waiting | None = None
        self._client_host = ""
        self._lingering = 0  # bytes still to drop after a refusal (see LINGER_BYTES)

    # -- connection -----------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self._limits.max_idle_per_client > 0 and self.client is not None:
            waiting = _WAITING.get(self.server_state)
            if waiting is None:
                waiting = _WAITING[self.server_state] = _Waiting(self._limits.max_idle_per_client)
            self._waiting = waiting
            self._client_host = self.client[0]
            waiting.add(self, self._client_host)
        # A new connection gets as long to send a head as a started head has to end.
        self._arm(self._limits.header_timeout, self._head_expired)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._waiting is not None:
            self._waiting.discard(self, self._client_host)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            self._lingering -= len(data)
            if self._lingering <= 0:
                self.transport.close()
            return
        self._unset_keepalive_if_required()
        if self._phase == _HEAD:
            self._head_bytes += len(data)
        else:
            self._last_read = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            self._refuse(cause if isinstance(cause, _Refusal) else _BAD_REQUEST)
            return
        if self._phase == _HEAD:
            if self._head_bytes > self._limits.max_header_bytes:
                self._refuse(self._head_too_large())
            elif self._timer is None and self._head_bytes:
                self._arm(self._limits.header_timeout, self._head_expired)
        elif self._timer is None and not self.transport.is_closing():
            now = self.loop.time()
            self._deadline = now + self._limits.body_timeout
            self._last_read = now
            self._arm(min(self._limits.body_idle_timeout, self._limits.body_timeout), self._body_expired)

    # -- parser callbacks -------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_lines = 0
        self._header_size = 0
        self._bad_coding = None

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_lines += 1
        self._header_size += len(name) + len(value) + 4
        if self._header_lines > self._limits.max_headers:
            raise _Refusal(
                431, "request_header_fields_too_large", f"more than {self._limits.max_headers} request header lines"
            )
        if self._header_size > self._limits.max_header_bytes:
            raise self._head_too_large()
        if self._phase != _HEAD:
            return  # a trailer of a chunked body: read, counted, never a request header
        name = name.lower()
        if name == b"expect":
            if value.lower() == b"100-continue":
                self.expect_100_continue = True
        elif name == b"transfer-encoding" and value.strip().lower() != b"chunked":
            self._bad_coding = value
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if len(self.url) + self._header_size > self._limits.max_header_bytes:
            raise self._head_too_large()
        if self._bad_coding is not None:
            coding = self._bad_coding.decode("latin-1")
            raise _Refusal(
                501,
                "not_implemented",
                f"Transfer-Encoding {coding!r} is not supported: send the body as it is, "
                "with Content-Length or Transfer-Encoding: chunked alone",
            )
        self._phase = _BODY
        self._disarm()
        super().on_headers_complete()
        if self._waiting is not None:
            self._waiting.discard(self, self._client_host)

    def on_message_complete(self) -> None:
        self._phase = _HEAD
        self._head_bytes = 0
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._waiting is not None and self.timeout_keep_alive_task is not None:
            # Kept alive and waiting for the next request.
            self._waiting.add(self, self._client_host)

    # -- deadlines ----------------------------------------------------------------

    def _arm(self, delay: float, callback: Any) -> None:
        self._timer = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_expired(self) -> None:
        self._timer = None
        if self._phase != _HEAD or self.transport.is_closing():
            return
        if not self._head_bytes:
            self.transport.close()  # nothing asked: nothing to answer
            return
        detail = f"request head not received within {self._limits.header_timeout:g} s"
        self._refuse(_Refusal(408, "request_timeout", detail))

    def _body_expired(self) -> None:
        self._timer = None
        if self._phase != _BODY or self.transport.is_closing():
            return
        now = self.loop.time()
        if self.flow.read_paused:
            # The gateway is behind (the app has not taken what was read): not the client's time.
            self._deadline += now - self._last_read
            self._last_read = now
        elif now >= self._deadline:
            detail = f"request body not received within {self._limits.body_timeout:g} s"
            self._refuse(_Refusal(408, "request_timeout", detail))
            return
        elif now - self._last_read >= self._limits.body_idle_timeout:
            detail = f"no request body bytes for {self._limits.body_idle_timeout:g} s"
            self._refuse(_Refusal(408, "request_timeout", detail))
            return
        due = min(self._deadline, self._last_read + self._limits.body_idle_timeout)
        self._arm(max(due - now, 0.0), self._body_expired)

    # -- refusing ------------------------------------------------------------------

    def _head_too_large(self) -> _Refusal:
        return _Refusal(
            431, "request_header_fields_too_large", f"request head over {self._limits.max_header_bytes} bytes"
        )

    def _refuse(self, refusal: _Refusal) -> None:
        """Answer `refusal` when no answer to this request has started, then close."""

        self._disarm()
        transport = self.transport
        if transport.is_closing():
            return
        cycle = self.cycle
        if self._phase == _HEAD:
            # A pipelined request's answer may still be going out: never interleave.
            can_answer = cycle is None or cycle.response_complete
        else:
            can_answer = cycle is not None and not cycle.response_started
            if can_answer:
                # The app reading this body learns that the client is gone, and its
                # answer (if any) is dropped.
                cycle.disconnected = True
                cycle.message_event.set()
        self.logger.warning(
            "%s %s from %s: %s", refusal.status, refusal.error, self.client[0] if self.client else "?", refusal.detail
        )
        if not can_answer:
            transport.close()
            return
        body = error_body(refusal.error, refusal.detail)
        transport.write(
            b"".join(
                (
                    STATUS_LINE[refusal.status],
                    b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body),
                    body,
                )
            )
        )
        # A lingering close: the answer and our end of the stream go out, and what the
        # client still sends is read and dropped, until it closes, LINGER_BYTES or LINGER_S.
        if self._waiting is not None:
            self._waiting.discard(self, self._client_host)
            self._waiting = None
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self._lingering = LINGER_BYTES
        self.flow.resume_reading()
        self._timer = self.loop.call_later(LINGER_S, transport.close)


def protocol_class(settings: GatewaySettings) -> type[GatewayHttpProtocol]:
    """The protocol with `settings`' limits, for a server started in this process."""

    limits = ClientLimits.from_settings(settings)
    return type("GatewayHttpProtocol", (GatewayHttpProtocol,), {"limits": limits})
