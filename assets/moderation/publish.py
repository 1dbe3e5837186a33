"""Publish moderation decisions to the serving stores (Postgres tables and the Redis gate).

Two writers share these functions: the daily assets (``publish_day``, the record, from Delta) and the live
worker (``publish_posts``, seconds after upload). Rows carry their ``source`` (``asset`` or ``live``).
``publish_day`` upserts the day's decisions in one transaction and removes the day's *asset* rows whose
post left bronze; it never deletes a live row, which the next asset run of that day supersedes. The review
queue gains ``review`` posts (an item a human resolved stays resolved) and loses open items whose post is no
longer in review (never an appeal); the Redis gate is set for non-allowed posts and cleared for the others.
Postgres commits first, so a crash between the two is repaired by the next run.

A post a moderator reviewed (``source = 'review'``) is the reviewer's: neither writer overwrites its decision,
re-opens its queue item, notifies its author again or touches its gate. For posts not plainly allowed, the
writers also copy what a reviewer needs to see from the posts they decided (kind, the text the model read,
the media URI), since the API cannot read the lake.
"""

from __future__ import annotations

import datetime as dt

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from assets.moderation.policy import ACTIONS
from assets.moderation.scoring import caption_text, value_counts
from assets.moderation.tables import MODERATION_DECISIONS
from socialpulse import notifications
from socialpulse.moderation import DECISION_COLUMNS, REDIS_ACTIONS_KEY, ensure_tables, reviewed_ids
from socialpulse.settings import get_settings
from socialpulse.stores.postgres import copy_arrow



def _upsert(conn: psycopg.Connection, decisions: pa.Table, source: str) -> None:
    """COPY into a temporary table, then insert-or-update by post id (a live row never replaces an asset row,
    and neither replaces a reviewed one)."""
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS _decisions (LIKE moderation.decisions INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
    contract = MODERATION_DECISIONS.schema
    copy_arrow(conn, sql.Identifier("_decisions"), decisions.select(contract.names).cast(contract))
    cols = sql.SQL(", ").join(map(sql.Identifier, DECISION_COLUMNS))
    updates = sql.SQL(", ").join(
        sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c)) for c in DECISION_COLUMNS if c != "post_id"
    )
    guard = sql.SQL(" WHERE moderation.decisions.source <> 'review'") if source == "asset" \
        else sql.SQL(" WHERE moderation.decisions.source = 'live'")
    conn.execute(
        sql.SQL("INSERT INTO moderation.decisions ({cols}, source) SELECT {cols}, %s FROM _decisions "
                "ON CONFLICT (post_id) DO UPDATE SET {updates}, source = EXCLUDED.source{guard}").format(
            cols=cols, updates=updates, guard=guard),
        (source,),
    )


def _content(conn: psycopg.Connection, decisions: pa.Table, posts: pa.Table | None) -> None:
    """What a reviewer sees of the posts not plainly allowed (kind, text as the model read it, media URI); an
    allowed post keeps none of it in Postgres. Reviewed posts are left as they are."""
    if posts is None or posts.num_rows == 0 or decisions.num_rows == 0:
        return
    wanted = [c for c in ("post_id", "kind", "caption", "hashtags", "media_uri") if c in posts.column_names]
    by_id = {r["post_id"]: r for r in posts.select(wanted).to_pylist()}
    ids, kinds, captions, uris = [], [], [], []
    for pid, action in zip(decisions.column("post_id").to_pylist(), decisions.column("action").to_pylist()):
        post = by_id.get(pid)
        if post is None:
            continue
        keep = action != "allow"
        ids.append(pid)
        kinds.append(post.get("kind") if keep else None)
        captions.append((caption_text(post.get("caption"), post.get("hashtags")) or None) if keep else None)
        uris.append(post.get("media_uri") if keep else None)
    conn.execute(
        """UPDATE moderation.decisions d SET kind = c.kind, caption = c.caption, media_uri = c.media_uri
           FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]) AS c(post_id, kind, caption, media_uri)
           WHERE d.post_id = c.post_id AND d.source <> 'review'""",
        (ids, kinds, captions, uris),
    )


def _unreviewed(conn: psycopg.Connection, decisions: pa.Table) -> pa.Table:
    """The decisions less those on posts a moderator reviewed."""
    reviewed = reviewed_ids(conn, decisions.column("post_id").to_pylist())
    if not reviewed:
        return decisions
    return decisions.filter(pa.array([pid not in reviewed for pid in decisions.column("post_id").to_pylist()], pa.bool_()))


def _review_queue(conn: psycopg.Connection, decisions: pa.Table) -> int:
    ids = decisions.column("post_id").to_pylist()
    conn.execute(
        """DELETE FROM moderation.review_queue q WHERE q.post_id = ANY(%s) AND q.status = 'open' AND NOT q.appeal
           AND NOT EXISTS (SELECT 1 FROM moderation.decisions d WHERE d.post_id = q.post_id AND d.action = 'review')""",
        (ids,),
    )
    review = decisions.filter(pc.equal(decisions.column("action"), "review"))
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO moderation.review_queue (post_id, reasons, event_date) VALUES (%s, %s, %s)
               ON CONFLICT (post_id) DO UPDATE SET reasons = EXCLUDED.reasons
               WHERE moderation.review_queue.status = 'open'""",
            [(r["post_id"], r["reasons"], r["event_date"]) for r in review.select(["post_id", "reasons", "event_date"]).to_pylist()],
        )
    return review.num_rows


def _gate(redis_client, decisions: pa.Table) -> None:
    gated, cleared = {}, []
    for pid, action in zip(decisions.column("post_id").to_pylist(), decisions.column("action").to_pylist()):
        if action == "allow":
            cleared.append(pid)
        else:
            gated[pid] = action
    pipe = redis_client.pipeline(transaction=False)
    for i in range(0, len(cleared), 10_000):
        pipe.hdel(REDIS_ACTIONS_KEY, *cleared[i:i + 10_000])
    items = list(gated.items())
    for i in range(0, len(items), 10_000):
        pipe.hset(REDIS_ACTIONS_KEY, mapping=dict(items[i:i + 10_000]))
    pipe.execute()


def _notify(conn: psycopg.Connection, decisions: pa.Table) -> int:
    """Tell the authors of limited, held or removed posts, inside the publishing transaction (a savepoint: a
    notifications failure never fails publishing; the dedupe key makes the live and asset writers' decisions
    on a post one notification per action)."""
    told = decisions.filter(pc.not_equal(decisions.column("action"), "allow"))
    rows = told.select(["post_id", "author_id", "action", "reasons", "created_at"]).to_pylist()
    max_age = dt.timedelta(hours=get_settings().notifications_max_age_h)
    items = notifications.moderation_items(rows, dt.datetime.now(dt.timezone.utc), max_age)
    return notifications.enqueue_safely(conn, items)


def publish_day(conn: psycopg.Connection, redis_client, decisions: pa.Table, day: dt.date,
                posts: pa.Table | None = None) -> dict:
    """The record: one day of decisions from Delta (``posts``: the day's bronze posts, for what reviewers see)."""
    ensure_tables(conn)
    with conn.transaction():
        _upsert(conn, decisions, "asset")
        conn.execute(
            "DELETE FROM moderation.decisions WHERE event_date = %s AND source = 'asset' AND NOT (post_id = ANY(%s))",
            (day, decisions.column("post_id").to_pylist()),
        )
        _content(conn, decisions, posts)
        model_owned = _unreviewed(conn, decisions)
        review = _review_queue(conn, model_owned)
        _notify(conn, model_owned)
    _gate(redis_client, model_owned)
    return {"rows": decisions.num_rows, "review_items": review, "reviewed": decisions.num_rows - model_owned.num_rows,
            **value_counts(decisions, "action", ACTIONS)}


def publish_posts(conn: psycopg.Connection, redis_client, decisions: pa.Table, posts: pa.Table | None = None) -> dict:
    """The live path: decisions on posts just accepted, before the day's assets have run."""
    if decisions.num_rows == 0:
        return {}
    ensure_tables(conn)
    with conn.transaction():
        _upsert(conn, decisions, "live")
        _content(conn, decisions, posts)
        model_owned = _unreviewed(conn, decisions)
        review = _review_queue(conn, model_owned)
        _notify(conn, model_owned)
    _gate(redis_client, model_owned)
    return {"review_items": review, **value_counts(decisions, "action", ACTIONS)}
