"""/docs and /redoc work offline: their pages reference no external URL, and every asset they load
(scripts, styles, icon, the OpenAPI document) is served by the app itself."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from socialpulse.settings import Settings

# src="..", href="..", spec-url="..", and Swagger UI's `url: '..'` / oauth2RedirectUrl
REFERENCE = re.compile(r"""(?:\b(?:src|href|spec-url)\s*=\s*|\burl:\s*)["']([^"']+)["']""")


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    settings = Settings(home=tmp_path_factory.mktemp("docs"), redis_port=1, postgres_port=1, mlflow_port=1)
    with TestClient(create_app(settings, warm=False)) as c:
        yield c


@pytest.mark.parametrize("page, expected", [
    ("/docs", {"swagger-ui-bundle.js", "swagger-ui.css", "favicon.png", "openapi.json"}),
    ("/redoc", {"redoc.standalone.js", "favicon.png", "openapi.json"}),
])
def test_docs_pages_load_only_their_own_assets(client, page, expected):
    res = client.get(page)
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/html")
    html = res.text
    assert not re.search(r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}", html), "external URL in " + page
    refs = REFERENCE.findall(html)
    assert {ref.rsplit("/", 1)[-1] for ref in refs} == expected, refs
    for ref in refs:
        asset = client.get(ref)
        assert asset.status_code == 200 and len(asset.content) > 100, (ref, asset.status_code)
    assert "SocialPulse API" in client.get("/openapi.json").json()["info"]["title"]


def test_swagger_ui_makes_no_validator_call(client):
    # Swagger UI's default validator badge would fetch https://validator.swagger.io
    assert '"validatorUrl": null' in client.get("/docs").text
