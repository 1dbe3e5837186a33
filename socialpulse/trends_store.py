"""Trends in Postgres (schema ``trends``): written by the trends assets, read by ``GET /v1/trends`` and
``POST /v1/hashtags/suggest``.

* ``hashtag_scores``: per hashtag and UTC hour, the trend score against its own baseline (every scored
  hour, ``flagged`` marks the trending ones), with the hour's effective count, removed posts and engagement.
  A day's publish replaces that day's hours.
* ``topics``: trending topics (co-trending hashtags grouped by co-occurrence and post vectors) with their
  readable label, keywords and headline, keyed by topic id; a topic running over midnight is updated by
  the later day.
* ``hashtag_counts`` / ``hashtag_pairs``: posts per hashtag and the top co-occurring hashtags of each, over
  the last 28 days of servable posts, as of one day; an older day's backfill never replaces a newer one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence

import psycopg
from psycopg.rows import dict_row

from socialpulse.stores.postgres import copy_rows, relation_exists

SCHEMA = "trends"

DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.hashtag_scores (
    tag text NOT NULL,
    hour timestamptz NOT NULL,
    day date NOT NULL,
    effective integer NOT NULL,
    posts integer NOT NULL,
    removed integer NOT NULL,
    baseline double precision NOT NULL,
    score double precision NOT NULL,
    flagged boolean NOT NULL,
    views bigint NOT NULL DEFAULT 0,
    likes bigint NOT NULL DEFAULT 0,
    shares bigint NOT NULL DEFAULT 0,
    comments bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tag, hour)
);
CREATE INDEX IF NOT EXISTS hashtag_scores_hour_idx ON {SCHEMA}.hashtag_scores (hour DESC, score DESC);
CREATE INDEX IF NOT EXISTS hashtag_scores_day_idx ON {SCHEMA}.hashtag_scores (day);
CREATE TABLE IF NOT EXISTS {SCHEMA}.topics (
    topic_id text PRIMARY KEY,
    day date NOT NULL,
    label text NOT NULL,
    headline text,
    tags text[] NOT NULL,
    keywords text[] NOT NULL,
    first_flag_hour timestamptz NOT NULL,
    last_flag_hour timestamptz NOT NULL,
    peak_score double precision NOT NULL,
    flags integer NOT NULL,
    posts integer NOT NULL,
    computed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS topics_last_idx ON {SCHEMA}.topics (last_flag_hour DESC);
CREATE TABLE IF NOT EXISTS {SCHEMA}.hashtag_counts (
    tag text PRIMARY KEY,
    posts integer NOT NULL,
    as_of date NOT NULL
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.hashtag_pairs (
    tag text NOT NULL,
    other text NOT NULL,
    together integer NOT NULL,
    PRIMARY KEY (tag, other)
);
"""

SCORE_COLUMNS = ("tag", "hour", "day", "effective", "posts", "removed", "baseline", "score", "flagged",
                 "views", "likes", "shares", "comments")
TOPIC_COLUMNS = ("topic_id", "day", "label", "headline", "tags", "keywords", "first_flag_hour", "last_flag_hour",
                 "peak_score", "flags", "posts")


class TrendsNotBuilt(LookupError):
    """The trends tables do not exist yet (the trends assets have not run)."""


def ensure_tables(conn: psycopg.Connection) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('trends.ddl'))")
        conn.execute(DDL)


def publish_scores(conn: psycopg.Connection, day: dt.date, rows: Iterable[Mapping]) -> int:
    """Replace day ``day``'s hourly hashtag scores (one transaction)."""
    ensure_tables(conn)
    with conn.transaction():
        conn.execute(f"DELETE FROM {SCHEMA}.hashtag_scores WHERE day = %s", (day,))
        return copy_rows(conn, f"{SCHEMA}.hashtag_scores", SCORE_COLUMNS,
                         ([r[c] if c != "day" else day for c in SCORE_COLUMNS] for r in rows))


def publish_topics(conn: psycopg.Connection, day: dt.date, rows: Sequence[Mapping]) -> dict[str, int]:
    """Upsert day ``day``'s topics (a topic carried over from the day before is updated, and belongs to
    ``day`` from then on) and drop the day's topics that no longer exist (one transaction)."""
    ensure_tables(conn)
    ids = [r["topic_id"] for r in rows]
    with conn.transaction(), conn.cursor() as cur:
        dropped = cur.execute(f"DELETE FROM {SCHEMA}.topics WHERE day = %s AND NOT (topic_id = ANY(%s))",
                              (day, ids)).rowcount
        cols = ", ".join(TOPIC_COLUMNS)
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in TOPIC_COLUMNS if c != "topic_id")
        cur.executemany(
            f"""INSERT INTO {SCHEMA}.topics ({cols}) VALUES ({', '.join(['%s'] * len(TOPIC_COLUMNS))})
                ON CONFLICT (topic_id) DO UPDATE SET {updates}, computed_at = now()
                WHERE EXCLUDED.day >= {SCHEMA}.topics.day""",
            [[r[c] if c != "day" else day for c in TOPIC_COLUMNS] for r in rows])
    return {"topics": len(rows), "dropped": dropped}


def publish_cooccurrence(conn: psycopg.Connection, as_of: dt.date, counts: Mapping[str, int],
                         pairs: Iterable[tuple[str, str, int]]) -> dict[str, int | bool]:
    """Replace the hashtag counts and pairs with those as of ``as_of``, unless newer ones are published."""
    ensure_tables(conn)
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('trends.cooccurrence'))")
        newest = cur.execute(f"SELECT max(as_of) FROM {SCHEMA}.hashtag_counts").fetchone()[0]
        if newest is not None and newest > as_of:
            return {"published": False, "newer_as_of": 1}
        cur.execute(f"DELETE FROM {SCHEMA}.hashtag_counts")
        cur.execute(f"DELETE FROM {SCHEMA}.hashtag_pairs")
        n_tags = copy_rows(conn, f"{SCHEMA}.hashtag_counts", ("tag", "posts", "as_of"),
                           ((t, int(n), as_of) for t, n in counts.items()))
        n_pairs = copy_rows(conn, f"{SCHEMA}.hashtag_pairs", ("tag", "other", "together"), pairs)
    return {"published": True, "tags": n_tags, "pairs": n_pairs}


# --- reads (serving) -------------------------------------------------------------------------------------

#: the longest trends window served
MAX_WINDOW_HOURS = 7 * 24


def window_hours(window: str | None) -> int:
    """``"6h"`` / ``"2d"`` -> hours (1 .. 168); anything else raises ``ValueError`` with what is accepted."""
    text = (window or "").strip().lower()
    if len(text) >= 2 and text[:-1].isdigit() and text[-1] in "hd":
        hours = int(text[:-1]) * (24 if text[-1] == "d" else 1)
        if 1 <= hours <= MAX_WINDOW_HOURS:
            return hours
    raise ValueError(f"window must be a number of hours or days between 1h and 7d, like 1h, 6h, 24h or 7d; "
                     f"got {window!r}")



def _require(conn: psycopg.Connection) -> None:
    if not relation_exists(conn, f"{SCHEMA}.hashtag_scores"):
        raise TrendsNotBuilt("trends are not built yet: run trends_job (socialpulse trends run)")


def as_of(conn: psycopg.Connection) -> dt.datetime | None:
    """The latest scored hour (trends are as of its end)."""
    _require(conn)
    return conn.execute(f"SELECT max(hour) FROM {SCHEMA}.hashtag_scores").fetchone()[0]


def trending(conn: psycopg.Connection, window_hours: int, limit: int) -> dict:
    """Topics flagged within the last ``window_hours`` hours up to the latest scored hour (strongest first),
    and the hashtags flagged in that window (highest score first)."""
    latest = as_of(conn)
    if latest is None:
        return {"as_of": None, "topics": [], "hashtags": []}
    since = latest - dt.timedelta(hours=window_hours - 1)
    with conn.cursor(row_factory=dict_row) as cur:
        topics = cur.execute(
            f"""SELECT topic_id, label, headline, tags, keywords, first_flag_hour, last_flag_hour, peak_score,
                       flags, posts
                FROM {SCHEMA}.topics WHERE last_flag_hour >= %s AND first_flag_hour <= %s
                ORDER BY peak_score DESC, last_flag_hour DESC, topic_id LIMIT %s""", (since, latest, limit)).fetchall()
        tags = cur.execute(
            f"""SELECT DISTINCT ON (tag) tag, hour, score, effective, baseline, views, likes, shares, comments
                FROM {SCHEMA}.hashtag_scores WHERE flagged AND hour BETWEEN %s AND %s
                ORDER BY tag, score DESC""", (since, latest)).fetchall()
    tags.sort(key=lambda r: (-r["score"], r["tag"]))
    return {"as_of": latest + dt.timedelta(hours=1), "topics": topics, "hashtags": tags[:limit]}


def current_scores(conn: psycopg.Connection, hours: int = 2) -> dict[str, float]:
    """tag -> its best trend score over the latest ``hours`` scored hours, for flagged tags only."""
    latest = as_of(conn)
    if latest is None:
        return {}
    rows = conn.execute(
        f"""SELECT tag, max(score) FROM {SCHEMA}.hashtag_scores WHERE flagged AND hour > %s GROUP BY tag""",
        (latest - dt.timedelta(hours=hours),)).fetchall()
    return {t: float(s) for t, s in rows}


def cooccurrence(conn: psycopg.Connection, chosen: Sequence[str]) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """(posts per tag for the chosen tags and their partners, chosen tag -> partner -> posts with both)."""
    if not chosen or not relation_exists(conn, f"{SCHEMA}.hashtag_pairs"):
        return {}, {}
    pairs: dict[str, dict[str, int]] = {}
    for tag, other, n in conn.execute(
            f"SELECT tag, other, together FROM {SCHEMA}.hashtag_pairs WHERE tag = ANY(%s)", (list(chosen),)):
        pairs.setdefault(tag, {})[other] = n
    counts = dict(conn.execute(f"SELECT tag, posts FROM {SCHEMA}.hashtag_counts WHERE tag = ANY(%s)",
                               (list(chosen),)).fetchall())
    return counts, pairs


def popularity(conn: psycopg.Connection, tags: Iterable[str]) -> dict[str, int]:
    """Posts per tag (last 28 days) for the given tags, plus the most used tag's count under ``""``."""
    if not relation_exists(conn, f"{SCHEMA}.hashtag_counts"):
        return {}
    out = dict(conn.execute(f"SELECT tag, posts FROM {SCHEMA}.hashtag_counts WHERE tag = ANY(%s)",
                            (list(tags),)).fetchall())
    top = conn.execute(f"SELECT max(posts) FROM {SCHEMA}.hashtag_counts").fetchone()[0]
    if top:
        out[""] = top
    return out


# --- hashtag suggestions (served) ------------------------------------------------------------------------


def suggest(conn: psycopg.Connection, vector, chosen: Sequence[str], limit: int) -> dict:
    """Ranked hashtag suggestions for a draft whose text embeds to ``vector``, with ``chosen`` tags already
    picked: the nearest servable indexed posts vote for their tags, the chosen tags pull in their partners,
    tags trending now count where the draft is about them (:func:`socialpulse.hashtags.rank`)."""
    return suggest_many(conn, [vector], limit, chosen=chosen)[0]


def suggest_many(conn: psycopg.Connection, vectors_: Sequence, limit: int, *, chosen: Sequence[str] = (),
                 exclude: Sequence[Sequence[str]] | None = None) -> list[dict]:
    """:func:`suggest` for many drafts at once (trend and popularity tables read once); ``exclude[i]``: post ids
    that may not vote for draft ``i`` (a post already indexed is not its own neighbour)."""
    from socialpulse import hashtags, vectors
    from socialpulse.tags import normalise_tags

    chosen = normalise_tags(chosen)
    counts, pairs = cooccurrence(conn, chosen)
    cooc = hashtags.cooccurrence_scores(chosen, pairs, counts)
    trending = current_scores(conn) if relation_exists(conn, f"{SCHEMA}.hashtag_scores") else {}
    drafts = []
    for i, vector in enumerate(vectors_):
        skip = set(exclude[i]) if exclude else set()
        neighbours = [r for r in vectors.nearest(conn, vector, hashtags.NEIGHBOURS + len(skip))
                      if r["post_id"] not in skip][: hashtags.NEIGHBOURS]
        semantic = hashtags.neighbour_votes(
            (1.0 - r["distance"], r["metadata"].get("hashtags") or []) for r in neighbours)
        drafts.append((semantic, neighbours))
    candidates = set(cooc) | set(trending)
    for semantic, _ in drafts:
        candidates |= set(semantic)
    shares = hashtags.popularity_shares(popularity(conn, candidates))  # shares of the top tag's count, under ""
    shares.pop("", None)
    out = []
    for semantic, neighbours in drafts:
        ranked = hashtags.rank(semantic=semantic, cooccurrence=cooc, trending=trending, popularity=shares,
                               chosen=chosen, limit=limit)
        out.append({"suggestions": [s.to_dict() for s in ranked], "chosen": chosen, "neighbours": len(neighbours),
                    "similarity": round(1.0 - neighbours[0]["distance"], 4) if neighbours else None})
    return out
