"""The console's "Sign in with SSO" in a real browser: the authorization code flow with PKCE
against an identity provider made in the test (authorize, token and JWKS endpoints on
loopback), ending signed in with the role of the token's claim."""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import urlencode

from fastapi import FastAPI, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse

from tests.e2e.console import ConsolePage, open_console
from tests.gateway.conftest import serve
from tests.gateway.test_gateway_access_jwt import AUDIENCE, ISSUER, IdP

CLIENT_ID = "valuechain-console"


class CodeFlowIdP(IdP):
    """The JWT test's IdP, with an authorization endpoint that signs the user in at once and
    a token endpoint that checks the PKCE verifier against the challenge."""

    def __init__(self) -> None:
        super().__init__()
        self.codes: dict[str, dict] = {}
        self.console_origin = ""

    def app(self) -> FastAPI:
        app = super().app()

        @app.get("/authorize")
        async def authorize(request: Request) -> RedirectResponse:
            asked = request.query_params
            assert asked["response_type"] == "code" and asked["client_id"] == CLIENT_ID
            assert asked["code_challenge_method"] == "S256"
            code = secrets.token_urlsafe(16)
            self.codes[code] = {"challenge": asked["code_challenge"], "redirect_uri": asked["redirect_uri"]}
            back = urlencode({"code": code, "state": asked["state"]})
            return RedirectResponse(f"{asked['redirect_uri']}?{back}", status_code=302)

        @app.options("/token")
        async def preflight() -> JSONResponse:
            return JSONResponse({}, headers=self.cors())

        @app.post("/token")
        async def token(
            grant_type: str = Form(), code: str = Form(), redirect_uri: str = Form(), code_verifier: str = Form()
        ) -> JSONResponse:
            issued = self.codes.pop(code, None)
            digest = hashlib.sha256(code_verifier.encode()).digest()
            challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if grant_type != "authorization_code" or issued is None or issued["challenge"] != challenge:
                return JSONResponse({"error": "invalid_grant"}, status_code=400, headers=self.cors())
            assert issued["redirect_uri"] == redirect_uri
            return JSONResponse(
                {"access_token": self.token(sub="sso-user", role="analyst"), "token_type": "Bearer"},
                headers=self.cors(),
            )

        return app

    def cors(self) -> dict[str, str]:
        return {"Access-Control-Allow-Origin": self.console_origin, "Access-Control-Allow-Headers": "content-type"}


async def test_sign_in_with_sso_ends_signed_in_with_the_tokens_role(start_gateway, browser):
    idp = CodeFlowIdP()
    async with serve(idp.app()) as idp_url:
        gateway = await start_gateway(
            jwt_jwks_url=f"{idp_url}/.well-known/jwks.json",
            jwt_issuer=ISSUER,
            jwt_audience=AUDIENCE,
            console_oidc_authorize_url=f"{idp_url}/authorize",
            console_oidc_token_url=f"{idp_url}/token",
            console_oidc_client_id=CLIENT_ID,
        )
        idp.console_origin = str(gateway.base_url).rstrip("/")
        csp = (await gateway.get("/console/")).headers["content-security-policy"]
        assert f"connect-src 'self' {idp_url};" in csp  # the token endpoint, and nothing else outside

        class Suite:
            gateway_url = idp.console_origin

        async with open_console(browser, Suite()) as console:
            assert isinstance(console, ConsolePage)
            page = console.page
            await console.open()
            await page.get_by_role("button", name="Sign in with SSO").click()
            await page.get_by_test_id("role").wait_for()
            assert await page.get_by_test_id("role").inner_text() == "analyst"
            assert "code=" not in page.url  # the code left the address bar
            token = await page.evaluate("sessionStorage.getItem('valuechain.credential')")
            me = await gateway.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
            assert me.json()["id"] == "jwt:sso-user"
        assert idp.codes == {}  # the code was traded once
