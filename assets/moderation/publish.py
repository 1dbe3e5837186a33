"""Publish one day of moderation decisions to the serving stores (Postgres tables and the Redis gate).

Idempotent per day: the day's rows in ``moderation.decisions`` are replaced in one transaction; the review
queue gains the day's ``review`` posts (an item already resolved by a human stays resolved) and loses open
items whose post is no longer in review; the Redis gate is set for non-allowed posts and cleared for the
others. Postgres commits first, so a crash between the two is repaired by the next run of the same day.
"""

from __future__ import annotations

import datetime as dt

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from assets.moderation.scoring import value_counts
from assets.moderation.tables import MODERATION_DECISIONS
from assets.warehouse.export import copy_rows
from socialpulse.moderation import PG_SCHEMA, REDIS_ACTIONS_KEY, ensure_tables


def publish_day(conn: psycopg.Connection, redis_client, decisions: pa.Table, day: dt.date) -> dict:
    ensure_tables(conn)
    target = sql.SQL("{}.decisions").format(sql.Identifier(PG_SCHEMA))
    review = decisions.filter(pc.equal(decisions.column("action"), "review"))
    with conn.transaction():
        conn.execute(sql.SQL("DELETE FROM {} WHERE event_date = %s").format(target), (day,))
        copy_rows(conn, target, MODERATION_DECISIONS, decisions)
        conn.execute(
            """DELETE FROM moderation.review_queue q WHERE q.event_date = %s AND q.status = 'open'
               AND NOT EXISTS (SELECT 1 FROM moderation.decisions d
                               WHERE d.post_id = q.post_id AND d.action = 'review')""",
            (day,),
        )
        with conn.cursor() as cur:
            cur.executemany(
                """INSERT INTO moderation.review_queue (post_id, reasons, event_date) VALUES (%s, %s, %s)
                   ON CONFLICT (post_id) DO UPDATE SET reasons = EXCLUDED.reasons
                   WHERE moderation.review_queue.status = 'open'""",
                [(r["post_id"], r["reasons"], r["event_date"]) for r in review.select(["post_id", "reasons", "event_date"]).to_pylist()],
            )
    gated = {}
    cleared = []
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
    counts = value_counts(decisions, "action", ("allow", "limit", "review", "remove"))
    return {"rows": decisions.num_rows, "review_items": review.num_rows, **counts}
