"""Liveness (``/healthz``) and readiness (``/readyz``: every store the platform serves from answers).

Readiness reports each store as ok or failed, with its latency and a generic reason; why a check failed
(hosts, ports, paths, exception text) goes to the log under the request id, never to the client.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from serving.deps import StoresDep
from serving.errors import RETRY_AFTER_S, request_id
from socialpulse.auth import public_jwks
from socialpulse.media import probe_writable

log = logging.getLogger("serving")

router = APIRouter(tags=["health"])

CHECK_TIMEOUT_S = 3


@router.get("/healthz")
def healthz() -> dict:
    """The process is alive (no store is touched)."""
    return {"status": "ok"}


@router.get("/.well-known/jwks.json", tags=["auth"], summary="The public keys tokens are verified against",
            responses={404: {"description": "tokens come from an external identity provider (its JWKS URL)"}})
def jwks(stores: StoresDep) -> JSONResponse:
    """The embedded signer's public key set (JWKS). When SOCIALPULSE_AUTH_JWKS_URL points at an identity
    provider, the platform signs nothing and this is a 404 naming where the keys are."""
    settings = stores.settings
    if settings.auth_jwks_url:
        return JSONResponse({"error": f"tokens are issued by {settings.auth_issuer}; its keys are at "
                                      f"{settings.auth_jwks_url}"}, status_code=404)
    return JSONResponse(public_jwks(settings), headers={"Cache-Control": "public, max-age=300"})


def _check_postgres(stores) -> None:
    # a fresh connection, not the pool: the probe must see Postgres itself, not a pooled connection
    with psycopg.connect(stores.settings.postgres, connect_timeout=CHECK_TIMEOUT_S) as conn:
        conn.execute("SELECT 1").fetchone()


def _check_redis(stores) -> None:
    stores.redis.ping()


def _check_media(stores) -> None:
    probe_writable(stores.settings)


def _check_mlflow(stores) -> None:
    uri = stores.settings.mlflow
    if not uri.startswith(("http://", "https://")):
        return  # a local tracking URI: no server to probe
    r = httpx.get(uri.rstrip("/") + "/health", timeout=CHECK_TIMEOUT_S)
    if r.status_code != 200:
        raise RuntimeError(f"GET /health answered {r.status_code}")


def _check_auth(stores) -> None:
    # the keys tokens are verified against: the identity provider's JWKS answers, or the embedded key loads
    settings = stores.settings
    if settings.auth_jwks_url:
        r = httpx.get(settings.auth_jwks_url, timeout=CHECK_TIMEOUT_S)
        if r.status_code != 200 or not r.json().get("keys"):
            raise RuntimeError(f"GET {settings.auth_jwks_url} answered {r.status_code} without keys")
    else:
        public_jwks(settings)


def _check_feast_online(stores) -> None:
    # the Feast online store is the same Redis (see feature_repo); check it answers reads
    stores.redis.ping()


CHECKS: dict[str, Callable] = {
    "postgres": _check_postgres,
    "redis": _check_redis,
    "media": _check_media,
    "mlflow": _check_mlflow,
    "feast_online": _check_feast_online,
    "auth": _check_auth,
}
#: the generic reason a client sees for a failed check (the exception goes to the log only)
FAILED = {"media": "not writable"}


def _run(name: str, check: Callable, stores, rid: str | None) -> dict:
    start = time.perf_counter()
    try:
        check(stores)
        ok, detail = True, "ok"
    except Exception as exc:  # every failure is reported, never raised
        ok, detail = False, FAILED.get(name, "unavailable")
        log.warning("readiness check %s failed, request_id=%s: %s: %s", name, rid, type(exc).__name__, exc)
    return {"ok": ok, "detail": detail, "ms": round((time.perf_counter() - start) * 1000, 1)}


@router.get("/readyz", responses={503: {"description": "at least one store failed its check"}})
def readyz(request: Request, stores: StoresDep) -> JSONResponse:
    """Every store answers: Postgres, Redis, the media store, MLflow and the Feast online store."""
    rid = request_id(request)
    with ThreadPoolExecutor(max_workers=len(CHECKS)) as pool:
        futures = {name: pool.submit(_run, name, check, stores, rid) for name, check in CHECKS.items()}
        checks = {name: f.result() for name, f in futures.items()}
    failed = {name: c["detail"] for name, c in checks.items() if not c["ok"]}
    if failed:
        message = "not ready: " + "; ".join(f"{name} ({why})" for name, why in failed.items())
        return JSONResponse({"status": "unavailable", "error": message, "checks": checks, "request_id": rid},
                            status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})
    return JSONResponse({"status": "ready", "checks": checks})
