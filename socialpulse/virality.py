"""Virality predictions in Postgres: the table the prediction asset writes and the API and dashboard read.

``virality.predictions`` holds one row per post: the latest probability that the post reaches the top decile
of 7-day reach, with how many hours of the post's life the prediction saw and the model that made it.
The model and its evaluation live in :mod:`socialpulse.virality_model`; this module is the store.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

import psycopg
from psycopg.rows import dict_row

from socialpulse.settings import LIKELY_VIRAL
from socialpulse.stores.postgres import relation_exists, upsert_rows

#: a viral post is one in the top TOP_SHARE of 7-day reach; a prediction of LIKELY or more says "likely viral"
TOP_SHARE = 0.10
LIKELY = LIKELY_VIRAL

PG_SCHEMA = "virality"
TABLE = f"{PG_SCHEMA}.predictions"

PG_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {PG_SCHEMA};
CREATE TABLE IF NOT EXISTS {TABLE} (
    post_id text PRIMARY KEY,
    author_id text NOT NULL,
    post_created_at timestamptz NOT NULL,
    predicted_at timestamptz NOT NULL,
    observed_hours real NOT NULL,
    probability double precision NOT NULL CHECK (probability >= 0 AND probability <= 1),
    views_so_far bigint NOT NULL,
    reach_threshold double precision NOT NULL,
    model_version text NOT NULL
);
CREATE INDEX IF NOT EXISTS predictions_author_idx ON {TABLE} (author_id, post_created_at DESC);
"""

COLUMNS = ("post_id", "author_id", "post_created_at", "predicted_at", "observed_hours", "probability",
           "views_so_far", "reach_threshold", "model_version")


class ViralityNotBuilt(LookupError):
    """No prediction table yet: the virality prediction asset has not run."""


def ensure_schema(conn: psycopg.Connection) -> None:
    conn.execute(PG_DDL)


def upsert(conn: psycopg.Connection, rows: Iterable[Mapping]) -> int:
    """Insert or replace the latest prediction of each post; returns the number of rows written."""
    return upsert_rows(conn, TABLE, COLUMNS, (tuple(r[c] for c in COLUMNS) for r in rows))


def _require(conn: psycopg.Connection) -> None:
    if not relation_exists(conn, TABLE):
        raise ViralityNotBuilt("virality predictions are not built yet: materialize virality_predictions")


def for_post(conn: psycopg.Connection, post_id: str) -> dict | None:
    """The latest prediction of one post, or None when it has none (too old, or not scored yet)."""
    _require(conn)
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE post_id = %s", (post_id,)).fetchone()


def recent_for_creator(conn: psycopg.Connection, creator_id: str, limit: int = 10,
                       since: dt.datetime | None = None) -> list[dict]:
    """A creator's most recent predicted posts, newest first (optionally only posts made after ``since``)."""
    _require(conn)
    where, args = "author_id = %s", [creator_id]
    if since is not None:
        where += " AND post_created_at >= %s"
        args.append(since)
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE {where} "
                           "ORDER BY post_created_at DESC LIMIT %s", (*args, limit)).fetchall()
