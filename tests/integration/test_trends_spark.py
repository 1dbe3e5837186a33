"""Hourly hashtag and keyword counts with PySpark on Sail: effective counts (one author once), anonymous
authors, engagement per term and hour, and partition replacement."""

from __future__ import annotations

import datetime as dt

import pytest

from socialpulse import lake
from assets.moderation.tables import MODERATION_DECISIONS
from assets.trends.logic import hourly_counts, hourly_totals, keywords
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
    # moderation removed this one: counted as posted and removed, never in the effective count
    posts.append({**posts[0], "post_id": "t-hate", "author_id": "u-hate", "hashtags": ["flood"]})
    posts.append({**posts[0], "post_id": "t-words", "author_id": "u9", "hashtags": ["misc"],
                  "caption": "RT @someone: Évacuation du café https://t.co/x #Flood 2026 déjà"})
    # awkward spellings of the same tags (full width, case, decomposed accent, '#'), and what is no tag
    posts.append({**posts[0], "post_id": "t-awkward", "author_id": "u7",
                  "hashtags": ["ＦＬＯＯＤ", "#Café", "CAFE\u0301", "🔥", "new_york", "Straße"],
                  "caption": "ＲＩＶＥＲ levels #yyc#Flood &#39;s river#bank"})
    yesterday = {**posts[0], "post_id": "t-old", "author_id": "u8", "hashtags": ["flood"],
                 "created_at": T - dt.timedelta(days=1), "event_date": D - dt.timedelta(days=1)}
    lake.replace_partitions(POSTS, [yesterday], [D - dt.timedelta(days=1)], settings=stack)
    lake.replace_partitions(POSTS, posts, [D], settings=stack)
    decision = {"post_id": "t-hate", "author_id": "u-hate", "action": "remove", "reasons": ["hatespeech"],
                "hatespeech": 0.99, "offensive": None, "nsfw": None, "media_status": "none", "policy_version": "p",
                "text_model_version": "t", "media_model_version": "m", "decided_at": T, "created_at": T,
                "event_date": D}
    lake.replace_partitions(MODERATION_DECISIONS, [decision], [D], settings=stack)
    # today's engagement on today's post and on yesterday's post both count for today's hours
    events = [{"event_id": f"te{i}", "event_type": et, "user_id": "v", "post_id": pid, "target_user_id": None,
               "watch_time_s": 3.0 if et == "view" else None, "created_at": T + dt.timedelta(minutes=30),
               "event_date": D} for i, (et, pid) in enumerate([("view", "t-u0"), ("view", "t-u0"), ("like", "t-u0"),
                                                                ("like", "t-old")])]
    lake.replace_partitions(INTERACTIONS, events, [D], settings=stack)
    spark = spark_session(stack.spark)
    n = compute_term_hourly(spark, stack, D)
    rows = {(r["term"], r["kind"]): r for r in lake.read(table_uri(stack), filters=[("event_date", "=", D)]).to_pylist()}
    assert n == len(rows)
    flood = rows[("flood", "hashtag")]
    assert (flood["posts"], flood["authors"], flood["anonymous"], flood["removed"], flood["effective"]) == (12, 5, 2, 1, 7)
    assert (flood["views"], flood["likes"]) == (2, 2)
    assert rows[("yyc", "hashtag")]["effective"] == 3
    assert ("waters", "keyword") in rows and ("rising", "keyword") in rows
    assert flood["hour"].hour == 10
    # Spark's keywords are the pure rule's (no mention, URL, hashtag, number or stop word)
    spark_words = {t for (t, k), r in rows.items() if k == "keyword" and r["posts"] == 1}
    assert spark_words == set(keywords(posts[-2]["caption"])) | set(keywords(posts[-1]["caption"])) == {
        "évacuation", "café", "déjà", "river", "levels"}
    # Spark's tags are socialpulse.tags' canonical ones: one tag whatever the spelling, non-tags dropped
    assert {t for t, k in rows if k == "hashtag"} == {"flood", "yyc", "misc", "café", "new_york", "strasse"}
    assert rows[("café", "hashtag")]["posts"] == 1
    # the effective counts are the pure core's on the same posts (removed ones left out)
    kept = [p for p in posts if p["post_id"] != "t-hate"]
    assert {t: s.count for (t, _), s in hourly_counts(kept).items()} == {
        t: r["effective"] for (t, k), r in rows.items() if k == "hashtag"}
    total = rows[("*", "all")]
    assert (total["posts"], total["removed"], total["effective"]) == (13, 1, list(hourly_totals(kept).values())[0])
    # a re-run replaces the day: no duplicates
    assert compute_term_hourly(spark, stack, D) == n


def test_spark_down_fails_the_run_naming_it_and_the_next_run_succeeds(stack, materialize):
    import dagster as dg

    from assets.trends.assets import term_hourly
    from assets.trends.spark_counts import table_uri
    from orchestration.resources import build_resources
    from socialpulse.services.manager import services_down, services_up
    from socialpulse.spark import endpoint

    day = dt.date(2026, 3, 27)
    post = {"post_id": "t-spark-down", "author_id": "u1", "kind": "text", "caption": "storm warning tonight",
            "hashtags": ["storm"], "media_uri": None, "duration_s": None, "language": "en",
            "created_at": dt.datetime(2026, 3, 27, 9, tzinfo=dt.timezone.utc), "event_date": day}
    lake.replace_partitions(POSTS, [post], [day], settings=stack)
    host, port = endpoint(stack.spark)
    services_down(stack, ["spark"])
    try:
        t0 = dt.datetime.now()
        result = dg.materialize([term_hourly], resources=build_resources(stack), partition_key=day.isoformat(),
                                raise_on_error=False)
        failed_in = (dt.datetime.now() - t0).total_seconds()
        assert not result.success
        errors = " ".join(e.event_specific_data.error.message for e in result.all_events if e.is_step_failure)
        assert f"Spark Connect at {host}:{port} is not answering" in errors, errors
        assert "socialpulse services up spark" in errors
        assert failed_in < 60  # at once, not after minutes of client retries
    finally:
        services_up(stack, ["spark"])
    materialize([term_hourly], day)
    rows = lake.read(table_uri(stack), filters=[("event_date", "=", day)]).to_pylist()
    assert {(r["term"], r["kind"]) for r in rows} >= {("storm", "hashtag"), ("warning", "keyword")}
