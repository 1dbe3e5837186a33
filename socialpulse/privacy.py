"""Privacy requests (GDPR export and deletion): the request store in Postgres (schema ``privacy``).

The serving tier records a request (``DELETE /v1/users/{id}``, ``GET /v1/users/{id}/export``); the privacy job
(``assets/privacy``, launched by its sensor, one run per request) does the work store by store and records
each finished step here, so a run that dies part-way is resumed by the next one and never redoes a step.

``privacy.requests``:

==============  ==================================================================================
request_id      32 hex digits (the Dagster run key of its first run)
kind            ``export`` | ``delete``
user_id         the subject's id while the request is open; a finished deletion nulls it (and ``plan``)
subject_ref     :func:`socialpulse.audit.ref` of the user id: finds the request after the id is gone
status          ``pending`` -> ``running`` -> ``done`` | ``failed`` (a failed one is retried on request)
steps_done      the steps finished, in order (a resumed run skips them)
counts          per step: rows / keys / files removed (or exported) and seconds taken; no personal data
plan            the deletion's working set (post ids, media, record ids), found once before anything is
                deleted so that a resumed run still knows what the removed rows pointed at
archive         an export's zip (under HOME/exports), served until ``expires_at``
==============  ==================================================================================

At most one open (pending or running) request per user and kind: a repeated DELETE returns the open one.
The functions take autocommit connections (the API's pool, the job's own): each write commits by itself.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from socialpulse import audit
from socialpulse.settings import Settings

SCHEMA = "privacy"
REQUESTS = f"{SCHEMA}.requests"
KINDS = ("export", "delete")
STATUSES = ("pending", "running", "done", "failed")
OPEN = ("pending", "running")
#: how long an export archive is served (and kept) after it was built
EXPORT_TTL = dt.timedelta(hours=24)
#: a running request whose run has not advanced for this long is handed to a new run by the sensor
STALE_AFTER = dt.timedelta(minutes=10)
#: a failed request is retried by the sensor (after STALE_AFTER) until it has had this many attempts
MAX_ATTEMPTS = 5
#: the Dagster run tag naming the request a run works on
RUN_TAG = "socialpulse/privacy_request"

DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {REQUESTS} (
    request_id text PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('export', 'delete')),
    user_id text,
    subject_ref text NOT NULL,
    actor_ref text NOT NULL,
    actor_role text NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done', 'failed')),
    steps_done text[] NOT NULL DEFAULT '{{}}',
    counts jsonb NOT NULL DEFAULT '{{}}'::jsonb,
    plan jsonb,
    error text,
    attempts integer NOT NULL DEFAULT 0,
    requested_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    archive text,
    expires_at timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS requests_one_open_idx ON {REQUESTS} (user_id, kind)
    WHERE status IN ('pending', 'running');
CREATE INDEX IF NOT EXISTS requests_subject_idx ON {REQUESTS} (subject_ref, kind, requested_at DESC);
CREATE INDEX IF NOT EXISTS requests_open_idx ON {REQUESTS} (requested_at) WHERE status IN ('pending', 'running');
"""

#: what the API shows of a request (never the plan)
PUBLIC_FIELDS = ("request_id", "kind", "status", "steps_done", "counts", "error", "requested_at", "started_at",
                 "finished_at", "expires_at")


def ensure_schema(conn: psycopg.Connection) -> None:
    if conn.execute("SELECT to_regclass(%s)", (REQUESTS,)).fetchone()[0] is not None:
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('privacy.ddl'))")
        conn.execute(DDL)


def public(row: dict | None) -> dict | None:
    """The fields of a request that may be shown to its subject (no plan, no raw ids)."""
    if row is None:
        return None
    out = {k: row.get(k) for k in PUBLIC_FIELDS}
    for k in ("requested_at", "started_at", "finished_at", "expires_at"):
        if isinstance(out[k], dt.datetime):
            out[k] = out[k].isoformat()
    out["steps_done"] = list(out["steps_done"] or [])
    return out


def _one(conn: psycopg.Connection, query: str, params: tuple) -> dict | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchone()


def get(conn: psycopg.Connection, request_id: str) -> dict | None:
    ensure_schema(conn)
    return _one(conn, f"SELECT * FROM {REQUESTS} WHERE request_id = %s", (request_id,))


def latest(conn: psycopg.Connection, settings: Settings, user_id: str, kind: str) -> dict | None:
    """The newest request of ``kind`` about ``user_id`` (found by pseudonym: a finished deletion has no id)."""
    ensure_schema(conn)
    return _one(conn, f"SELECT * FROM {REQUESTS} WHERE subject_ref = %s AND kind = %s "
                "ORDER BY requested_at DESC LIMIT 1", (audit.ref(settings, user_id), kind))


def _open(conn: psycopg.Connection, user_id: str, kind: str) -> dict | None:
    return _one(conn, f"SELECT * FROM {REQUESTS} WHERE user_id = %s AND kind = %s AND status IN ('pending', 'running')",
                (user_id, kind))


def request(conn: psycopg.Connection, settings: Settings, *, kind: str, user_id: str, actor: str,
            actor_role: str) -> tuple[dict, bool]:
    """Record a request of ``kind`` for ``user_id`` (or return the open one); ``(row, created)``.

    A new deletion is audited (``privacy.delete.requested``) in the same transaction. A failed request of the
    same kind is reopened (pending, its finished steps kept) rather than duplicated."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    ensure_schema(conn)
    with conn.transaction():
        existing = _open(conn, user_id, kind)
        if existing is not None:
            return existing, False
        failed = _one(conn, f"SELECT * FROM {REQUESTS} WHERE user_id = %s AND kind = %s AND status = 'failed' "
                      "ORDER BY requested_at DESC LIMIT 1 FOR UPDATE", (user_id, kind))
        if failed is not None:
            row = _one(conn, f"UPDATE {REQUESTS} SET status = 'pending', error = NULL, updated_at = now() "
                       "WHERE request_id = %s RETURNING *", (failed["request_id"],))
            return row, False
        rid = uuid.uuid4().hex
        row = _one(conn, f"""INSERT INTO {REQUESTS} (request_id, kind, user_id, subject_ref, actor_ref, actor_role)
                             VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING *""",
                   (rid, kind, user_id, audit.ref(settings, user_id), audit.ref(settings, actor), actor_role))
        if row is None:  # a concurrent request of the same user won the unique index
            return _open(conn, user_id, kind), False
        if kind == "delete":
            audit.record(conn, settings, actor=actor, actor_role=actor_role, action="privacy.delete.requested",
                         subject=user_id, details={"request_id": rid})
        return row, True


def fresh_export(conn: psycopg.Connection, settings: Settings, user_id: str,
                 now: dt.datetime | None = None) -> dict | None:
    """The user's newest finished export whose archive is still served and present, or None."""
    ensure_schema(conn)
    now = now or dt.datetime.now(dt.timezone.utc)
    row = _one(conn, f"SELECT * FROM {REQUESTS} WHERE user_id = %s AND kind = 'export' AND status = 'done' "
               "AND expires_at > %s AND archive IS NOT NULL ORDER BY finished_at DESC LIMIT 1", (user_id, now))
    if row is None or not Path(row["archive"]).is_file():
        return None
    return row


def to_run(conn: psycopg.Connection, now: dt.datetime | None = None, limit: int = 20) -> list[dict]:
    """Requests a run should take up: pending ones, running ones not advanced for :data:`STALE_AFTER` (their
    run died) and failed ones as long (fewer than :data:`MAX_ATTEMPTS` attempts); oldest first. Only ids, kinds,
    statuses and attempts (the sensor's run keys)."""
    ensure_schema(conn)
    now = now or dt.datetime.now(dt.timezone.utc)
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT request_id, kind, status, attempts FROM {REQUESTS} WHERE status = 'pending' "
            f"OR (status IN ('running', 'failed') AND updated_at < %s AND attempts < %s) "
            f"ORDER BY requested_at LIMIT %s",
            (now - STALE_AFTER, MAX_ATTEMPTS, limit)).fetchall()


def claim(conn: psycopg.Connection, request_id: str) -> dict | None:
    """Mark a request running (one more attempt) and return it; None when it is done or unknown."""
    ensure_schema(conn)
    with conn.transaction():
        return _one(conn, f"""UPDATE {REQUESTS} SET status = 'running', attempts = attempts + 1, error = NULL,
                                  started_at = coalesce(started_at, now()), updated_at = now()
                              WHERE request_id = %s AND status <> 'done' RETURNING *""", (request_id,))


def save_plan(conn: psycopg.Connection, request_id: str, plan: dict[str, Any]) -> None:
    with conn.transaction():
        conn.execute(f"UPDATE {REQUESTS} SET plan = %s, updated_at = now() WHERE request_id = %s",
                     (Jsonb(plan), request_id))


def step_done(conn: psycopg.Connection, request_id: str, step: str, counts: dict[str, Any]) -> None:
    """Record a finished step and its counts (idempotent: a step is listed once)."""
    with conn.transaction():
        conn.execute(
            f"""UPDATE {REQUESTS} SET
                    steps_done = CASE WHEN %s = ANY(steps_done) THEN steps_done ELSE array_append(steps_done, %s) END,
                    counts = counts || jsonb_build_object(%s::text, %s::jsonb), updated_at = now()
                WHERE request_id = %s""", (step, step, step, Jsonb(counts), request_id))


def finish_delete(conn: psycopg.Connection, settings: Settings, request_id: str) -> dict:
    """Close a deletion: the raw user id and the plan go, the completion is audited (counts only)."""
    with conn.transaction():
        row = _one(conn, f"""UPDATE {REQUESTS} SET status = 'done', user_id = NULL, plan = NULL, error = NULL,
                                 finished_at = now(), updated_at = now()
                             WHERE request_id = %s RETURNING *""", (request_id,))
        _audit_as_ref(conn, settings, row, "privacy.delete.completed",
                      {"request_id": request_id, "steps": row["steps_done"], "counts": row["counts"]})
        return row


def finish_export(conn: psycopg.Connection, settings: Settings, request_id: str, archive: Path,
                  counts: dict[str, Any]) -> dict:
    expires = dt.datetime.now(dt.timezone.utc) + EXPORT_TTL
    with conn.transaction():
        row = _one(conn, f"""UPDATE {REQUESTS} SET status = 'done', archive = %s, expires_at = %s, error = NULL,
                                 counts = counts || %s::jsonb, finished_at = now(), updated_at = now()
                             WHERE request_id = %s RETURNING *""",
                   (str(archive), expires, Jsonb(counts), request_id))
        _audit_as_ref(conn, settings, row, "privacy.export", {"request_id": request_id, "counts": counts})
        return row


def _audit_as_ref(conn: psycopg.Connection, settings: Settings, row: dict, action: str, details: dict) -> None:
    """An audit entry for a request whose raw ids may be gone: written with the stored pseudonyms."""
    audit.ensure_tables(conn)
    conn.execute(
        f"INSERT INTO {audit.PG_SCHEMA}.log (actor_ref, actor_role, action, subject_ref, details) "
        "VALUES (%s, %s, %s, %s, %s)",
        (row["actor_ref"], row["actor_role"], action, row["subject_ref"], Jsonb(details)))


def fail(conn: psycopg.Connection, request_id: str, error: str) -> None:
    """Record a failed attempt (its finished steps stay; the next run resumes after them)."""
    with conn.transaction():
        conn.execute(f"UPDATE {REQUESTS} SET status = 'failed', error = %s, updated_at = now() WHERE request_id = %s",
                     (error[:2000], request_id))


def forget_exports(conn: psycopg.Connection, user_id: str) -> list[str]:
    """The user's export requests lose their id and archive (an open one fails); returns their request ids
    (their archives, ``exports_dir / <request_id>.zip``, are the caller's to remove)."""
    ensure_schema(conn)
    with conn.transaction():
        rows = conn.execute(
            f"""WITH old AS (SELECT request_id, archive FROM {REQUESTS} WHERE user_id = %s AND kind = 'export'
                             FOR UPDATE)
                UPDATE {REQUESTS} r SET user_id = NULL, archive = NULL, plan = NULL,
                    status = CASE WHEN r.status IN ('pending', 'running') THEN 'failed' ELSE r.status END,
                    error = CASE WHEN r.status IN ('pending', 'running') THEN 'the user was deleted' ELSE r.error END,
                    updated_at = now()
                FROM old WHERE r.request_id = old.request_id RETURNING old.request_id, old.archive""",
            (user_id,)).fetchall()
    return [r[0] for r in rows]


def exports_dir(settings: Settings) -> Path:
    return settings.home_abs / "exports"
