"""The dbt project, run through its dagster-dbt assets on bronze exported into the real embedded Postgres."""

import datetime as dt

import dagster as dg
import psycopg
import pytest

from socialpulse import lake
from socialpulse.contracts import BRONZE

pytestmark = pytest.mark.integration

UTC = dt.timezone.utc
DAY = dt.date(2026, 6, 10)


def at(hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(DAY.year, DAY.month, DAY.day, hour, minute, tzinfo=UTC)


def _seed_bronze(settings) -> None:
    rows = {
        "users": [dict(user_id=f"dbt-u{i}", handle=f"user{i}", is_creator=i == 0, created_at=at(0)) for i in range(3)],
        "posts": [
            dict(post_id="dbt-p1", author_id="dbt-u0", kind="video", hashtags=["fyp"], duration_s=30.0,
                 created_at=at(1), event_date=DAY),
            dict(post_id="dbt-p2", author_id="dbt-u0", kind="image", hashtags=[], created_at=at(2), event_date=DAY),
        ],
        "media": [dict(media_id="dbt-m1", post_id="dbt-p1", uri="media/ab", content_type="video/mp4", size_bytes=10,
                       sha256="ab" * 32, created_at=at(1), event_date=DAY)],
        "interactions": [
            dict(event_id="dbt-e1", event_type="view", user_id="dbt-u1", post_id="dbt-p1", watch_time_s=10.0,
                 created_at=at(3), event_date=DAY),
            dict(event_id="dbt-e2", event_type="view", user_id="dbt-u2", post_id="dbt-p1", watch_time_s=5.0,
                 created_at=at(4), event_date=DAY),
            dict(event_id="dbt-e3", event_type="view", user_id="dbt-u1", post_id="dbt-p1", watch_time_s=1.0,
                 created_at=at(5), event_date=DAY),
            dict(event_id="dbt-e4", event_type="like", user_id="dbt-u1", post_id="dbt-p1", created_at=at(3, 1), event_date=DAY),
            dict(event_id="dbt-e5", event_type="comment", user_id="dbt-u2", post_id="dbt-p2", created_at=at(6), event_date=DAY),
            dict(event_id="dbt-e6", event_type="follow", user_id="dbt-u1", target_user_id="dbt-u0", created_at=at(7),
                 event_date=DAY),
        ],
        "comments": [dict(comment_id="dbt-e5", post_id="dbt-p2", user_id="dbt-u2", text="nice", created_at=at(6),
                          event_date=DAY)],
        "follows": [dict(event_id="dbt-e6", follower_id="dbt-u1", followee_id="dbt-u0", action="follow",
                         created_at=at(7), event_date=DAY)],
    }
    for table, table_rows in rows.items():
        lake.append(BRONZE[table], table_rows, settings=settings)


def test_dbt_build_runs_models_and_tests_as_asset_checks(stack):
    from assets.warehouse.assets import EXPORT_ASSETS, metrics_timeseries
    from assets.warehouse.dbt_assets import dbt_env, dbt_resource, socialpulse_dbt
    from orchestration.resources import SettingsResource

    assert dbt_env(stack)["SOCIALPULSE_PG_PORT"] == str(stack.postgres_port)
    _seed_bronze(stack)
    resources = {"settings": SettingsResource(), "dbt": dbt_resource()}
    partitioned = [a for a in EXPORT_ASSETS if a.partitions_def is not None] + [metrics_timeseries]
    unpartitioned = [a for a in EXPORT_ASSETS if a.partitions_def is None]
    assert dg.materialize(partitioned, partition_key=DAY.isoformat(), resources=resources).success
    assert dg.materialize(unpartitioned, resources=resources).success

    result = dg.materialize([socialpulse_dbt], resources=resources, raise_on_error=False)
    evaluations = result.get_asset_check_evaluations()
    failed = [(e.asset_key.to_user_string(), e.check_name) for e in evaluations if not e.passed]
    assert result.success, failed
    assert not failed
    # every dbt test of the project surfaced as a Dagster asset check
    assert len(evaluations) == len(list(socialpulse_dbt.check_specs)) >= 20
    materialized = {m.asset_key for m in result.get_asset_materialization_events() for m in [m.materialization]}
    assert dg.AssetKey(["postgres", "dbt", "fct_post_daily_engagement"]) in materialized
    assert dg.AssetKey(["postgres", "dbt", "stg_bronze__interactions"]) in materialized
    assert dg.AssetKey(["postgres", "dbt", "fct_creator_daily_performance"]) in materialized

    with psycopg.connect(stack.postgres) as conn:
        rows = conn.execute(
            "SELECT post_id, author_id, kind, views, likes, comments, watch_time_s, unique_viewers "
            "FROM marts.fct_post_daily_engagement WHERE activity_date = %s ORDER BY post_id", (DAY,)).fetchall()
        kind = conn.execute("SELECT table_type FROM information_schema.tables "
                            "WHERE table_schema = 'staging' AND table_name = 'stg_bronze__posts'").fetchone()
    assert rows == [
        ("dbt-p1", "dbt-u0", "video", 3, 1, 0, pytest.approx(16.0), 2),
        ("dbt-p2", "dbt-u0", "image", 0, 0, 1, 0.0, 0),
    ]
    assert kind == ("VIEW",)
    with psycopg.connect(stack.postgres) as conn:
        creator = conn.execute(
            "SELECT posts_published, views, unique_viewers, likes, comments, completions, followers_gained, "
            "engagement_rate FROM marts.fct_creator_daily_performance WHERE creator_id = 'dbt-u0' AND activity_date = %s",
            (DAY,)).fetchone()
        growth = conn.execute("SELECT net_followers, followers_to_date FROM marts.fct_follower_growth "
                              "WHERE creator_id = 'dbt-u0' AND activity_date = %s", (DAY,)).fetchone()
    # dbt-p1 (30 s): views of 10, 5 and 1 s, none completed; two viewers; a like on p1, a comment on p2
    assert creator == (2, 3, 2, 1, 1, 0, 1, pytest.approx(2 / 3))
    assert growth == (1, 1)
