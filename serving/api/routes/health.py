"""Liveness (``/healthz``) and readiness (``/readyz``: every store the platform serves from answers)."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from serving.deps import StoresDep
from socialpulse.media import probe_writable

router = APIRouter(tags=["health"])

CHECK_TIMEOUT_S = 3


@router.get("/healthz")
def healthz() -> dict:
    """The process is alive (no store is touched)."""
    return {"status": "ok"}


def _check_postgres(stores) -> str:
    # a fresh connection, not the pool: the probe must report why Postgres is unreachable
    with psycopg.connect(stores.settings.postgres, connect_timeout=CHECK_TIMEOUT_S) as conn:
        conn.execute("SELECT 1").fetchone()
    return "SELECT 1 ok"


def _check_redis(stores) -> str:
    stores.redis.ping()
    return "PING ok"


def _check_media(stores) -> str:
    probe_writable(stores.settings)
    return f"writable ({stores.settings.media})"


def _check_mlflow(stores) -> str:
    uri = stores.settings.mlflow
    if not uri.startswith(("http://", "https://")):
        return f"local tracking URI {uri} (no server to probe)"
    r = httpx.get(uri.rstrip("/") + "/health", timeout=CHECK_TIMEOUT_S)
    if r.status_code != 200:
        raise RuntimeError(f"GET /health answered {r.status_code}")
    return "GET /health ok"


def _check_feast_online(stores) -> str:
    # the Feast online store is the same Redis (see feature_repo); check it answers reads
    stores.redis.ping()
    return "Redis online store answers"


CHECKS: dict[str, Callable] = {
    "postgres": _check_postgres,
    "redis": _check_redis,
    "media": _check_media,
    "mlflow": _check_mlflow,
    "feast_online": _check_feast_online,
}


def _run(check: Callable, stores) -> dict:
    start = time.perf_counter()
    try:
        detail = check(stores)
        ok = True
    except Exception as exc:  # every failure is reported, never raised
        detail = f"{type(exc).__name__}: {str(exc).strip() or 'failed'}"
        ok = False
    return {"ok": ok, "detail": detail.splitlines()[0] if detail else "", "ms": round((time.perf_counter() - start) * 1000, 1)}


@router.get("/readyz", responses={503: {"description": "at least one store failed its check"}})
def readyz(stores: StoresDep) -> JSONResponse:
    """Every store answers: Postgres, Redis, the media store, MLflow and the Feast online store."""
    with ThreadPoolExecutor(max_workers=len(CHECKS)) as pool:
        futures = {name: pool.submit(_run, check, stores) for name, check in CHECKS.items()}
        checks = {name: f.result() for name, f in futures.items()}
    failed = {name: c["detail"] for name, c in checks.items() if not c["ok"]}
    if failed:
        message = "not ready: " + "; ".join(f"{name} ({why})" for name, why in failed.items())
        return JSONResponse({"status": "unavailable", "error": message, "checks": checks}, status_code=503)
    return JSONResponse({"status": "ready", "checks": checks})
