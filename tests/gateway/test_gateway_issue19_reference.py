"""The gateway's own HTTP/1.1 client (gateway/upstream.py) against a reference parser,
h11 (issue 19): hypothesis writes service answers, well-formed and not (framing by
length, chunks or close; folded lines, trailers, bytes after the answer, early close,
bad status lines, duplicate or conflicting lengths), a raw socket server sends each to
a real ServicePool, and h11 reads the same bytes. Both must give the same verdict: the
same status, headers and body, or an error from both.

Where they may differ, the rule is written below with its reason (`STRICTER`, `LAXER`,
`_same_header`): a difference the rules do not name fails the test.
"""

from __future__ import annotations

import asyncio
import string
from dataclasses import dataclass, field

import h11
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gateway.upstream import ServicePool, UpstreamError

# An answer the client refuses where h11 reads one: each one a rule with its reason.
STRICTER = {
    # Obsolete line folding: RFC 9112 5.2 has a proxy either reject it (502) or unfold
    # it; llhttp rejects. h11 unfolds.
    "fold",
    # A control character in a field value (RFC 9110 5.5 excludes them); h11 takes it.
    "ctl",
    # Content-Length twice, or as a list, even when equal: RFC 9112 6.3 lets a
    # recipient reject it or take the one value; llhttp rejects, h11 takes it.
    "dup_length",
    # Both Transfer-Encoding and Content-Length: RFC 9112 6.3 says a message like this
    # "ought to be handled as an error" (smuggling, splitting); h11 takes the chunks.
    "te_and_length",
    # Whitespace after a chunk size: not in RFC 9112 7.1's grammar; h11 allows it.
    "chunk_ws",
    # Bare LF line ends: RFC 9112 2.2 lets a recipient accept them; llhttp does not.
    "bare_lf",
    # An answer framed by the connection's close: refused, since one cut short by a
    # crash or a reset looks complete (docs/operations.md); h11 reads to the close.
    "close_framed",
    # An interim answer other than 100 Continue (101, 103, ...): refused (issue 19,
    # fix 5); h11 skips it and reads on.
    "interim",
    # A status over 599 (RFC 9110 15): refused; h11 takes any three digits.
    "status_range",
}
# An answer the client reads where h11 refuses it.
LAXER = {
    # Empty lines before the status line: llhttp skips them (as RFC 9112 2.2 has servers
    # do before a request line); h11 refuses. Where the answer starts is not in doubt,
    # and bytes arriving after a complete answer close the connection anyway.
    "leading_crlf",
}


def _same_header(name: bytes, value: bytes) -> tuple[bytes, bytes]:
    # llhttp leaves whitespace after a field value in place, h11 strips it. RFC 9110 5.5:
    # it is not part of the value; the gateway passes it on as the service sent it.
    value = value.rstrip(b" \t")
    if name == b"transfer-encoding":
        # h11 lower-cases this one value (a coding is case-insensitive, RFC 9112 7);
        # the gateway does not pass the header on at all.
        value = value.lower()
    return name, value


@dataclass
class Answer:
    raw: bytes
    # Features of the answer the rules above speak of, with the offset where each starts
    # (an early close before it leaves it out).
    features: dict[str, int] = field(default_factory=dict)

    def mark(self, feature: str) -> None:
        self.features.setdefault(feature, len(self.raw))

    def add(self, data: bytes) -> None:
        self.raw += data


NAMES = [b"x-a", b"X-Mixed-Case", b"content-type", b"set-cookie", b"etag", b"vary"]
VALUE = st.text(string.ascii_letters + string.digits + "-_.;=/ ,\t", max_size=12).map(str.encode)
BODY = st.binary(max_size=40)


@st.composite
def answers(draw: st.DrawFn) -> Answer:
    answer = Answer(b"")
    if draw(st.booleans()):
        answer.add(b"HTTP/1.1 100 Continue\r\n\r\n")
    if draw(st.integers(0, 9)) == 0:
        answer.mark("leading_crlf")
        answer.add(b"\r\n")

    # The status line.
    status = draw(st.sampled_from([200] * 4 + [201, 204, 304, 404, 500, 299, 101, 103, 999, 0]))
    if status == 0:
        answer.add(
            draw(
                st.sampled_from(
                    [
                        b"HTTP/1.1 20 OK\r\n",
                        b"http/1.1 200 OK\r\n",
                        b"HTTP/1.1 abc OK\r\n",
                        b"HTTP/1.1\r\n",
                        b"ICY 200 OK\r\n",
                    ]
                )
            )
        )
    else:
        if 100 <= status < 200:
            answer.mark("interim")
        if status > 599:
            answer.mark("status_range")
        version = draw(st.sampled_from([b"1.1", b"1.0"]))
        reason = draw(st.sampled_from([b" OK", b" Something Else", b"", b" "]))
        answer.add(b"HTTP/%s %d%s\r\n" % (version, status, reason))

    # Headers, one of them perhaps malformed.
    for name, value in draw(st.lists(st.tuples(st.sampled_from(NAMES), VALUE), max_size=4)):
        answer.add(name + b": " + value + b"\r\n")
    bad = draw(st.sampled_from([None] * 18 + ["fold", "ctl", "nul", "no-colon", "space-colon", "empty-name"]))
    if bad == "fold":
        answer.mark("fold")
        answer.add(b"x-folded: one\r\n two\r\n")
    elif bad == "ctl":
        answer.mark("ctl")
        answer.add(b"x-ctl: a\x01b\r\n")
    elif bad is not None:
        answer.add(
            {"nul": b"x-nul: a\x00b\r\n", "no-colon": b"no colon\r\n", "space-colon": b"x-a : v\r\n"}.get(
                bad, b": v\r\n"
            )
        )

    # Framing and body.
    body = draw(BODY)
    framing = draw(
        st.sampled_from(
            ["length"] * 5
            + ["short", "long", "dup", "list", "conflict", "bad-length"]
            + ["chunked"] * 5
            + ["bad-chunk", "te-and-length", "te-other", "te-twice", "none"]
        )
    )
    if framing in ("length", "short", "long", "dup", "list", "conflict"):
        length = len(body) + {"short": -min(len(body), 3), "long": 3}.get(framing, 0)
        if framing in ("dup", "list"):
            answer.mark("dup_length")
        if framing == "list":
            answer.add(b"content-length: %d, %d\r\n" % (length, length))
        else:
            answer.add(b"content-length: %d\r\n" % length)
            if framing in ("dup", "conflict"):
                answer.add(b"content-length: %d\r\n" % (length + (framing == "conflict")))
        answer.add(b"\r\n" + body)
    elif framing == "bad-length":
        answer.add(b"content-length: " + draw(st.sampled_from([b"abc", b"+2", b"-1", b"0x2", b"9" * 30])) + b"\r\n\r\n")
        answer.add(body)
    elif framing == "none":
        if status not in (204, 304) and not 100 <= status < 200:
            answer.mark("close_framed")
        answer.add(b"\r\n" + body)
    else:
        if framing == "te-and-length":
            answer.mark("te_and_length")
            answer.add(b"content-length: %d\r\n" % len(body))
        coding = {"te-other": draw(st.sampled_from([b"gzip, chunked", b"gzip", b"chunked, chunked"]))}.get(framing)
        answer.add(b"transfer-encoding: " + (coding or draw(st.sampled_from([b"chunked", b"Chunked"]))) + b"\r\n")
        if framing == "te-twice":
            answer.add(b"transfer-encoding: chunked\r\n")
        answer.add(b"\r\n")
        answer.add(draw(chunks(body, answer, bad=framing == "bad-chunk")))

    if draw(st.integers(0, 9)) == 0:
        # Bare LF line ends all through the head.
        head, sep, rest = answer.raw.partition(b"\r\n\r\n")
        if sep:
            answer = Answer(head.replace(b"\r\n", b"\n") + b"\n\n" + rest, dict.fromkeys(answer.features, 0))
            answer.mark("bare_lf")
    answer.add(draw(st.sampled_from([b""] * 4 + [b"HTTP/1.1 418 I'm a teapot\r\ncontent-length: 0\r\n\r\n", b"junk"])))
    if draw(st.integers(0, 4)) == 0:  # an early close
        cut = draw(st.integers(0, max(len(answer.raw) - 1, 0)))
        answer = Answer(answer.raw[:cut], {name: at for name, at in answer.features.items() if at < cut})
    return answer


@st.composite
def chunks(draw: st.DrawFn, body: bytes, answer: Answer, bad: bool) -> bytes:
    out = b""
    rest = body
    while rest:
        size = draw(st.integers(1, len(rest)))
        piece, rest = rest[:size], rest[size:]
        line = (b"%X" if draw(st.booleans()) else b"%x") % size
        if draw(st.integers(0, 5)) == 0:
            line += b";ext=1"
        if draw(st.integers(0, 9)) == 0:
            answer.features.setdefault("chunk_ws", len(answer.raw) + len(out))
            line += b" "
        out += line + b"\r\n" + piece + b"\r\n"
    if bad:
        out += draw(st.sampled_from([b"zz\r\nab\r\n", b"2\r\nabX\r\n", b"f" * 24 + b"\r\n"]))
    out += b"0\r\n"
    for name, value in draw(st.lists(st.tuples(st.sampled_from([b"x-trailer", b"x-request-id"]), VALUE), max_size=2)):
        out += name + b": " + value + b"\r\n"
    return out + b"\r\n"


# -- the two readers ------------------------------------------------------------------

ERROR = ("error",)


def h11_verdict(raw: bytes) -> tuple:
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "svc")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(raw)
    closed = False
    response = None
    body = b""
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:
            return ERROR
        if event is h11.NEED_DATA:
            if closed:
                return ERROR
            conn.receive_data(b"")  # the server closed the connection
            closed = True
        elif isinstance(event, h11.InformationalResponse):
            continue
        elif isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert response is not None
            headers = [_same_header(bytes(name), bytes(value)) for name, value in response.headers]
            return ("ok", response.status_code, headers, body)
        else:  # ConnectionClosed before an answer
            return ERROR


async def our_verdict(url: str) -> tuple:
    pool = ServicePool("svc", url)
    try:
        result = await pool.request("GET", b"/", timeout=5.0)
    except UpstreamError:
        return ERROR
    finally:
        await pool.aclose()
    return ("ok", result.status, [_same_header(name, value) for name, value in result.headers], result.body)


@pytest.fixture(scope="module")
def service():
    """A raw server on its own loop that sends `current["raw"]` to each request, then closes."""

    loop = asyncio.new_event_loop()
    current = {"raw": b""}

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(current["raw"])
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = loop.run_until_complete(asyncio.start_server(answer, "127.0.0.1", 0))
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield loop, url, current
    finally:
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()


@settings(
    max_examples=200, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(answer=answers())
def test_the_client_reads_answers_as_h11_does(service, answer: Answer):
    loop, url, current = service
    current["raw"] = answer.raw
    ours = loop.run_until_complete(our_verdict(url))
    theirs = h11_verdict(answer.raw)
    event(f"ours: {ours[0]}, h11: {theirs[0]}")
    if ours == theirs:
        return
    features = set(answer.features)
    if ours == ERROR:
        assert features & STRICTER, f"we refused what h11 read as {theirs}: {answer.raw!r}"
    elif theirs == ERROR:
        assert features & LAXER, f"we read {ours} where h11 refused: {answer.raw!r}"
    else:
        pytest.fail(f"different answers: ours {ours}, h11's {theirs}: {answer.raw!r}")


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nx-a: 1\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2;x=y\r\nok\r\nA\r\n0123456789\r\n0\r\nx-t: 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 418 I'm a teapot\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\ncontent-length: 2\r\n\r\nok",
    ],
    ids=["length", "interim-100", "chunked-trailers", "extra-answer", "204-with-body"],
)
def test_well_formed_answers_read_the_same(service, raw):
    """A few answers both must read alike, so the property test cannot pass by refusing everything."""

    loop, url, current = service
    current["raw"] = raw
    ours = loop.run_until_complete(our_verdict(url))
    assert ours != ERROR and ours == h11_verdict(raw)
