"""The console: the web app for the people who run the CRM, served by the gateway at /console/.

A small client app, not server-rendered pages. The console is one more client of the
gateway: each page is a JavaScript module that calls the same `/v1` API with the user's
own key or JWT, so it can do exactly what the role may (`GET /v1/me`) and nothing the
API does not. A server-rendered console would need a second way in (a session cookie,
CSRF tokens, a server-side copy of every call); this way the gateway's access checks,
rate limits and audit log apply as they are. The key stays in the tab's session storage
and travels only in the Authorization header, never in a URL or a cookie.

No Node toolchain: the modules are plain ES modules served as files, and the one
third-party script, plotly.js for the charts, comes from the `plotly` wheel
(`plotly/package_data/plotly.min.js`), installed by requirements.lock like any dependency.

Content-Security-Policy: scripts from this origin only, no inline script and no eval.
plotly.js writes its own style rules (modebar, hover labels, and the
`image-rendering: pixelated` that keeps heatmap cells sharp), so `style-src` allows
'unsafe-inline' (docs/console.md). connect-src adds the IdP's token endpoint when SSO is on.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path
from typing import get_args
from urllib.parse import urlsplit

import orjson
from fastapi import FastAPI
from fastapi.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from gateway.access.roles import ROLES
from gateway.settings import SERVICES, GatewaySettings
from shared.events.contracts import CUSTOMER_KINDS, RFM_SEGMENTS, Stage

STATIC = Path(__file__).parent / "static"
PREFIX = "/console"


def plotly_js_path() -> Path:
    """plotly.min.js in the installed plotly wheel, found without importing plotly (and its
    dependencies) into the gateway."""

    spec = find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the console needs the plotly package (requirements.lock installs it)")
    return Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"


def content_security_policy(settings: GatewaySettings) -> str:
    connect = "'self'"
    if settings.console_oidc_token_url:
        parts = urlsplit(settings.console_oidc_token_url)
        connect += f" {parts.scheme}://{parts.netloc}"
    return (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
        f"font-src 'self'; connect-src {connect}; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


def vocabulary() -> dict[str, list[str]]:
    """The suite's names the pages offer in their filters and forms, from the code that defines
    them (js/vocabulary.js). Roles least privileged first: a key form starts on the narrowest."""

    return {
        "segments": list(RFM_SEGMENTS),
        "kinds": list(CUSTOMER_KINDS),
        "stages": list(get_args(Stage)),
        "services": list(SERVICES),
        "roles": sorted(ROLES, key=lambda role: (len(ROLES[role]), role)),
    }


def console_config(settings: GatewaySettings) -> dict[str, object]:
    """What the app needs before sign-in: whether SSO is on, and where; the suite's names."""

    sso = None
    if settings.console_oidc_client_id:
        sso = {
            "authorize_url": settings.console_oidc_authorize_url,
            "token_url": settings.console_oidc_token_url,
            "client_id": settings.console_oidc_client_id,
            "scope": settings.console_oidc_scope,
        }
    return {"sso": sso, "vocabulary": vocabulary()}


class _ConsoleFiles(StaticFiles):
    """The console's own files, each with the console's CSP."""

    def __init__(self, directory: Path, csp: str) -> None:
        super().__init__(directory=str(directory))
        self.csp = csp

    def file_response(self, *args, **kwargs) -> Response:  # type: ignore[no-untyped-def]
        response = super().file_response(*args, **kwargs)
        response.headers["content-security-policy"] = self.csp
        return response


def install_console(app: FastAPI, settings: GatewaySettings) -> None:
    """`/console/` and its files. Installed after the routers (see shared/http/docs_ui.py)."""

    csp = content_security_policy(settings)
    index = (STATIC / "index.html").read_bytes()
    config = orjson.dumps(console_config(settings))
    plotly_js = plotly_js_path().read_bytes()

    @app.get(PREFIX, include_in_schema=False)
    async def console_root() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/", status_code=308)

    # The IdP sends the browser back here with ?code=&state= (or ?error=): declared, so the
    # gateway's unknown-query guard lets them through; the page's script reads them.
    @app.get(f"{PREFIX}/", include_in_schema=False)
    async def console_index(
        code: str | None = None,
        state: str | None = None,
        error: str | None = None,
        error_description: str | None = None,
    ) -> Response:
        return Response(index, media_type="text/html; charset=utf-8", headers={"content-security-policy": csp})

    @app.get(f"{PREFIX}/config.json", include_in_schema=False)
    async def console_settings() -> Response:
        return Response(config, media_type="application/json")

    @app.get(f"{PREFIX}/vendor/plotly.min.js", include_in_schema=False)
    async def console_plotly() -> Response:
        return Response(plotly_js, media_type="text/javascript")

    app.mount(f"{PREFIX}/static", _ConsoleFiles(STATIC, csp), name="console-static")
