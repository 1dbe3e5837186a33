"""Engagement features through Spark Connect (Sail) on real Delta tables, and the Dagster assets."""

from __future__ import annotations

import datetime as dt

import pytest

from socialpulse import lake
from socialpulse.contracts import INTERACTIONS

pytestmark = pytest.mark.integration

D = dt.date(2026, 2, 10)


def event(i, kind, user, day, post=None, target=None, watch=None):
    return {
        "event_id": f"eng-{i}",
        "event_type": kind,
        "user_id": user,
        "post_id": post,
        "target_user_id": target,
        "watch_time_s": watch,
        "created_at": dt.datetime.combine(day, dt.time(12), dt.timezone.utc),
        "event_date": day,
    }


def bronze_rows():
    d3, d2, d7 = D - dt.timedelta(days=3), D - dt.timedelta(days=2), D - dt.timedelta(days=7)
    return [
        # day D
        event(1, "view", "u1", D, "p1", watch=10.0),
        event(2, "view", "u2", D, "p1", watch=20.0),
        event(3, "view", "u1", D, "p1", watch=5.0),
        event(4, "like", "u2", D, "p1"),
        event(5, "share", "u3", D, "p1"),
        event(6, "comment", "u1", D, "p1"),
        event(7, "view", "u3", D, "p2", watch=4.0),
        event(8, "follow", "u1", D, target="c1"),
        event(9, "follow", "u2", D, target="c1"),
        # inside the 7-day window
        event(10, "view", "u4", d3, "p1", watch=6.0),
        event(11, "like", "u4", d3, "p1"),
        event(12, "unfollow", "u3", d2, target="c1"),
        # D-7: outside D's window, inside D-1's
        event(13, "view", "u5", d7, "p1", watch=100.0),
        event(14, "view", "u5", d7, "p3", watch=1.0),
    ]


@pytest.fixture(scope="module")
def spark(stack):
    from socialpulse.spark import spark_session

    lake.append(INTERACTIONS, bronze_rows(), settings=stack)
    session = spark_session(stack.spark)
    yield session
    # stop while Sail still runs: a client left open when the server goes away retries its session
    # release at interpreter exit for minutes
    session.stop()


def partition(uri, day):
    return {r.get("post_id") or r["user_id"]: r for r in lake.read(uri, filters=[("event_date", "=", day)]).to_pylist()}


def test_post_and_user_windows_exact(stack, spark):
    from assets.engagement.spark_features import POST_ENGAGEMENT, USER_ENGAGEMENT, compute_engagement, end_of_day

    rows = compute_engagement(spark, stack, D)
    assert rows == {"post_engagement_daily": 2, "user_engagement_daily": 5}

    posts = partition(POST_ENGAGEMENT.uri(stack), D)
    assert set(posts) == {"p1", "p2"}  # p3 only had events on D-7
    p1 = posts["p1"]
    assert (p1["views_1d"], p1["likes_1d"], p1["shares_1d"], p1["comments_1d"]) == (3, 1, 1, 1)
    assert (p1["watch_time_s_1d"], p1["avg_watch_time_s_1d"], p1["unique_viewers_1d"]) == (35.0, 35.0 / 3, 2)
    assert (p1["views_7d"], p1["likes_7d"], p1["shares_7d"], p1["comments_7d"]) == (4, 2, 1, 1)
    assert (p1["watch_time_s_7d"], p1["avg_watch_time_s_7d"], p1["unique_viewers_7d"]) == (41.0, 41.0 / 4, 3)
    assert p1["engagement_rate_7d"] == pytest.approx(4 / 4)
    assert (posts["p2"]["views_7d"], posts["p2"]["engagement_rate_7d"]) == (1, 0.0)
    assert p1["feature_ts"] == end_of_day(D) and p1["event_date"] == D

    users = partition(USER_ENGAGEMENT.uri(stack), D)
    assert set(users) == {"u1", "u2", "u3", "u4", "c1"}
    u1 = users["u1"]
    assert (u1["views_given_1d"], u1["comments_given_1d"], u1["watch_time_s_1d"], u1["views_given_7d"]) == (2, 1, 15.0, 2)
    u4 = users["u4"]
    assert (u4["views_given_1d"], u4["views_given_7d"], u4["likes_given_7d"], u4["watch_time_s_7d"]) == (0, 1, 1, 6.0)
    c1 = users["c1"]
    assert (c1["follows_gained_1d"], c1["follows_gained_7d"], c1["unfollows_gained_1d"], c1["unfollows_gained_7d"]) == (
        2, 2, 0, 1,
    )
    assert (c1["views_given_7d"], c1["watch_time_s_7d"]) == (0, 0.0)


def test_rerun_replaces_only_its_partition(stack, spark):
    from assets.engagement.spark_features import POST_ENGAGEMENT, compute_engagement

    before = D - dt.timedelta(days=1)
    assert compute_engagement(spark, stack, before)["post_engagement_daily"] == 2
    compute_engagement(spark, stack, D)
    compute_engagement(spark, stack, D)

    uri = POST_ENGAGEMENT.uri(stack)
    on_d, on_before = partition(uri, D), partition(uri, before)
    assert len(lake.read(uri, filters=[("event_date", "=", D)])) == 2  # no duplicates after reruns
    assert set(on_before) == {"p1", "p3"}
    assert (on_before["p1"]["views_1d"], on_before["p1"]["views_7d"], on_before["p1"]["watch_time_s_7d"]) == (0, 2, 106.0)
    assert on_d["p1"]["views_7d"] == 4


def test_declared_schema_is_the_written_schema(stack, spark):
    from assets.engagement.spark_features import GOLD_TABLES, check_schema, compute_engagement

    compute_engagement(spark, stack, D)
    for table in GOLD_TABLES:
        check_schema(spark, table.uri(stack), table.schema)
        written = lake.read(table.uri(stack)).schema
        assert [(f.name, f.type) for f in written] == [(f.name, f.type) for f in table.schema]


def test_partition_quality_rules(stack, spark):
    from assets.engagement.spark_features import GOLD_TABLES, compute_engagement, partition_violations

    compute_engagement(spark, stack, D)
    for table in GOLD_TABLES:
        stats = partition_violations(spark, table, stack, D)
        assert stats["rows"] > 0
        assert stats["null_keys"] == stats["negative_counts"] == stats["one_day_above_seven_days"] == 0


def test_dagster_assets_and_checks_run_green(stack, spark):
    import dagster as dg

    from assets.engagement import ASSET_CHECKS, ASSETS
    from orchestration.resources import build_resources
    from socialpulse import features

    result = dg.materialize(
        [*ASSETS, *ASSET_CHECKS],
        resources=build_resources(stack),
        partition_key=D.isoformat(),
        raise_on_error=True,
    )
    assert result.success
    checks = result.get_asset_check_evaluations()
    assert len(checks) == 6 and all(c.passed for c in checks)
    mats = {
        ev.asset_key.to_user_string(): ev.event_specific_data.materialization.metadata
        for ev in result.get_asset_materialization_events()
    }
    assert mats["lake/gold/post_engagement_daily"]["rows"].value == 2
    assert mats["lake/gold/user_engagement_daily"]["rows"].value == 5
    assert mats["feast/online/post_engagement"]["rows"].value == 2
    assert features.get_post_stats(stack, "p1")["views_7d"] == 4
