"""Customers' signed links: unsubscribe, feedback, ideas and votes (shared/decisions.md).

Customers never log in. What a link lets its holder do is in its token, signed with the
suite's links secret (`VALUECHAIN_LINKS_SECRET`, else `<var>/links-secret`, made on first
use like the internal secret) and salted with the link's purpose, so a token made for
one purpose is refused by every other. itsdangerous does the signing and the timestamp;
a token carries no secret, only ids, and is URL-safe.

A service makes links with `SignedLinks.link(purpose, path_template, payload)` and
checks the token of a request with `verify(purpose, token)`: a tampered, foreign or
expired token raises `BadLink`, which the error handlers answer 400 `bad_token`. Every
route taking one is `public=True` in the gateway's route table.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from shared.http.errors import AppError
from shared.secret_files import read_or_create_secret
from shared.settings import SuiteSettings

LINKS_SECRET_FILE = "links-secret"
# Long enough for a customer to act on an email read late; a purpose may ask for less.
DEFAULT_MAX_AGE = timedelta(days=90)


class BadLink(AppError):
    """A link's token that is tampered with, made for another purpose, or expired."""

    status_code = 400
    error = "bad_token"


def load_or_create_links_secret(settings: SuiteSettings) -> str:
    if settings.links_secret is not None:
        return settings.links_secret.get_secret_value()
    secret, _ = read_or_create_secret(settings.var_dir / LINKS_SECRET_FILE, hint=", or set VALUECHAIN_LINKS_SECRET")
    return secret


class SignedLinks:
    """Makes and checks the tokens of customers' links (one per process is enough)."""

    def __init__(self, secret: str, base_url: str):
        if not secret:
            raise ValueError("the links secret must not be empty")
        self._secret = secret
        self.base_url = base_url.rstrip("/")

    @classmethod
    def from_settings(cls, settings: SuiteSettings) -> SignedLinks:
        """The links of `settings` (made once per settings object: the secret is a file read)."""

        cached: SignedLinks | None = getattr(settings, "_signed_links", None)
        if cached is None:
            cached = cls(load_or_create_links_secret(settings), settings.public_base_url)
            object.__setattr__(settings, "_signed_links", cached)
        return cached

    def _serializer(self, purpose: str) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self._secret, salt=f"valuechain-link:{purpose}")

    def token(self, purpose: str, payload: dict[str, Any]) -> str:
        """A token for `payload` (JSON: ids and short codes, never personal data)."""

        return self._serializer(purpose).dumps(payload)

    def link(self, purpose: str, path_template: str, payload: dict[str, Any]) -> str:
        """The full URL, e.g. `link("unsubscribe", "/v1/unsubscribe/{token}", {...})`."""

        return self.base_url + path_template.format(token=self.token(purpose, payload))

    def verify(self, purpose: str, token: str, *, max_age: timedelta = DEFAULT_MAX_AGE) -> dict[str, Any]:
        """The payload of a good token; `BadLink` (400) for anything else."""

        try:
            payload = self._serializer(purpose).loads(token, max_age=int(max_age.total_seconds()))
        except SignatureExpired:
            raise BadLink("the link has expired") from None
        except BadSignature:
            raise BadLink("the link is not valid (tampered with, or not made for this)") from None
        if not isinstance(payload, dict):
            raise BadLink("the link is not valid (tampered with, or not made for this)")
        return payload
