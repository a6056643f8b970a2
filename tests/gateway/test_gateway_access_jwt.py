"""JWTs from an identity provider: a JWKS made in the test (cryptography keys), served by a
real local HTTP server, and a real gateway checking tokens against it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI

from gateway.access.roles import ROLES
from tests.gateway.conftest import serve

ISSUER = "https://idp.example.test/"
AUDIENCE = "valuechain-frontend"


class IdP:
    """An identity provider's signing keys and its JWKS document."""

    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.jwks = {
            "keys": [
                {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.rsa.public_key())), "kid": "rsa-1", "use": "sig"},
                {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.ec.public_key())), "kid": "ec-1", "use": "sig"},
            ]
        }
        self.fetches = 0

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/.well-known/jwks.json")
        async def jwks() -> dict:
            self.fetches += 1
            return self.jwks

        return app

    def token(self, *, alg: str = "RS256", key=None, kid: str | None = None, **overrides) -> str:
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": f"user-{uuid.uuid4().hex[:8]}",
            "exp": int(time.time()) + 300,
            "iat": int(time.time()),
            "role": "marketer",
            **overrides,
        }
        claims = {k: v for k, v in claims.items() if v is not None}
        signing = key or (self.rsa if alg == "RS256" else self.ec)
        return jwt.encode(
            claims, signing, algorithm=alg, headers={"kid": kid or ("rsa-1" if alg == "RS256" else "ec-1")}
        )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(idp: IdP, alg: str, secret: bytes | None) -> str:
    """A token PyJWT would not make: `alg: none`, or HS256 keyed with the IdP's public key."""
    header = _b64(json.dumps({"alg": alg, "typ": "JWT", "kid": "rsa-1"}).encode())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "exp": int(time.time()) + 300, "role": "admin"}
    payload = _b64(json.dumps(claims).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = _b64(hmac.new(secret, signing_input, hashlib.sha256).digest()) if secret else ""
    return f"{header}.{payload}.{signature}"


@pytest.fixture(scope="module")
async def idp():
    provider = IdP()
    async with serve(provider.app()) as url:
        provider.url = url  # type: ignore[attr-defined]
        yield provider


@pytest.fixture
async def jwt_gw(start_gateway, idp):
    return await start_gateway(
        jwt_jwks_url=f"{idp.url}/.well-known/jwks.json",
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        jwt_person_claim="employee_id",
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_good_token_acts_with_the_role_of_its_claim(jwt_gw, idp):
    token = idp.token(sub="alice", employee_id="stakeholder-e1")
    me = await jwt_gw.get("/v1/me", headers=bearer(token))
    assert me.status_code == 200, me.text
    assert me.json() == {
        "id": "jwt:alice",
        "kind": "jwt",
        "role": "marketer",
        "scopes": sorted(ROLES["marketer"]),
        "partner_id": None,
        "person_id": "stakeholder-e1",
        "event_types": None,
    }
    seen = (await jwt_gw.get("/v1/customers/c1", headers=bearer(token))).json()["headers"]
    assert seen["x-valuechain-actor"] == "jwt:alice" and seen["x-valuechain-person"] == "stakeholder-e1"
    assert (await jwt_gw.post("/v1/customers", json={}, headers=bearer(token))).status_code == 403
    # ES256 works as well.
    es = await jwt_gw.get("/v1/me", headers=bearer(idp.token(alg="ES256", sub="bob", role="analyst")))
    assert es.status_code == 200 and es.json()["role"] == "analyst"


async def test_the_jwks_is_fetched_once_and_cached(start_gateway, idp):
    gw = await start_gateway(jwt_jwks_url=f"{idp.url}/.well-known/jwks.json", jwt_issuer=ISSUER, jwt_audience=AUDIENCE)
    before = idp.fetches
    for _ in range(3):
        assert (await gw.get("/v1/me", headers=bearer(idp.token()))).status_code == 200
    assert idp.fetches == before + 1


@pytest.mark.parametrize(
    "case",
    [
        "wrong issuer",
        "wrong audience",
        "expired",
        "no expiry",
        "bad signature",
        "unknown kid",
        "alg none",
        "HS256 keyed with the public key",
        "unknown role",
        "no role",
        "partner role",
        "garbage",
    ],
)
async def test_bad_tokens_are_the_one_401(jwt_gw, idp, case):
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = idp.rsa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    token = {
        "wrong issuer": lambda: idp.token(iss="https://evil.example.test/"),
        "wrong audience": lambda: idp.token(aud="someone-else"),
        "expired": lambda: idp.token(exp=int(time.time()) - 3600),
        "no expiry": lambda: idp.token(exp=None),
        "bad signature": lambda: idp.token(key=other_key),  # the IdP's kid, another key
        "unknown kid": lambda: idp.token(kid="rsa-9"),
        "alg none": lambda: unsigned_token(idp, "none", None),
        "HS256 keyed with the public key": lambda: unsigned_token(idp, "HS256", public_pem),
        "unknown role": lambda: idp.token(role="superuser"),
        "no role": lambda: idp.token(role=None),
        "partner role": lambda: idp.token(role="partner"),
        "garbage": lambda: "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln",
    }[case]()
    response = await jwt_gw.get("/v1/customers", headers=bearer(token))
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "unauthorized"
    reference = await jwt_gw.get("/v1/customers")
    assert (response.content, response.headers["www-authenticate"]) == (
        reference.content,
        reference.headers["www-authenticate"],
    )


async def test_without_a_jwks_url_a_jwt_is_just_an_unknown_key(gw, idp):
    assert (await gw.get("/v1/me", headers=bearer(idp.token()))).status_code == 401
