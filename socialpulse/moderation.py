"""Moderation decisions in the serving stores: the Postgres tables, the Redis gate, their reads, and human review.

Written by the moderation assets and the live moderation worker (``assets/moderation``; ``source`` says
which), and by moderators through the API (``source = 'review'``): a reviewer's decision overrides the
model's, and the publishers never overwrite or re-open a reviewed post. Postgres ``moderation.decisions``
holds every decision (one row per post; for posts not plainly allowed also what a reviewer needs to see:
kind, the text the model read, the media URI); ``moderation.review_queue`` holds the posts sent to a human
(and appealed ones, ``appeal``); ``moderation.reviews`` every human decision, ``moderation.appeals`` the one
appeal a post's author may make.
Redis hash ``moderation:action`` maps post id -> action for every post that is not plainly allowed, so a
serving path filters a page of candidates with one HMGET: ``remove`` is hidden everywhere, ``limit`` and
``review`` are reachable by direct link but never recommended.
"""

from __future__ import annotations

import weakref
from typing import Iterable

import psycopg
from psycopg.rows import dict_row

from socialpulse.stores.postgres import relation_exists

PG_SCHEMA = "moderation"
REDIS_ACTIONS_KEY = "moderation:action"
HIDDEN = frozenset({"remove"})
NOT_RECOMMENDED = frozenset({"remove", "review", "limit"})

PG_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {PG_SCHEMA};
CREATE TABLE IF NOT EXISTS {PG_SCHEMA}.decisions (
    post_id text PRIMARY KEY,
    author_id text NOT NULL,
    action text NOT NULL CHECK (action IN ('allow', 'limit', 'review', 'remove')),
    reasons text[] NOT NULL,
    hatespeech real,
    offensive real,
    nsfw real,
    media_status text NOT NULL,
    policy_version text NOT NULL,
    text_model_version text NOT NULL,
    media_model_version text NOT NULL,
    decided_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL,
    event_date date NOT NULL,
    source text NOT NULL DEFAULT 'asset' CONSTRAINT decisions_source_check CHECK (source IN ('asset', 'live', 'review')),
    kind text,
    caption text,
    media_uri text
);
CREATE INDEX IF NOT EXISTS decisions_event_date_idx ON {PG_SCHEMA}.decisions (event_date);
CREATE INDEX IF NOT EXISTS decisions_not_allowed_idx ON {PG_SCHEMA}.decisions (action) WHERE action <> 'allow';
CREATE TABLE IF NOT EXISTS {PG_SCHEMA}.review_queue (
    post_id text PRIMARY KEY,
    reasons text[] NOT NULL,
    status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz,
    resolution text,
    event_date date NOT NULL,
    appeal boolean NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS review_queue_open_idx ON {PG_SCHEMA}.review_queue (enqueued_at) WHERE status = 'open';
CREATE TABLE IF NOT EXISTS {PG_SCHEMA}.reviews (
    review_id bigserial PRIMARY KEY,
    post_id text NOT NULL,
    reviewer_id text NOT NULL,
    decision text NOT NULL CHECK (decision IN ('allow', 'limit', 'remove')),
    note text,
    model_action text NOT NULL,
    previous_action text NOT NULL,
    appeal boolean NOT NULL DEFAULT false,
    reviewed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS reviews_post_idx ON {PG_SCHEMA}.reviews (post_id, reviewed_at);
CREATE TABLE IF NOT EXISTS {PG_SCHEMA}.appeals (
    post_id text PRIMARY KEY,
    author_id text NOT NULL,
    message text NOT NULL,
    status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'decided')),
    created_at timestamptz NOT NULL DEFAULT now(),
    decided_at timestamptz
);
"""

#: what a reviewer may decide (``review`` is the model's "ask a human"; a human answers it)
REVIEW_DECISIONS = ("allow", "limit", "remove")
#: columns added to tables made by earlier versions: (table, column, definition)
_MIGRATIONS = (
    ("decisions", "source", "text NOT NULL DEFAULT 'asset'"),
    ("decisions", "kind", "text"),
    ("decisions", "caption", "text"),
    ("decisions", "media_uri", "text"),
    ("review_queue", "appeal", "boolean NOT NULL DEFAULT false"),
)
_SOURCE_CHECK = "CHECK ((source = ANY (ARRAY['asset'::text, 'live'::text, 'review'::text])))"

DECISION_COLUMNS = (
    "post_id", "author_id", "action", "reasons", "hatespeech", "offensive", "nsfw", "media_status",
    "policy_version", "text_model_version", "media_model_version", "decided_at", "created_at", "event_date",
)


_READY: "weakref.WeakSet[psycopg.Connection]" = weakref.WeakSet()  # connections that already ran the DDL


def ensure_tables(conn: psycopg.Connection) -> None:
    """Create (or migrate) the moderation tables once per connection (the live worker publishes every second)."""
    if conn in _READY:
        return
    if conn.autocommit:  # the API's pooled connections: the lock must hold until the DDL commits
        with conn.transaction():
            _ddl(conn)
    else:
        _ddl(conn)
        conn.commit()
    _READY.add(conn)


def _ddl(conn: psycopg.Connection) -> None:
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('moderation.ddl'))")
    conn.execute(PG_DDL)
    # tables made by earlier versions: ALTER only when needed, it takes an exclusive lock
    have = set(conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = %s",
        (PG_SCHEMA,)).fetchall())
    for table, column, definition in _MIGRATIONS:
        if (table, column) not in have:
            conn.execute(f"ALTER TABLE {PG_SCHEMA}.{table} ADD COLUMN {column} {definition}")
    # the source check of earlier versions (no 'review'): replace it, whatever Postgres named it
    checks = conn.execute(
        """SELECT c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c
           WHERE c.conrelid = 'moderation.decisions'::regclass AND c.contype = 'c'
             AND pg_get_constraintdef(c.oid) LIKE %s""", ("%source%",)).fetchall()
    if [d for _, d in checks] != [_SOURCE_CHECK]:
        for name, _ in checks:
            conn.execute(f'ALTER TABLE {PG_SCHEMA}.decisions DROP CONSTRAINT "{name}"')
        conn.execute(f"ALTER TABLE {PG_SCHEMA}.decisions ADD CONSTRAINT decisions_source_check "
                     "CHECK (source IN ('asset', 'live', 'review'))")


def get_decision(conn: psycopg.Connection, post_id: str) -> dict | None:
    """The decision on one post, with its review state; None when the post has no decision (yet)."""
    if not relation_exists(conn, f"{PG_SCHEMA}.decisions"):
        return None
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """SELECT d.post_id, d.author_id, d.action, d.reasons, d.hatespeech, d.offensive, d.nsfw, d.media_status,
                      d.policy_version, d.text_model_version, d.media_model_version, d.decided_at,
                      d.source, q.status AS review_status
               FROM moderation.decisions d LEFT JOIN moderation.review_queue q USING (post_id)
               WHERE d.post_id = %s""",
            (post_id,),
        )
        row = cur.fetchone()
        if row is not None and relation_exists(conn, f"{PG_SCHEMA}.reviews"):
            cur.execute("SELECT decision, appeal, reviewed_at FROM moderation.reviews WHERE post_id = %s "
                        "ORDER BY review_id DESC LIMIT 1", (post_id,))
            row["review"] = cur.fetchone()
            cur.execute("SELECT status, created_at, decided_at FROM moderation.appeals WHERE post_id = %s", (post_id,))
            row["appeal"] = cur.fetchone()
        return row


def actions_for(redis_client, post_ids: Iterable[str]) -> dict[str, str]:
    """post id -> action for the given posts that are not plainly allowed (one round trip)."""
    ids = list(post_ids)
    if not ids:
        return {}
    values = redis_client.hmget(REDIS_ACTIONS_KEY, ids)
    return {pid: v.decode() if isinstance(v, bytes) else v for pid, v in zip(ids, values) if v is not None}


def recommendable(redis_client, post_ids: Iterable[str]) -> list[str]:
    """The given posts, in order, less those that must not be recommended (removed, limited, in review)."""
    ids = list(post_ids)
    blocked = actions_for(redis_client, ids)
    return [pid for pid in ids if blocked.get(pid) not in NOT_RECOMMENDED]


# --- human review ------------------------------------------------------------------------------------------
class ReviewError(Exception):
    """A review or appeal refused: ``status`` is the HTTP status that says why (404, 403, 409)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def gate_after(decision: str) -> str | None:
    """The Redis gate value after a human decision (None: the post leaves the gate)."""
    if decision not in REVIEW_DECISIONS:
        raise ValueError(f"decision must be one of {', '.join(REVIEW_DECISIONS)}, got {decision!r}")
    return None if decision == "allow" else decision


def appeal_refusal(decision: dict | None, appellant: str, already_appealed: bool) -> ReviewError | None:
    """Why ``appellant`` may not appeal the post's ``decision`` (None: they may). Authors only, once, and only
    against a decision that restricts the post."""
    if decision is None:
        return ReviewError(404, "no moderation decision on this post")
    if decision["author_id"] != appellant:
        return ReviewError(403, "only the post's author can appeal its moderation decision")
    if already_appealed:
        return ReviewError(409, "this post's decision was already appealed (a post can be appealed once)")
    if decision["action"] == "allow":
        return ReviewError(409, "the post is allowed: there is nothing to appeal")
    return None


def set_gate(redis_client, post_id: str, decision: str) -> None:
    value = gate_after(decision)
    if value is None:
        redis_client.hdel(REDIS_ACTIONS_KEY, post_id)
    else:
        redis_client.hset(REDIS_ACTIONS_KEY, post_id, value)


def review_queue(conn: psycopg.Connection, *, limit: int = 50, offset: int = 0) -> dict:
    """The open queue items, oldest first: each with its reasons and scores, the model's action, the post's
    author, kind and text, whether it has stored media, and the appeal message of an appealed one."""
    if not relation_exists(conn, f"{PG_SCHEMA}.review_queue") or not relation_exists(conn, f"{PG_SCHEMA}.appeals"):
        return {"items": [], "total": 0}
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """SELECT q.post_id, q.reasons, q.enqueued_at, q.appeal, d.action, d.source, d.author_id, d.kind,
                      d.caption, d.hatespeech, d.offensive, d.nsfw, d.media_status, d.created_at,
                      (d.media_uri IS NOT NULL AND d.media_uri LIKE 'file:%%') AS has_media,
                      a.message AS appeal_message
               FROM moderation.review_queue q
               JOIN moderation.decisions d USING (post_id)
               LEFT JOIN moderation.appeals a ON a.post_id = q.post_id AND q.appeal
               WHERE q.status = 'open'
               ORDER BY q.enqueued_at, q.post_id LIMIT %s OFFSET %s""",
            (limit, offset),
        )
        items = cur.fetchall()
        total = conn.execute("SELECT count(*) FROM moderation.review_queue q JOIN moderation.decisions d "
                             "USING (post_id) WHERE q.status = 'open'").fetchone()[0]
    return {"items": items, "total": total}


def media_uri_of(conn: psycopg.Connection, post_id: str) -> str | None:
    """The stored media URI of a post with a decision (None: no decision, or no media recorded)."""
    if not relation_exists(conn, f"{PG_SCHEMA}.decisions"):
        return None
    row = conn.execute("SELECT media_uri FROM moderation.decisions WHERE post_id = %s", (post_id,)).fetchone()
    return row[0] if row else None


def review(conn: psycopg.Connection, settings, *, post_id: str, reviewer_id: str, reviewer_role: str,
           decision: str, note: str | None, now) -> dict:
    """Record a moderator's decision on a post, in one transaction: the review row, the decision (action and
    ``source = 'review'``), the queue item resolved, an appeal decided, and the audit entry. The caller then
    updates the Redis gate (:func:`set_gate`): Postgres first, so a crash in between is repaired by a retry.
    A decided appeal is final (409)."""
    from socialpulse import audit

    gate_after(decision)
    ensure_tables(conn)
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT post_id, action, source, reasons, event_date FROM moderation.decisions "
                    "WHERE post_id = %s FOR UPDATE", (post_id,))
        current = cur.fetchone()
        if current is None:
            raise ReviewError(404, f"no moderation decision on post {post_id}")
        cur.execute("SELECT status FROM moderation.appeals WHERE post_id = %s FOR UPDATE", (post_id,))
        appeal = cur.fetchone()
        if appeal is not None and appeal["status"] == "decided":
            raise ReviewError(409, f"the appeal on post {post_id} was decided: that review is final")
        is_appeal = appeal is not None
        model_action = current["action"]
        if current["source"] == "review":
            cur.execute("SELECT model_action FROM moderation.reviews WHERE post_id = %s ORDER BY review_id LIMIT 1",
                        (post_id,))
            first = cur.fetchone()
            model_action = first["model_action"] if first else current["action"]
        cur.execute(
            """INSERT INTO moderation.reviews (post_id, reviewer_id, decision, note, model_action, previous_action,
                                               appeal, reviewed_at)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING review_id""",
            (post_id, reviewer_id, decision, note, model_action, current["action"], is_appeal, now),
        )
        review_id = cur.fetchone()["review_id"]
        cur.execute("UPDATE moderation.decisions SET action = %s, source = 'review', decided_at = %s WHERE post_id = %s",
                    (decision, now, post_id))
        cur.execute(
            """INSERT INTO moderation.review_queue (post_id, reasons, status, enqueued_at, resolved_at, resolution,
                                                   event_date, appeal)
               VALUES (%s, %s, 'resolved', %s, %s, %s, %s, %s)
               ON CONFLICT (post_id) DO UPDATE SET status = 'resolved', resolved_at = EXCLUDED.resolved_at,
                                                   resolution = EXCLUDED.resolution""",
            (post_id, current["reasons"], now, now, decision, current["event_date"], is_appeal),
        )
        if is_appeal:
            cur.execute("UPDATE moderation.appeals SET status = 'decided', decided_at = %s WHERE post_id = %s",
                        (now, post_id))
        audit.record(conn, settings, actor=reviewer_id, actor_role=reviewer_role, action="moderation.review",
                     subject=post_id, details={"decision": decision, "previous": current["action"],
                                               "model": model_action, "appeal": is_appeal, "review_id": review_id})
    return {"post_id": post_id, "review_id": review_id, "decision": decision, "previous_action": current["action"],
            "model_action": model_action, "appeal": is_appeal, "final": is_appeal, "reviewed_at": now}


def appeal(conn: psycopg.Connection, settings, *, post_id: str, author_id: str, author_role: str, message: str,
           now) -> dict:
    """The author's one appeal against a restricting decision: recorded, audited, and the post back in the
    review queue marked as an appeal (the post stays gated until a moderator decides)."""
    from socialpulse import audit

    ensure_tables(conn)
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT post_id, author_id, action, reasons, event_date FROM moderation.decisions "
                    "WHERE post_id = %s FOR UPDATE", (post_id,))
        current = cur.fetchone()
        cur.execute("SELECT 1 FROM moderation.appeals WHERE post_id = %s", (post_id,))
        refusal = appeal_refusal(current, author_id, cur.fetchone() is not None)
        if refusal is not None:
            raise refusal
        cur.execute("INSERT INTO moderation.appeals (post_id, author_id, message, created_at) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT (post_id) DO NOTHING RETURNING post_id", (post_id, author_id, message, now))
        if cur.fetchone() is None:  # a concurrent appeal won the race
            raise ReviewError(409, "this post's decision was already appealed (a post can be appealed once)")
        cur.execute(
            """INSERT INTO moderation.review_queue (post_id, reasons, status, enqueued_at, event_date, appeal)
               VALUES (%s, %s, 'open', %s, %s, true)
               ON CONFLICT (post_id) DO UPDATE SET status = 'open', enqueued_at = EXCLUDED.enqueued_at,
                   resolved_at = NULL, resolution = NULL, appeal = true""",
            (post_id, current["reasons"], now, current["event_date"]),
        )
        audit.record(conn, settings, actor=author_id, actor_role=author_role, action="moderation.appeal",
                     subject=post_id, details={"decision": current["action"]})
    return {"post_id": post_id, "status": "open", "decision": current["action"], "created_at": now}


def reviewed_ids(conn: psycopg.Connection, post_ids: list[str]) -> dict[str, str]:
    """post id -> the human decision, for the given posts a moderator reviewed (publishers leave them alone)."""
    rows = conn.execute("SELECT post_id, action FROM moderation.decisions WHERE source = 'review' AND post_id = ANY(%s)",
                        (post_ids,)).fetchall()
    return dict(rows)
