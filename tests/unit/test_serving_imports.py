"""Serving stays off the lake and the orchestrator: it never imports deltalake, dagster, dbt or pyspark."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"deltalake", "dagster", "dbt", "pyspark"}


def test_serving_never_imports_lake_or_orchestration(tmp_path):
    code = (
        "import serving.app, sys; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'deltalake','dagster','dbt','pyspark'}))"
    )
    env = {"PATH": "/usr/bin:/bin", "SOCIALPULSE_HOME": str(tmp_path), "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"serving imported {out.stdout.strip()}"


def test_forbidden_names_are_not_in_serving_sources():
    # the subprocess test sees what one import pulls in; this catches lazy imports inside functions too
    for path in (ROOT / "serving").rglob("*.py"):
        for line in path.read_text().splitlines():
            words = line.strip().split()
            if len(words) >= 2 and words[0] in ("import", "from"):
                assert words[1].split(".")[0] not in FORBIDDEN, f"{path}: {line.strip()}"
                assert words[1] not in ("socialpulse.lake", "socialpulse.drain", "socialpulse.spark"), f"{path}: {line}"


def test_app_answers_without_any_store(tmp_path):
    from serving.app import create_app
    from socialpulse.settings import Settings

    app = create_app(Settings(home=tmp_path, redis_port=1, postgres_port=1, mlflow_port=1))
    with TestClient(app) as client:
        r = client.get("/healthz")
        assert r.status_code == 200 and r.json() == {"status": "ok"}
        assert r.headers["x-request-id"]
        r = client.get("/no/such/route")
        assert r.status_code == 404 and r.json() == {"error": "no route for GET /no/such/route"}
        # readiness names every store that failed and why (nothing listens on port 1)
        r = client.get("/readyz")
        assert r.status_code == 503
        body = r.json()
        assert set(body["checks"]) == {"postgres", "redis", "media", "mlflow", "feast_online", "auth"}
        assert body["checks"]["media"]["ok"] is True and body["checks"]["auth"]["ok"] is True
        for name in ("postgres", "redis", "mlflow", "feast_online"):
            assert body["checks"][name]["ok"] is False and name in body["error"]
        assert "Traceback" not in r.text
        assert client.get("/openapi.json").status_code == 200
