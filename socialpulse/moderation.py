"""Moderation decisions in the serving stores: the Postgres tables, the Redis gate, and their reads.

Written by the moderation assets and the live moderation worker (``assets/moderation``; ``source`` says
which), read by the API. Postgres ``moderation.decisions``
holds every decision (one row per post); ``moderation.review_queue`` holds the posts sent to a human.
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
    source text NOT NULL DEFAULT 'asset' CHECK (source IN ('asset', 'live'))
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
    event_date date NOT NULL
);
CREATE INDEX IF NOT EXISTS review_queue_open_idx ON {PG_SCHEMA}.review_queue (enqueued_at) WHERE status = 'open';
"""

DECISION_COLUMNS = (
    "post_id", "author_id", "action", "reasons", "hatespeech", "offensive", "nsfw", "media_status",
    "policy_version", "text_model_version", "media_model_version", "decided_at", "created_at", "event_date",
)


_READY: "weakref.WeakSet[psycopg.Connection]" = weakref.WeakSet()  # connections that already ran the DDL


def ensure_tables(conn: psycopg.Connection) -> None:
    """Create the moderation tables once per connection (the live worker publishes every second)."""
    if conn in _READY:
        return
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('moderation.ddl'))")
    conn.execute(PG_DDL)
    # tables made before decisions had a source: ALTER only when needed, it takes an exclusive lock
    has_source = conn.execute(
        "SELECT 1 FROM information_schema.columns WHERE table_schema = %s AND table_name = 'decisions' "
        "AND column_name = 'source'", (PG_SCHEMA,)).fetchone()
    if not has_source:
        conn.execute(f"ALTER TABLE {PG_SCHEMA}.decisions ADD COLUMN source text NOT NULL DEFAULT 'asset'")
    conn.commit()
    _READY.add(conn)


def get_decision(conn: psycopg.Connection, post_id: str) -> dict | None:
    """The decision on one post, with its review state; None when the post has no decision (yet)."""
    if not relation_exists(conn, f"{PG_SCHEMA}.decisions"):
        return None
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """SELECT d.post_id, d.action, d.reasons, d.hatespeech, d.offensive, d.nsfw, d.media_status,
                      d.policy_version, d.text_model_version, d.media_model_version, d.decided_at,
                      d.source, q.status AS review_status
               FROM moderation.decisions d LEFT JOIN moderation.review_queue q USING (post_id)
               WHERE d.post_id = %s""",
            (post_id,),
        )
        return cur.fetchone()


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
