"""Admin reads: the audit log (who did what), filtered by the person or post it is about or by who acted.

The log names people and posts by pseudonym only (``socialpulse/audit.py``): the filters take ids and the server
computes their pseudonyms, so an admin finds a user's entries without the log ever holding the id.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from serving.api.routes.posts import _plain
from serving.deps import PgPoolDep, SettingsDep
from serving.errors import call_store
from serving.security import Admin
from socialpulse import audit

router = APIRouter(prefix="/v1/admin", tags=["admin"])

IdFilter = Annotated[str | None, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-:.]+$")]


def _entries(pool, settings, subject: str | None, actor: str | None, limit: int) -> list[dict]:
    with pool.connection() as conn:
        return audit.entries(conn, settings, subject=subject, actor=actor, limit=limit)


@router.get(
    "/audit",
    summary="The audit log, newest first (admins)",
    responses={401: {"description": "no or invalid token"}, 403: {"description": "not an admin"},
               503: {"description": "Postgres unavailable"}},
)
async def audit_log(
    principal: Admin,
    pool: PgPoolDep,
    settings: SettingsDep,
    subject: IdFilter = None,
    actor: IdFilter = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="entries to return")] = 100,
) -> dict:
    """Reviews, appeals, exports and deletions: when, who acted (pseudonym and role), what, about whom
    (pseudonym) and the details (decisions, counts; never personal data). ``subject`` / ``actor`` take a user or
    post id and match its pseudonym."""
    rows = await call_store("audit log", _entries, pool, settings, subject, actor, limit)
    return {"entries": [_plain(r) for r in rows], "subject_ref": audit.ref(settings, subject) if subject else None,
            "actor_ref": audit.ref(settings, actor) if actor else None}
