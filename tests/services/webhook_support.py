"""A real HTTP receiver in the test process (aiohttp on 127.0.0.1) for network's webhooks,
and the helpers the webhook tests share."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from standardwebhooks import Webhook

from tests.support import wait_until

# What the receiver answers a request on a path: (status, headers, body); may sleep first.
Answer = Callable[[web.Request], Awaitable[tuple[int, dict[str, str], str]]]


async def ok(request: web.Request) -> tuple[int, dict[str, str], str]:
    return 200, {}, "thanks"


@dataclass
class Call:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    answers: dict[str, Answer] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    port: int = 0
    # path -> the secrets its deliveries are signed with: every call on it is verified
    # (standardwebhooks) as it arrives, and the receiver fails the test at exit if one was not.
    secrets: dict[str, list[str]] = field(default_factory=dict)
    unverified: list[str] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    def signed_by(self, path: str, *secrets: str) -> None:
        self.secrets.setdefault(path, []).extend(secrets)

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()
        if exc[0] is None:
            assert self.unverified == [], f"deliveries whose signature did not verify: {self.unverified}"

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        call = Call(request.path, dict(request.headers), await request.read())
        self.calls.append(call)
        secrets = self.secrets.get(request.path)
        if secrets:
            for secret in secrets:
                try:
                    verified(secret, call)
                    break
                except Exception:
                    continue
            else:
                self.unverified.append(f"{request.path}: {call.headers.get('webhook-id')}")
        status, headers, body = await self.answers.get(request.path, ok)(request)
        return web.Response(status=status, headers=headers, text=body)

    def on(self, path: str) -> list[Call]:
        return [call for call in self.calls if call.path == path]

    async def wait_for(self, path: str, count: int, timeout: float = 10.0) -> list[Call]:
        await wait_until(lambda: len(self.on(path)) >= count, timeout=timeout, what=f"{count} calls on {path}")
        return self.on(path)


def verified(secret: str, call: Call) -> dict:
    """The event of a delivery, verified with the standardwebhooks library (raises if not)."""

    return Webhook(secret).verify(call.body, call.headers)


async def never(request: web.Request) -> tuple[int, dict[str, str], str]:
    await asyncio.sleep(3600)
    raise AssertionError("unreachable")
