"""Feast configuration and definitions, without services."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest



@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:56379/0", "127.0.0.1:56379,db=0"),
        ("redis://cache.internal:6380/3", "cache.internal:6380,db=3"),
        ("redis://:s3cret@cache:6379", "cache:6379,db=0,password=s3cret"),
        ("rediss://app:pw@cache:6380/1", "cache:6380,db=1,username=app,password=pw,ssl=true"),
    ],
)
def test_redis_connection_string(url, expected):
    from socialpulse.features import redis_connection_string

    assert redis_connection_string(url) == expected


def test_redis_connection_string_refuses_other_schemes():
    from socialpulse.features import redis_connection_string

    with pytest.raises(ValueError, match="scheme"):
        redis_connection_string("http://127.0.0.1:6379")


def test_repo_config_from_settings(local_settings):
    from socialpulse.features import repo_config

    cfg = repo_config(local_settings)
    assert cfg.project == "socialpulse"
    assert cfg.provider == "local"
    assert cfg.offline_store.type == "duckdb"  # `file` would ignore the Delta log
    assert cfg.online_store.type == "redis"
    assert cfg.online_store.connection_string == f"127.0.0.1:{local_settings.redis_port},db=0"
    assert cfg.online_store.skip_dedup is False
    assert cfg.entity_key_serialization_version == 3
    assert Path(cfg.registry.path).parent == local_settings.feast_repo_state
    assert repo_config(local_settings, skip_dedup=True).online_store.skip_dedup is True


def test_definitions_point_at_the_settings_lake(local_settings):
    from feast import FeatureService, FeatureView
    from feast.data_format import DeltaFormat
    from feast.infra.offline_stores.file_source import FileSource

    from socialpulse.features import load_definitions

    objects = load_definitions(local_settings)
    by_kind = {}
    for obj in objects:
        by_kind.setdefault(type(obj).__name__, set()).add(obj.name)
    assert by_kind["Entity"] == {"post", "user"}
    assert by_kind["FeatureView"] == {"post_engagement", "user_engagement"}
    assert by_kind["FeatureService"] >= {"post_stats_v1", "feed_ranking_v1", "user_stats_v1"}
    sources = {o.name: o for o in objects if isinstance(o, FileSource)}
    assert sources["post_engagement_daily"].path == local_settings.table_uri("gold", "post_engagement_daily")
    assert all(isinstance(s.file_format, DeltaFormat) and s.timestamp_field == "feature_ts" for s in sources.values())
    views = {o.name: o for o in objects if isinstance(o, FeatureView)}
    assert all(v.ttl == dt.timedelta(days=8) for v in views.values())
    feed = next(o for o in objects if isinstance(o, FeatureService) and o.name == "feed_ranking_v1")
    assert {p.name for p in feed.feature_view_projections} == {"post_engagement", "user_engagement"}


def test_feature_views_match_the_gold_schemas(local_settings):
    from assets.engagement.spark_features import POST_ENGAGEMENT_SCHEMA, USER_ENGAGEMENT_SCHEMA
    from socialpulse.features import load_definitions

    views = {o.name: o for o in load_definitions(local_settings) if type(o).__name__ == "FeatureView"}
    for view, schema, key in (
        ("post_engagement", POST_ENGAGEMENT_SCHEMA, "post_id"),
        ("user_engagement", USER_ENGAGEMENT_SCHEMA, "user_id"),
    ):
        gold = {f.name for f in schema} - {key, "feature_ts", "computed_at", "event_date"}
        assert {f.name for f in views[view].features} == gold


def test_feature_timestamp_is_end_of_day_or_now():
    from assets.engagement.spark_features import end_of_day, feature_timestamp

    day = dt.date(2026, 3, 1)
    assert end_of_day(day) == dt.datetime(2026, 3, 1, 23, 59, 59, 999999, tzinfo=dt.timezone.utc)
    assert feature_timestamp(day, now=dt.datetime(2026, 3, 5, tzinfo=dt.timezone.utc)) == end_of_day(day)
    midday = dt.datetime(2026, 3, 1, 12, tzinfo=dt.timezone.utc)
    assert feature_timestamp(day, now=midday) == midday


def test_materialization_window_is_the_day_cut_at_now():
    from assets.engagement.assets import materialization_window

    day = dt.date(2026, 3, 1)
    start, end = materialization_window(day, now=dt.datetime(2026, 3, 9, tzinfo=dt.timezone.utc))
    assert (start, end - start) == (dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc), dt.timedelta(days=1))
    now = dt.datetime(2026, 3, 1, 7, tzinfo=dt.timezone.utc)
    assert materialization_window(day, now=now)[1] == now

