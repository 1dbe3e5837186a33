"""The audit log: an append-only record of who did what (reviews, appeals, exports, deletions, admin actions).

Postgres ``audit.log``; a trigger refuses every UPDATE and DELETE, and TRUNCATE, so rows can only be added
(the serving role needs INSERT alone in production). People and posts are named by a keyed pseudonym
(:func:`ref`, an HMAC-SHA-256 under the audit key), never by their ids: a user's deletion removes every raw
id and text from the platform, and the log still proves what was done for them. An auditor holding the key
finds a person's entries by computing ``ref(user_id)``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import weakref
from pathlib import Path

import psycopg

from socialpulse.settings import Settings

PG_SCHEMA = "audit"
ACTIONS = (
    "moderation.review", "moderation.appeal", "privacy.export", "privacy.delete.requested",
    "privacy.delete.completed",
)

PG_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {PG_SCHEMA};
CREATE TABLE IF NOT EXISTS {PG_SCHEMA}.log (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    actor_ref text NOT NULL,
    actor_role text NOT NULL,
    action text NOT NULL,
    subject_ref text,
    details jsonb NOT NULL DEFAULT '{{}}'::jsonb
);
CREATE INDEX IF NOT EXISTS log_subject_idx ON {PG_SCHEMA}.log (subject_ref);
CREATE OR REPLACE FUNCTION {PG_SCHEMA}.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit.log is append-only: % refused', TG_OP;
END $$;
DROP TRIGGER IF EXISTS log_append_only ON {PG_SCHEMA}.log;
CREATE TRIGGER log_append_only BEFORE UPDATE OR DELETE ON {PG_SCHEMA}.log
    FOR EACH ROW EXECUTE FUNCTION {PG_SCHEMA}.refuse_change();
DROP TRIGGER IF EXISTS log_no_truncate ON {PG_SCHEMA}.log;
CREATE TRIGGER log_no_truncate BEFORE TRUNCATE ON {PG_SCHEMA}.log
    FOR EACH STATEMENT EXECUTE FUNCTION {PG_SCHEMA}.refuse_change();
"""

_READY: "weakref.WeakSet[psycopg.Connection]" = weakref.WeakSet()
_KEY_LOCK = threading.Lock()
_KEYS: dict[Path | str, bytes] = {}


def ensure_tables(conn: psycopg.Connection) -> None:
    if conn in _READY:
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('audit.ddl'))")
        if conn.execute("SELECT to_regclass('audit.log')").fetchone()[0] is None:
            conn.execute(PG_DDL)
    _READY.add(conn)


def audit_key(settings: Settings) -> bytes:
    """The pseudonymisation key: ``SOCIALPULSE_AUDIT_KEY`` or, embedded, one generated under HOME/auth/."""
    if settings.audit_key is not None:
        return settings.audit_key.get_secret_value().encode()
    path = settings.home_abs / "auth" / "audit.key"
    with _KEY_LOCK:
        if path not in _KEYS:
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(os.urandom(32).hex())
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    pass
                finally:
                    tmp.unlink()
            _KEYS[path] = path.read_text().strip().encode()
        return _KEYS[path]


def ref(settings: Settings, identifier: str) -> str:
    """The audit log's pseudonym of a user or post id (32 hex digits)."""
    return hmac.new(audit_key(settings), identifier.encode(), hashlib.sha256).hexdigest()[:32]


def record(conn: psycopg.Connection, settings: Settings, *, actor: str, actor_role: str, action: str,
           subject: str | None = None, details: dict | None = None) -> int:
    """Append one entry (inside the caller's transaction, so it commits with what it records); returns its id.
    ``details`` must hold no personal data: decisions, counts, durations, request ids."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r} (one of {', '.join(ACTIONS)})")
    ensure_tables(conn)
    row = conn.execute(
        f"INSERT INTO {PG_SCHEMA}.log (actor_ref, actor_role, action, subject_ref, details) "
        "VALUES (%s, %s, %s, %s, %s::jsonb) RETURNING id",
        (ref(settings, actor), actor_role, action, None if subject is None else ref(settings, subject),
         json.dumps(details or {}, default=str)),
    ).fetchone()
    return row[0]


def entries(conn: psycopg.Connection, settings: Settings, *, subject: str | None = None, actor: str | None = None,
            limit: int = 100) -> list[dict]:
    """The newest entries, optionally about ``subject`` or by ``actor`` (given as ids; matched by pseudonym)."""
    from psycopg.rows import dict_row

    ensure_tables(conn)
    where, params = [], []
    if subject is not None:
        where.append("subject_ref = %s")
        params.append(ref(settings, subject))
    if actor is not None:
        where.append("actor_ref = %s")
        params.append(ref(settings, actor))
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"SELECT id, at, actor_ref, actor_role, action, subject_ref, details FROM {PG_SCHEMA}.log "
                    f"{clause} ORDER BY id DESC LIMIT %s", (*params, limit))
        return cur.fetchall()
