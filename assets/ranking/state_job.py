"""Read what the feed's serving state is made of (Postgres index and trends, gold engagement, bronze
feedback) and publish it: the candidate pools into Postgres (:func:`socialpulse.vectors.publish_feed_pool`),
the rest into Redis (:mod:`socialpulse.ranking.store`)."""

from __future__ import annotations

import datetime as dt
import json
import time

import psycopg
import pyarrow as pa
import pyarrow.compute as pc

from assets.engagement.spark_features import POST_ENGAGEMENT, USER_ENGAGEMENT
from assets.ranking.state import FEEDBACK_DAYS, SEEN_DAYS, feature_map, follow_state, global_lists, since, user_states
from socialpulse import lake, trends_store, vectors
from socialpulse.contracts import FOLLOWS, INTERACTIONS
from socialpulse.ranking import store
from socialpulse.ranking.model import POST_FEATURES, USER_FEATURES
from socialpulse.settings import Settings
from socialpulse.stores.postgres import relation_exists


def servable_posts(conn: psycopg.Connection) -> list[dict]:
    if not relation_exists(conn, f"{vectors.SCHEMA}.{vectors.POSTS_TABLE}"):
        return []
    rows = conn.execute(
        f"""SELECT id, metadata->>'author_id', metadata->>'created_at', metadata->'hashtags'
            FROM {vectors.SCHEMA}.{vectors.POSTS_TABLE} WHERE metadata @> %s::jsonb""",
        (json.dumps(vectors.SERVABLE),)).fetchall()
    return [{"post_id": r[0], "author_id": r[1], "created_at": r[2], "hashtags": r[3] or []} for r in rows]


def _gold(settings: Settings, table, today: dt.date) -> pa.Table:
    uri = table.uri(settings)
    try:
        return lake.read(uri, filters=[("event_date", ">=", today - dt.timedelta(days=2))])
    except FileNotFoundError:
        return table.schema.empty_table()


def publish_state(settings: Settings, redis, today: dt.date | None = None) -> dict:
    t0 = time.perf_counter()
    today = today or dt.datetime.now(dt.timezone.utc).date()
    with psycopg.connect(settings.postgres, connect_timeout=5) as conn:
        posts = servable_posts(conn)
        trends = trends_store.current_scores(conn) if relation_exists(conn, f"{trends_store.SCHEMA}.hashtag_scores") else {}
    post_feats = feature_map(_gold(settings, POST_ENGAGEMENT, today), "post_id", POST_FEATURES)
    user_feats = feature_map(_gold(settings, USER_ENGAGEMENT, today), "user_id", USER_FEATURES)
    follows = lake.read(FOLLOWS, settings=settings, columns=["event_id", "follower_id", "followee_id", "action", "created_at"])
    recent = lake.read(INTERACTIONS, settings=settings, columns=["user_id", "event_type", "post_id", "target_user_id", "created_at", "event_date"],
                       filters=[("event_date", ">=", since(today, FEEDBACK_DAYS))])
    feedback = recent.filter(pc.is_in(recent["event_type"], value_set=pa.array(["block", "not_interested"])))
    views = recent.filter(pc.and_(pc.equal(recent["event_type"], "view"),
                                  pc.greater_equal(recent["event_date"], pa.scalar(since(today, SEEN_DAYS), pa.date32()))))
    views = views.select(["user_id", "post_id"])
    t_read = time.perf_counter() - t0
    lists = global_lists(posts, post_feats, trends)
    followed, unfollowed = follow_state(follows)
    users = user_states(user_feats, followed, unfollowed, feedback, views, posts)
    t_build = time.perf_counter() - t0 - t_read
    ids = [p["post_id"] for p in posts]
    import numpy as np

    matrix = np.stack([post_feats.get(p, np.full(len(POST_FEATURES), np.nan)) for p in ids]) if ids else np.zeros((0, len(POST_FEATURES)))
    store.publish_posts(redis, ids, matrix)
    pruned = store.prune_posts(redis, ids)
    with psycopg.connect(settings.postgres, connect_timeout=5) as conn:
        pools = vectors.publish_feed_pool(conn, lists)
    store.publish_users(redis, users)
    as_of = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    store.publish_meta(redis, as_of=as_of, posts=len(ids), users=len(users), trending_tags=len(trends))
    return {"posts": len(ids), "posts_with_features": sum(1 for p in ids if p in post_feats), "posts_pruned": pruned,
            "users": len(users), "pools": pools, "trending_posts": len(lists["trending"]), "read_s": round(t_read, 2),
            "build_s": round(t_build, 2), "total_s": round(time.perf_counter() - t0, 2), "as_of": as_of}
