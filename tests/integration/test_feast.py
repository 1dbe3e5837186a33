"""Feast over the gold Delta tables: apply, materialize to Redis, online reads for serving."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from socialpulse import lake
from socialpulse.contracts import INTERACTIONS

pytestmark = pytest.mark.integration

F = dt.date(2026, 4, 10)  # far from the other tests' days: no shared 7-day window
ROOT = Path(__file__).resolve().parents[2]


def event(i, kind, user, day, post=None, target=None, watch=None):
    return {
        "event_id": f"fst-{day}-{i}",
        "event_type": kind,
        "user_id": user,
        "post_id": post,
        "target_user_id": target,
        "watch_time_s": watch,
        "created_at": dt.datetime.combine(day, dt.time(9), dt.timezone.utc),
        "event_date": day,
    }


def day_f_events():
    return [
        event(1, "view", "fu1", F, "fp1", watch=8.0),
        event(2, "view", "fu2", F, "fp1", watch=4.0),
        event(3, "like", "fu1", F, "fp1"),
        event(4, "view", "fu2", F, "fp2", watch=2.0),
        event(5, "follow", "fu1", F, target="fc1"),
    ]


def earlier_events():
    return [event(8, "view", "fu5", F - dt.timedelta(days=2), "fp1", watch=1.0)]


def window(day):
    start = dt.datetime.combine(day, dt.time(), dt.timezone.utc)
    return start, start + dt.timedelta(days=1)


@pytest.fixture(scope="module")
def online(stack):
    """Day F computed through Sail, the repo applied and day F materialized into Redis."""
    from assets.engagement.spark_features import compute_engagement
    from socialpulse import features
    from socialpulse.spark import spark_session

    spark = spark_session(stack.spark)
    lake.append(INTERACTIONS, day_f_events() + earlier_events(), settings=stack)
    compute_engagement(spark, stack, F)
    applied = features.apply_repo(stack)
    assert set(applied["FeatureService"]) >= {"post_stats_v1", "feed_ranking_v1"}
    result = features.materialize(stack, *window(F))
    assert result["post_engagement"]["rows"] == 2 and result["user_engagement"]["rows"] == 4
    yield spark
    spark.stop()  # while Sail still runs (see test_engagement.spark)


def offline_rows(stack, view_name, key):
    """Every row the DuckDB offline store reads from a view's Delta source (no dedup)."""
    from feast.infra.offline_stores.duckdb import DuckDBOfflineStore

    from socialpulse import features

    store = features.feature_store(stack)
    view = store.get_feature_view(view_name)
    job = DuckDBOfflineStore.pull_all_from_table_or_query(
        config=store.config,
        data_source=view.batch_source,
        join_key_columns=[key],
        feature_name_columns=[f.name for f in view.features],
        timestamp_field="feature_ts",
        start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
        end_date=dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc),
    )
    return job.to_arrow().to_pylist()


def test_online_post_stats_from_redis(stack, online):
    from socialpulse import features

    stats = features.get_post_stats(stack, "fp1")
    assert (stats["views_1d"], stats["likes_1d"], stats["unique_viewers_1d"]) == (2, 1, 2)
    assert (stats["views_7d"], stats["watch_time_s_7d"]) == (3, 13.0)
    assert stats["avg_watch_time_s_7d"] == pytest.approx(13.0 / 3)
    assert stats["engagement_rate_7d"] == pytest.approx(1 / 3)
    user = features.get_user_features(stack, "fc1")
    assert (user["follows_gained_1d"], user["views_given_7d"]) == (1, 0)
    ranked = features.get_feed_ranking_features(stack, "fu1", ["fp1", "unknown-post"])
    assert ranked[0]["views_7d"] == 3 and ranked[0]["views_given_7d"] == 1
    assert ranked[1]["views_7d"] is None and ranked[1]["views_given_7d"] == 1


def test_unknown_entities_are_none(stack, online):
    from socialpulse import features

    assert features.get_post_stats(stack, "no-such-post") is None
    assert features.get_user_features(stack, "no-such-user") is None


def test_replaced_partition_reaches_redis_and_offline_reads_honour_the_delta_log(stack, online):
    from assets.engagement.spark_features import compute_engagement
    from socialpulse import features

    # restate bronze day F: fp1 gets two more likes, fp2 disappears (its view was a bot)
    corrected = [e for e in day_f_events() if e["post_id"] != "fp2"]
    corrected += [event(6, "like", "fu3", F, "fp1"), event(7, "like", "fu4", F, "fp1")]
    lake.replace_partitions(INTERACTIONS, corrected, [F], settings=stack)
    compute_engagement(online, stack, F)

    # the old parquet files of partition F are still on disk; the Delta log says they are removed
    rows = [r for r in offline_rows(stack, "post_engagement", "post_id") if r["post_id"] in ("fp1", "fp2")]
    assert [(r["post_id"], r["likes_1d"]) for r in rows] == [("fp1", 3)]

    result = features.materialize(stack, *window(F))
    assert result["post_engagement"]["overwrite"] is True  # rerun of the latest day: replace in Redis
    assert features.get_post_stats(stack, "fp1")["likes_1d"] == 3


def test_backfill_of_an_older_day_keeps_newer_online_values(stack, online):
    from assets.engagement.spark_features import compute_engagement
    from socialpulse import features

    older = F - dt.timedelta(days=1)
    compute_engagement(online, stack, older)  # fp1 on F-1: views_7d = 1 (only the F-2 view)
    before = features.get_post_stats(stack, "fp1")
    assert before["views_7d"] == 3
    result = features.materialize(stack, *window(older))
    assert result["post_engagement"]["overwrite"] is False and result["post_engagement"]["rows"] == 1
    assert features.get_post_stats(stack, "fp1") == before


def test_online_read_latency(stack, online):
    from socialpulse import features

    features.get_post_stats(stack, "fp1")  # warm: registry and Redis connection
    timings = []
    for _ in range(20):
        t0 = time.perf_counter()
        features.get_post_stats(stack, "fp1")
        timings.append(time.perf_counter() - t0)
    median_ms = sorted(timings)[len(timings) // 2] * 1000
    print(f"get_post_stats median latency: {median_ms:.2f} ms")
    assert median_ms < 50


def test_serving_path_imports_no_lake_or_orchestration_engines(stack, online):
    code = (
        "import json, sys\n"
        "from socialpulse.settings import get_settings\n"
        "from socialpulse.features import get_post_stats\n"
        "stats = get_post_stats(get_settings(), 'fp1')\n"
        "bad = sorted({m.split('.')[0] for m in sys.modules} & {'deltalake', 'dagster', 'dbt', 'pyspark'})\n"
        "print(json.dumps({'views_1d': stats['views_1d'], 'bad': bad}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report == {"views_1d": 2, "bad": []}


def test_an_unapplied_registry_says_what_to_run(stack, tmp_path):
    from socialpulse.features import FeatureStoreNotReady, clear_cache, get_post_stats

    fresh = stack.model_copy(update={"home": tmp_path / "fresh-home"})
    try:
        with pytest.raises(FeatureStoreNotReady, match="post_stats_v1 is not registered yet: materialize"):
            get_post_stats(fresh, "p1")
    finally:
        clear_cache()
