"""In-app notifications and notification preferences, from Postgres (schema ``notifications``).

The user is the token's, like the feed's. These routes write (read marks, preferences) to Postgres: the one write path of the serving tier
besides ingestion and media, because a user's own read state and preferences have no other door.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from serving.deps import PgPoolDep
from serving.errors import ApiError, call_store
from serving.security import IngestUser, ReadUser
from socialpulse import notifications

router = APIRouter(tags=["notifications"])

STORE = "notifications store"


def _cursor(value: str | None) -> int | None:
    if value is None:
        return None
    if not re.fullmatch(r"[0-9]{1,19}", value) or not 0 < int(value) < 2**63:
        raise ApiError(400, f"cursor {value!r} is malformed: pass the next_cursor of the previous page", field="cursor")
    return int(value)


def _list(pool, user_id: str, unread_only: bool, limit: int, before: int | None):
    with pool.connection() as conn:
        return notifications.list_for_user(conn, user_id, unread_only=unread_only, limit=limit, before_id=before)


@router.get(
    "/v1/notifications",
    summary="A user's in-app notifications, newest first",
    responses={400: {"description": "malformed cursor"}, 503: {"description": "Postgres unavailable"}},
)
async def list_notifications(
    principal: ReadUser,
    pool: PgPoolDep,
    unread_only: Annotated[bool, Query(description="only notifications not marked read")] = False,
    limit: Annotated[int, Query(ge=1, le=100, description="notifications on this page")] = 20,
    cursor: Annotated[str | None, Query(max_length=20, description="next_cursor of the previous page")] = None,
) -> dict:
    """Every notification of a kind the user has not turned off, whether or not it was pushed (``pushed``),
    with its title and body; a digest lists the notifications it batched under ``items``."""
    user_id = principal.user_id
    items, nxt = await call_store(STORE, _list, pool, user_id, unread_only, limit, _cursor(cursor))
    return {"user_id": user_id, "items": items, "next_cursor": None if nxt is None else str(nxt)}


class ReadIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[Annotated[int, Field(ge=1, lt=2**63)]] = Field(min_length=1, max_length=500,
                                                             description="notification ids (a digest's id marks its items)")


def _mark(pool, user_id: str, body: ReadIn) -> dict:
    with pool.connection() as conn:
        return notifications.mark_read(conn, user_id, body.ids, dt.datetime.now(dt.timezone.utc))


@router.post(
    "/v1/notifications/read",
    summary="Mark notifications read",
    responses={404: {"description": "none of the ids is one of the user's notifications"},
               503: {"description": "Postgres unavailable"}},
)
async def mark_read(body: ReadIn, pool: PgPoolDep, principal: IngestUser) -> dict:
    """Marks the user's notifications with these ids read (already-read ones stay as they were); ids that are
    not the user's are listed under ``not_found``."""
    user_id = principal.user_id
    result = await call_store(STORE, _mark, pool, user_id, body)
    if len(result["not_found"]) == len(set(body.ids)):
        raise ApiError(404, f"no notification of user {user_id!r} has any of these ids", ids=result["not_found"])
    return {"user_id": user_id, **result}


def _get_prefs(pool, user_id: str) -> notifications.Preferences:
    with pool.connection() as conn:
        return notifications.get_preferences(conn, user_id)


def _put_prefs(pool, user_id: str, prefs: notifications.Preferences) -> notifications.Preferences:
    with pool.connection() as conn:
        return notifications.put_preferences(conn, user_id, prefs)


@router.get("/v1/notifications/preferences", summary="A user's notification preferences",
            responses={503: {"description": "Postgres unavailable"}})
async def get_preferences(principal: ReadUser, pool: PgPoolDep) -> dict:
    """Per kind: shown at all and pushed or not; quiet hours; digests; the Web Push subscription. A user who
    set nothing gets the defaults (everything on and pushed, no quiet hours, no digest)."""
    user_id = principal.user_id
    prefs = await call_store(STORE, _get_prefs, pool, user_id)
    return {"user_id": user_id, **prefs.model_dump(mode="json")}


@router.put("/v1/notifications/preferences", summary="Replace a user's notification preferences",
            responses={422: {"description": "unknown kind, malformed quiet hours or time zone, bad subscription"},
                       503: {"description": "Postgres unavailable"}})
async def put_preferences(prefs: notifications.Preferences, pool: PgPoolDep, principal: IngestUser) -> dict:
    """Replaces the preferences whole (fields left out take their defaults)."""
    user_id = principal.user_id
    stored = await call_store(STORE, _put_prefs, pool, user_id, prefs)
    return {"user_id": user_id, **stored.model_dump(mode="json")}
