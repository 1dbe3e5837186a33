"""Hourly hashtag and keyword counts with PySpark on Sail: effective counts (one author once), anonymous
authors, engagement per term and hour, and partition replacement."""

from __future__ import annotations

import datetime as dt

import pytest

from socialpulse import lake
from socialpulse.contracts import INTERACTIONS, POSTS

pytestmark = pytest.mark.integration

D = dt.date(2026, 3, 20)
T = dt.datetime(2026, 3, 20, 10, 5, tzinfo=dt.timezone.utc)


def test_hourly_terms_count_authors_once_and_attach_engagement(stack):
    from assets.trends.spark_counts import compute_term_hourly, table_uri
    from socialpulse.spark import spark_session

    posts = []
    for i in range(5):  # one spammer posting #flood five times in the hour
        posts.append({"post_id": f"t-spam-{i}", "author_id": "u-spam", "kind": "text", "caption": "Flood waters rising",
                      "hashtags": ["#Flood"], "media_uri": None, "duration_s": None, "language": "en",
                      "created_at": T + dt.timedelta(minutes=i), "event_date": D})
    for i in range(3):  # three people, and two anonymous posts
        posts.append({**posts[0], "post_id": f"t-u{i}", "author_id": f"u{i}", "hashtags": ["flood", "yyc"]})
    for i in range(2):
        posts.append({**posts[0], "post_id": f"t-anon{i}", "author_id": "cl-anonymous", "hashtags": ["flood"]})
    lake.replace_partitions(POSTS, posts, [D], settings=stack)
    events = [{"event_id": f"te{i}", "event_type": et, "user_id": "v", "post_id": "t-u0", "target_user_id": None,
               "watch_time_s": 3.0 if et == "view" else None, "created_at": T + dt.timedelta(minutes=30),
               "event_date": D} for i, et in enumerate(["view", "view", "like"])]
    lake.replace_partitions(INTERACTIONS, events, [D], settings=stack)
    spark = spark_session(stack.spark)
    n = compute_term_hourly(spark, stack, D)
    rows = {(r["term"], r["kind"]): r for r in lake.read(table_uri(stack), filters=[("event_date", "=", D)]).to_pylist()}
    assert n == len(rows)
    flood = rows[("flood", "hashtag")]
    assert (flood["posts"], flood["authors"], flood["anonymous"], flood["effective"]) == (10, 4, 2, 6)
    assert (flood["views"], flood["likes"]) == (2, 1)
    assert rows[("yyc", "hashtag")]["effective"] == 3
    assert ("waters", "keyword") in rows and ("rising", "keyword") in rows
    assert flood["hour"].hour == 10
    # a re-run replaces the day: no duplicates
    assert compute_term_hourly(spark, stack, D) == n
