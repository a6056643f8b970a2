from __future__ import annotations

import stat

import pytest

from gateway.access.resolver import AccessResolver
from gateway.auth import ADMIN_KEY_ENV, load_or_create_admin_key
from shared.settings import SuiteSettings
from tests.gateway.conftest import API_KEY, AUTH


def test_key_is_created_once_with_mode_0600(tmp_path, monkeypatch):
    monkeypatch.delenv(ADMIN_KEY_ENV, raising=False)
    var = tmp_path / "var"
    key, created = load_or_create_admin_key(SuiteSettings(var_dir=var))
    assert created is True
    assert len(key) >= 40
    path = var / "admin-api-key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == key
    assert load_or_create_admin_key(SuiteSettings(var_dir=var)) == (key, False)
    assert [p.name for p in var.iterdir()] == ["admin-api-key"]  # no temp files left


def test_environment_variable_wins(tmp_path, monkeypatch):
    monkeypatch.setenv(ADMIN_KEY_ENV, "from-the-environment")
    assert load_or_create_admin_key(SuiteSettings(var_dir=tmp_path)) == ("from-the-environment", False)
    assert not (tmp_path / "admin-api-key").exists()


def test_existing_file_is_read(tmp_path, monkeypatch):
    monkeypatch.delenv(ADMIN_KEY_ENV, raising=False)
    (tmp_path / "admin-api-key").write_text("kept-key\n")
    assert load_or_create_admin_key(SuiteSettings(var_dir=tmp_path)) == ("kept-key", False)


def test_empty_key_file_is_an_error(tmp_path, monkeypatch):
    monkeypatch.delenv(ADMIN_KEY_ENV, raising=False)
    (tmp_path / "admin-api-key").write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        load_or_create_admin_key(SuiteSettings(var_dir=tmp_path))


@pytest.mark.parametrize(
    "header, ok",
    [
        (b"Bearer secret", True),
        (b"bearer secret", True),
        (b"Bearer  secret ", True),
        (b"Bearer secreT", False),
        (b"Bearer secret2", False),
        (b"Basic secret", False),
        (b"secret", False),
        (b"", False),
        (None, False),
    ],
)
async def test_bearer_check(header, ok):
    resolver = AccessResolver("secret", cache_ttl_s=5.0, flush_s=15.0)
    assert ((await resolver.authenticate(header)) is not None) is ok


async def test_missing_key_is_401(gw):
    response = await gw.get("/v1/customers/c1")
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["x-request-id"]


@pytest.mark.parametrize("value", ["Bearer wrong-key", f"Basic {API_KEY}", API_KEY, f"Bearer {API_KEY}x"])
async def test_wrong_key_is_401(gw, value):
    response = await gw.get("/v1/customers/c1", headers={"Authorization": value})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_unknown_v1_path_without_key_is_401_not_404(gw):
    # The route table is not revealed to callers without a key.
    assert (await gw.get("/v1/nothing-here")).status_code == 401


async def test_right_key_passes(gw):
    response = await gw.get("/v1/customers/c1", headers=AUTH)
    assert response.status_code == 200
    assert response.json()["service"] == "identify"


async def test_the_key_is_not_forwarded(gw):
    response = await gw.get("/v1/customers/c1", headers=AUTH)
    assert "authorization" not in response.json()["headers"]


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/openapi.json", "/docs"])
async def test_operational_endpoints_need_no_key(gw, path):
    response = await gw.get(path)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", ["/%761/customers/c1/360", "/v1%2Fcustomers/c1/360", "/v1/customers/c1/%33%360"])
async def test_encoded_paths_do_not_dodge_the_key(gw, path):
    assert (await gw.get(path)).status_code == 401
    # With the key, the route table (which matches the encoded path) does not know them.
    assert (await gw.get(path, headers=AUTH)).status_code == 404
