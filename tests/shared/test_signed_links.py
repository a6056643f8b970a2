"""Customers' signed links: a token is good only for its purpose, untouched and in time."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from shared.settings import SuiteSettings
from shared.signed_links import BadLink, SignedLinks, load_or_create_links_secret


def test_a_link_round_trips_and_names_the_public_base_url():
    links = SignedLinks("k" * 32, "https://crm.example.com/")
    url = links.link("unsubscribe", "/v1/unsubscribe/{token}", {"c": "cust-1", "ch": "email"})
    assert url.startswith("https://crm.example.com/v1/unsubscribe/")
    token = url.rsplit("/", 1)[1]
    assert links.verify("unsubscribe", token) == {"c": "cust-1", "ch": "email"}


def test_tampered_foreign_and_expired_tokens_are_bad_links():
    links = SignedLinks("k" * 32, "http://x")
    token = links.token("feedback", {"i": "inv-1"})
    with pytest.raises(BadLink) as tampered:
        links.verify("feedback", token[:-2] + ("AA" if not token.endswith("AA") else "BB"))
    assert tampered.value.status_code == 400 and tampered.value.error == "bad_token"
    with pytest.raises(BadLink):
        links.verify("unsubscribe", token)  # another purpose's salt
    with pytest.raises(BadLink):
        SignedLinks("other" * 8, "http://x").verify("feedback", token)  # another key
    time.sleep(1.1)
    with pytest.raises(BadLink, match="expired"):
        links.verify("feedback", token, max_age=timedelta(0))


def test_the_secret_is_made_once_in_the_var_dir(tmp_path):
    settings = SuiteSettings(VALUECHAIN_VAR_DIR=tmp_path)
    first = load_or_create_links_secret(settings)
    assert (tmp_path / "links-secret").stat().st_mode & 0o777 == 0o600
    assert load_or_create_links_secret(settings) == first
    assert (
        load_or_create_links_secret(SuiteSettings(VALUECHAIN_VAR_DIR=tmp_path, VALUECHAIN_LINKS_SECRET="given"))
        == "given"
    )


def test_the_public_base_url_must_be_http():
    with pytest.raises(ValueError):
        SuiteSettings(VALUECHAIN_PUBLIC_BASE_URL="ftp://x")
    assert SuiteSettings(VALUECHAIN_PUBLIC_BASE_URL="https://a.example/ ").public_base_url == "https://a.example"


def test_links_are_made_once_per_settings(tmp_path):
    settings = SuiteSettings(VALUECHAIN_VAR_DIR=tmp_path, VALUECHAIN_PUBLIC_BASE_URL="https://crm.example")
    assert SignedLinks.from_settings(settings) is SignedLinks.from_settings(settings)
    assert SignedLinks.from_settings(settings).base_url == "https://crm.example"
