"""JWTs from the company's identity provider, for frontends that log people in.

A token is checked with PyJWT against the IdP's JWKS (`VALUECHAIN_GATEWAY_JWT_JWKS_URL`),
issuer and audience, with RS256 or ES256 only: `none` and the HMAC algorithms are
refused before any key is looked at, so a public key can never be used as an HMAC
secret (the classic algorithm confusion). PyJWKClient keeps the fetched key set
(`jwt_jwks_cache_s`); its fetch is blocking urllib, so it runs on a worker thread,
and the resolver caches each accepted token for the key cache's TTL, so the thread
hop is paid once per token and TTL, not per request.

The role comes from one claim (`VALUECHAIN_GATEWAY_JWT_ROLE_CLAIM`, `role` by default),
a string naming one of gateway/access/roles.py's roles. A token without it, or naming
a role we do not have, is 401 like any other credential we cannot accept: the token
is not a credential of this API, and answering 403 would tell its holder that the
signature was good. `partner` is refused the same way: partners use API keys, which
name the partner. The employee stakeholder comes from an optional claim
(`VALUECHAIN_GATEWAY_JWT_PERSON_CLAIM`): the IdP holds the link (a custom user
attribute), so there is no second copy to keep in step here.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import jwt

from gateway.access.keys import Resolved
from gateway.access.roles import ROLES, scopes_of
from gateway.principal import Principal

log = logging.getLogger("gateway.access")

ALLOWED_ALGORITHMS = ("RS256", "ES256")
NOT_FOR_JWT = frozenset({"partner"})


class JwtVerifier:
    def __init__(
        self,
        *,
        jwks_url: str,
        issuer: str,
        audience: str,
        role_claim: str,
        person_claim: str,
        algorithms: list[str],
        leeway_s: float,
        jwks_cache_s: float,
        timeout_s: float = 5.0,
    ):
        self.issuer = issuer
        self.audience = audience
        self.role_claim = role_claim
        self.person_claim = person_claim
        self.algorithms = [alg for alg in algorithms if alg in ALLOWED_ALGORITHMS]
        self.leeway = leeway_s
        self.client = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=jwks_cache_s, timeout=timeout_s)

    @staticmethod
    def looks_like_jwt(token: bytes) -> bool:
        return token.count(b".") == 2 and token.startswith(b"ey")

    async def verify(self, token: str) -> Resolved | None:
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") not in self.algorithms:
                return None
            signing_key = await asyncio.to_thread(self.client.get_signing_key_from_jwt, token)
            claims: dict[str, Any] = jwt.decode(
                token,
                signing_key.key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWKClientConnectionError as exc:
            log.warning("could not fetch the JWKS", extra={"fields": {"error": str(exc)}})
            return None
        except (jwt.PyJWTError, ValueError, TypeError):
            return None
        role = claims.get(self.role_claim)
        subject = claims.get("sub")
        if not isinstance(role, str) or role not in ROLES or role in NOT_FOR_JWT or not isinstance(subject, str):
            return None
        person = claims.get(self.person_claim) if self.person_claim else None
        principal = Principal(
            id=f"jwt:{subject}",
            kind="jwt",
            role=role,
            scopes=scopes_of(role),
            person_id=person if isinstance(person, str) and person else None,
        )
        return Resolved(principal, datetime.fromtimestamp(claims["exp"] + self.leeway, UTC))
