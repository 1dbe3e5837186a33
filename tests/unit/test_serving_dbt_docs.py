"""The dbt docs site at /analytics/dbt-docs/: a clear JSON 404 until `dbt docs generate` has written it (the
integration test in tests/integration/test_dbt.py generates the real site and reads it through the API)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from serving.app import create_app
from serving.dbt_docs import NOT_GENERATED
from socialpulse.settings import Settings


def test_dbt_docs_answer_a_clear_404_until_generated(tmp_path):
    settings = Settings(home=tmp_path / "home", dbt_docs_dir=tmp_path / "docs", redis_port=1, postgres_port=1,
                        mlflow_port=1)
    with TestClient(create_app(settings, warm=False)) as client:
        for path in ("/analytics/dbt-docs/", "/analytics/dbt-docs/catalog.json", "/analytics/dbt-docs"):
            res = client.get(path)
            assert res.status_code == 404 and res.json() == {"error": NOT_GENERATED}, path
            assert str(tmp_path) not in res.text
        # the site's pages fetch manifest.json relative to the folder: the bare path moves to the slashed one
        bare = client.get("/analytics/dbt-docs", follow_redirects=False)
        assert bare.status_code == 307 and bare.headers["location"].endswith("/analytics/dbt-docs/")
        # a folder that exists but holds no site yet is the same
        (tmp_path / "docs").mkdir()
        (tmp_path / "docs" / "catalog.json").write_text("{}")
        assert client.get("/analytics/dbt-docs/catalog.json").json() == {"error": NOT_GENERATED}
