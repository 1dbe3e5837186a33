"""A user's personal data (GDPR): export it as an archive, delete it from every store.

The serving tier only records the request (Postgres ``privacy.requests``); the privacy job, launched by its
sensor, does the work and records its progress, which these routes report. Self or admin only.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Path as PathParam
from fastapi.responses import FileResponse, JSONResponse

from serving.deps import PgPoolDep, RedisDep, SettingsDep
from serving.errors import ApiError, call_store
from serving.security import ClosingUser, ReadUser, forbid_other_user
from socialpulse import auth, privacy

router = APIRouter(tags=["privacy"])

STORE = "privacy store"
UserIdPath = Annotated[str, PathParam(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-:.]+$",
                                      description="the user's id")]
RequestIdPath = Annotated[str, PathParam(pattern=r"^[0-9a-f]{32}$", description="a privacy request id")]


def _request(pool, settings, kind: str, user_id: str, actor: str, role: str):
    with pool.connection() as conn:
        row, created = privacy.request(conn, settings, kind=kind, user_id=user_id, actor=actor, actor_role=role)
        return privacy.public(row), created


def _export_state(pool, settings, user_id: str, actor: str, role: str):
    with pool.connection() as conn:
        ready = privacy.fresh_export(conn, settings, user_id)
        if ready is not None:
            return ready, None
    return None, _request(pool, settings, "export", user_id, actor, role)[0]


def _latest(pool, settings, user_id: str, kind: str):
    with pool.connection() as conn:
        return privacy.public(privacy.latest(conn, settings, user_id, kind))


def _get(pool, request_id: str):
    with pool.connection() as conn:
        return privacy.get(conn, request_id)


def _retry_after(settings) -> str:
    return str(max(1, settings.sensor_interval_s * 2))


@router.delete(
    "/v1/users/{user_id}",
    status_code=202,
    summary="Delete a user and everything of theirs from every store",
    responses={202: {"description": "the deletion is recorded (or already under way)"},
               401: {"description": "no or invalid token"}, 403: {"description": "another user's account"}},
)
async def delete_user(user_id: UserIdPath, principal: ReadUser, pool: PgPoolDep, redis: RedisDep,
                      settings: SettingsDep) -> JSONResponse:
    """Start the deletion of the user's account, posts, comments, follows, interactions, features, vectors and
    media from the lake, Postgres, Redis and the media store. The account is closed at once: its tokens are
    refused from now on (403), so nothing new of the user is accepted while the deletion runs. Idempotent: while
    a deletion of the user is open, the same request is returned. The user's token still reads its progress
    (and nothing else). Follow it at ``GET /v1/users/{user_id}/deletion`` (an admin) or the request's address."""
    forbid_other_user(principal, user_id, "the deletion")
    row, created = await call_store(STORE, _request, pool, settings, "delete", user_id, principal.user_id,
                                    principal.role)
    # recorded first: if Redis is unreachable now, the retried DELETE finds the same request and closes again
    await call_store("the token store", auth.close_account, redis, settings, user_id)
    return JSONResponse(status_code=202, content={**row, "created": created},
                        headers={"Location": f"/v1/privacy/requests/{row['request_id']}"})


@router.get(
    "/v1/users/{user_id}/deletion",
    summary="The state of a user's newest deletion request",
    responses={404: {"description": "no deletion was requested"}},
)
async def deletion_status(user_id: UserIdPath, principal: ClosingUser, pool: PgPoolDep, settings: SettingsDep) -> dict:
    """Status, finished steps and counts (removed rows, keys, files and seconds per store)."""
    forbid_other_user(principal, user_id, "the deletion status")
    row = await call_store(STORE, _latest, pool, settings, user_id, "delete")
    if row is None:
        raise ApiError(404, f"no deletion was requested for user {user_id}")
    return row


@router.get(
    "/v1/privacy/requests/{request_id}",
    summary="The state of one privacy request",
    responses={404: {"description": "unknown request"}},
)
async def request_status(request_id: RequestIdPath, principal: ClosingUser, pool: PgPoolDep,
                         settings: SettingsDep) -> dict:
    from socialpulse import audit

    row = await call_store(STORE, _get, pool, request_id)
    # its subject (by pseudonym: a finished deletion holds no id) or an admin; anyone else sees a 404
    if row is None or not (principal.role == "admin" or row["subject_ref"] == audit.ref(settings, principal.user_id)):
        raise ApiError(404, f"no privacy request {request_id}")
    return privacy.public(row)


@router.get(
    "/v1/users/{user_id}/export",
    summary="Everything the platform holds about a user, as a zip archive",
    response_class=FileResponse,
    responses={200: {"content": {"application/zip": {}}, "description": "the archive"},
               202: {"description": "the archive is being built: retry after Retry-After seconds"},
               401: {"description": "no or invalid token"}, 403: {"description": "another user's data"}},
)
async def export_user(user_id: UserIdPath, principal: ReadUser, pool: PgPoolDep, settings: SettingsDep):
    """The user's rows from the lake, Postgres and Redis (JSON lines per table) and their media files, built
    by the privacy job and served for 24 hours. While it is being built: 202 with ``Retry-After``."""
    forbid_other_user(principal, user_id, "the export")
    ready, pending = await call_store(STORE, _export_state, pool, settings, user_id, principal.user_id,
                                      principal.role)
    if ready is not None:
        stamp = (ready["finished_at"] or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
        return FileResponse(Path(ready["archive"]), media_type="application/zip",
                            filename=f"socialpulse-export-{user_id}-{stamp}.zip")
    return JSONResponse(status_code=202, content=pending, headers={
        "Retry-After": _retry_after(settings), "Location": f"/v1/privacy/requests/{pending['request_id']}"})
