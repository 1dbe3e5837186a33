"""Generated alt-text, captions and hashtags in Postgres: the table the captions asset publishes and the API reads.

``captions.post_captions`` holds one row per post (upserted): the alt-text (null when nothing was detected),
the caption and hashtag suggestions, the generator's version and whether the grounded fallback stood in.
The generation itself lives in ``assets/captions``; this module is the store (no lake, no Dagster).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import psycopg
from psycopg.rows import dict_row

from socialpulse.stores.postgres import relation_exists, upsert_rows

PG_SCHEMA = "captions"
TABLE = f"{PG_SCHEMA}.post_captions"

PG_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {PG_SCHEMA};
CREATE TABLE IF NOT EXISTS {TABLE} (
    post_id text PRIMARY KEY,
    author_id text NOT NULL,
    kind text NOT NULL,
    alt_text text,
    captions text[] NOT NULL DEFAULT '{{}}',
    hashtags text[] NOT NULL DEFAULT '{{}}',
    generator text NOT NULL,
    fallback boolean NOT NULL DEFAULT false,
    labels_version text,
    event_date date NOT NULL,
    generated_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS post_captions_event_date_idx ON {TABLE} (event_date);
"""

COLUMNS = ("post_id", "author_id", "kind", "alt_text", "captions", "hashtags", "generator", "fallback",
           "labels_version", "event_date", "generated_at")
SERVED = ("post_id", "alt_text", "captions", "hashtags", "generator", "fallback", "generated_at")


#: the databases (host, port, name) where the captions table was seen: once it exists it stays, so the steady
#: state costs one statement
_tables_seen: set[tuple] = set()


class CaptionsNotBuilt(LookupError):
    """No captions table yet: the captions publish asset has not run."""


def ensure_tables(conn: psycopg.Connection) -> None:
    conn.execute(PG_DDL)


def upsert(conn: psycopg.Connection, rows: Iterable[Mapping]) -> int:
    """Insert or replace each post's captions; returns the number of rows written."""
    lists = ("captions", "hashtags")
    return upsert_rows(conn, TABLE, COLUMNS,
                       (tuple(list(r[c]) if c in lists else r[c] for c in COLUMNS) for r in rows))


def delete_missing(conn: psycopg.Connection, day, keep: Sequence[str]) -> int:
    """Drop the day's rows of posts no longer in the lake's day (deleted posts); returns how many."""
    return conn.execute(f"DELETE FROM {TABLE} WHERE event_date = %s AND NOT (post_id = ANY(%s))",
                        (day, list(keep))).rowcount


def day_count(conn: psycopg.Connection, day) -> int:
    return conn.execute(f"SELECT count(*) FROM {TABLE} WHERE event_date = %s", (day,)).fetchone()[0]


def _require(conn: psycopg.Connection) -> None:
    if not relation_exists(conn, TABLE):
        raise CaptionsNotBuilt("captions are not built yet: materialize postgres/captions/post_captions")


def for_post(conn: psycopg.Connection, post_id: str) -> dict | None:
    """One post's captions, or None when none were generated yet."""
    _require(conn)
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"SELECT {', '.join(SERVED)} FROM {TABLE} WHERE post_id = %s", (post_id,)).fetchone()


def alt_texts(conn: psycopg.Connection, post_ids: Sequence[str]) -> dict[str, str | None]:
    """post id -> alt-text for the given posts, in one statement (posts without a row are absent; no table
    yet: an empty map, so that readers that decorate posts with alt-text never fail for it)."""
    ids = list(dict.fromkeys(post_ids))
    if not ids:
        return {}
    where = (conn.info.host, conn.info.port, conn.info.dbname)
    if where not in _tables_seen:
        if not relation_exists(conn, TABLE):
            return {}
        _tables_seen.add(where)
    return dict(conn.execute(f"SELECT post_id, alt_text FROM {TABLE} WHERE post_id = ANY(%s)", (ids,)).fetchall())
