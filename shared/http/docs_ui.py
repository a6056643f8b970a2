"""`/docs`: Swagger UI served from the swagger-ui-bundle package, so it works offline.

FastAPI's own `/docs` page loads Swagger UI from a CDN: behind a firewall, on a
plane, or on a machine that must not call out, the page stays blank. Here the
page and its assets come from the process itself, under `/docs/assets/`.

swagger-ui-bundle ships Swagger UI 4.15, which refuses to render a document whose
`openapi` field is not `3.0.n`; ours are 3.1 (FastAPI's). The page rewrites the
version field of the document it fetched before Swagger UI reads it: the 3.1
constructs our documents use (`anyOf` with `null`, numeric exclusive bounds,
`examples`) render well enough for reading and trying the API. The document
served at `/openapi.json` is unchanged.

The page runs under a strict Content-Security-Policy (`CSP`): scripts, styles,
fonts and API calls from its own origin only, no inline script or style, no eval,
no framing. So the page's own start-up script is not inline but an asset of its
own (`/docs/swagger-init.js`), and the validator badge (an image from
validator.swagger.io) is off. `img-src` allows `data:` for the icons that
swagger-ui.css carries inline.
"""

from __future__ import annotations

import html
import json

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

ASSETS = "/docs/assets"
# What the page loads: checked by the tests to be served, with these types.
ASSET_FILES = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "application/javascript",  # "text/javascript" on some systems' mime tables
    "favicon-32x32.png": "image/png",
}

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="stylesheet" type="text/css" href="{assets}/swagger-ui.css">
<link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{init}"></script>
</body>
</html>
"""

INIT_SCRIPT = "/docs/swagger-init.js"
# Only this origin's scripts, styles, fonts and API calls; nothing inline, no eval.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

_INIT = """"use strict";
const openapiUrl = {openapi_url};
window.ui = SwaggerUIBundle({{
  url: openapiUrl,
  dom_id: "#swagger-ui",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  // Swagger UI 4 reads only `openapi: 3.0.n`; the document is 3.1 (see shared/http/docs_ui.py).
  responseInterceptor: (response) => {{
    if (response.url && response.url.endsWith(openapiUrl) && typeof response.text === "string") {{
      try {{
        const doc = JSON.parse(response.text);
        if (typeof doc.openapi === "string" && doc.openapi.startsWith("3.1")) {{
          doc.openapi = "3.0.3";
          response.text = JSON.stringify(doc);
          response.data = response.text;
          response.body = doc;
          response.obj = doc;
        }}
      }} catch (e) {{}}
    }}
    return response;
  }},
}});
"""


def docs_page(*, title: str) -> str:
    return _PAGE.format(title=html.escape(title), assets=ASSETS, init=INIT_SCRIPT)


def init_script(*, openapi_url: str) -> str:
    return _INIT.format(openapi_url=json.dumps(openapi_url))


def install_docs(app: FastAPI, *, openapi_url: str = "/openapi.json", title: str | None = None) -> None:
    """`GET /docs` and its assets. Call it after the app's routers are included: a mount in
    front of them would send every request past shared/http/fast_reads.py's light path."""

    page = docs_page(title=title or f"{app.title} - docs")
    script = init_script(openapi_url=openapi_url)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(page, headers={"content-security-policy": CSP})

    @app.get(INIT_SCRIPT, include_in_schema=False)
    async def docs_init() -> Response:
        return Response(script, media_type="text/javascript")

    app.mount(ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui-assets")
