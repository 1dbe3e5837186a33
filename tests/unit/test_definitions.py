"""The Dagster code location loads cleanly and its asset graph has the promised shape.

Both run in subprocesses with their own state folder: definitions read the settings once at import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SNAPSHOT = r"""
import json
import dagster as dg
from orchestration.definitions import defs
from assets.common import daily_partitions
graph = defs.resolve_asset_graph()
out = {"assets": {}, "jobs": sorted(j.name for j in defs.jobs),
       "job_assets": {name: sorted(k.to_user_string() for k in defs.resolve_job_def(name).asset_layer.selected_asset_keys)
                      for name in ("daily_refresh_job", "dimensions_refresh_job", "moderation_job", "text_model_job",
                                   "content_job", "interest_job", "trends_job", "hashtag_stats_job", "captions_job")}, "sensors": sorted(s.name for s in defs.sensors),
       "schedules": sorted(s.name for s in defs.schedules), "resources": sorted(defs.resources),
       "checks": sorted(k.to_user_string() for k in graph.asset_check_keys)}
for key in graph.get_all_asset_keys():
    node = graph.get(key)
    if node.is_external:
        continue
    out["assets"][key.to_user_string()] = {
        "group": node.group_name, "owners": list(node.owners), "kinds": sorted(node.kinds),
        "description": node.description or "", "daily": node.partitions_def == daily_partitions,
        "backfill": str(node.backfill_policy) if node.backfill_policy else None,
        "deps": sorted(k.to_user_string() for k in node.parent_keys),
    }
print(json.dumps(out))
"""


def _env(tmp_path) -> dict:
    env = dict(os.environ)
    env["SOCIALPULSE_HOME"] = str(tmp_path / "home")
    env["DAGSTER_HOME"] = str(tmp_path / "dagster")
    (tmp_path / "dagster").mkdir()
    return env


def test_dagster_definitions_validate(tmp_path):
    r = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-m", "orchestration.definitions"],
        cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("defs")
    r = subprocess.run([sys.executable, "-c", SNAPSHOT], cwd=ROOT, env=_env(tmp), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_every_store_has_a_resource(snapshot):
    assert {"lake", "postgres", "redis", "spark", "mlflow", "settings", "dbt"} <= set(snapshot["resources"])


def test_the_spine_assets_exist(snapshot):
    assets = snapshot["assets"]
    for key in [
        "lake/bronze/posts", "lake/bronze/interactions", "lake/bronze/users",
        "lake/gold/post_engagement_daily", "lake/gold/user_engagement_daily",
        "feast/online/post_engagement", "postgres/bronze/interactions", "postgres/metrics/creator_metrics_daily",
    ]:
        assert key in assets, f"{key} missing; have {sorted(assets)}"
    assert any(k.startswith("postgres/dbt/stg_bronze__") for k in assets)


def test_every_asset_is_documented_owned_and_typed(snapshot):
    for key, a in snapshot["assets"].items():
        assert a["group"] and a["group"] != "default", key
        assert a["owners"], key
        assert a["kinds"], key
        assert a["description"].strip(), key


def test_event_derived_assets_are_daily_with_a_backfill_policy(snapshot):
    for key in ("lake/gold/post_engagement_daily", "feast/online/post_engagement", "postgres/bronze/interactions",
                "postgres/metrics/creator_metrics_daily"):
        assert snapshot["assets"][key]["daily"], key
        assert snapshot["assets"][key]["backfill"], key


def test_schedules_sensor_and_jobs(snapshot):
    assert "ingest_sensor" in snapshot["sensors"]
    assert {"bronze_ingest_job", "daily_refresh_job", "dimensions_refresh_job"} <= set(snapshot["jobs"])
    assert "daily_refresh_job_schedule" in snapshot["schedules"]
    assert any(c.startswith("lake/bronze/") for c in snapshot["checks"])


def test_moderation_assets_jobs_and_sensor(snapshot):
    assets = snapshot["assets"]
    for key in ("lake/silver/moderation_scores", "lake/gold/moderation_decisions", "postgres/moderation/decisions"):
        assert assets[key]["daily"] and assets[key]["backfill"] and assets[key]["group"] == "moderation", key
    assert not assets["mlflow/moderation/text_model"]["daily"]
    assert "moderation_sensor" in snapshot["sensors"] and "moderation_job_schedule" in snapshot["schedules"]
    jobs = snapshot["job_assets"]
    assert jobs["moderation_job"] == ["lake/gold/moderation_decisions", "lake/silver/moderation_scores",
                                      "postgres/moderation/decisions"]
    assert jobs["text_model_job"] == ["mlflow/moderation/text_model"]
    # moderation runs on its own triggers: the shared refresh jobs never train or score
    for shared in ("daily_refresh_job", "dimensions_refresh_job"):
        assert not [k for k in jobs[shared] if assets.get(k, {}).get("group") == "moderation"], jobs[shared]
    assert {"lake/silver/moderation_scores:scores_valid", "lake/gold/moderation_decisions:decisions_valid",
            "postgres/moderation/decisions:serving_matches_lake"} <= set(snapshot["checks"])


def test_content_assets_jobs_and_sensor(snapshot):
    assets = snapshot["assets"]
    for key in ("lake/silver/post_embeddings", "postgres/search/post_vectors", "lake/gold/user_interest",
                "postgres/search/user_vectors"):
        assert assets[key]["daily"] and assets[key]["backfill"] and assets[key]["group"] == "content", key
        assert assets[key]["description"] and assets[key]["owners"], key
    jobs = snapshot["job_assets"]
    assert jobs["content_job"] == ["lake/silver/post_embeddings", "postgres/search/post_vectors"]
    assert jobs["interest_job"] == ["lake/gold/user_interest", "postgres/search/user_vectors"]
    # content follows moderation on its own triggers, never inside the shared refresh jobs
    for shared in ("daily_refresh_job", "dimensions_refresh_job"):
        assert not any(k.startswith(("lake/silver/post_embeddings", "postgres/search")) for k in jobs[shared])
    assert "content_sensor" in snapshot["sensors"]
    assert {"content_job_schedule", "interest_job_schedule"} <= set(snapshot["schedules"])
    assert {"lake/silver/post_embeddings:embeddings_valid", "postgres/search/post_vectors:index_matches_lake",
            "lake/gold/user_interest:interest_valid"} <= set(snapshot["checks"])


TRENDS_ASSETS = ["lake/gold/hashtag_cooccurrence", "lake/gold/trend_scores", "lake/gold/trending_topics",
                 "lake/silver/term_hourly", "postgres/trends/hashtag_cooccurrence", "postgres/trends/hashtag_scores",
                 "postgres/trends/topics"]


def test_trends_assets_job_and_hourly_schedule(snapshot):
    assets = snapshot["assets"]
    for key in TRENDS_ASSETS:
        assert assets[key]["daily"] and assets[key]["backfill"] and assets[key]["group"] == "trends", key
        assert assets[key]["description"] and assets[key]["owners"], key
    assert "spark" in assets["lake/silver/term_hourly"]["kinds"]
    jobs = snapshot["job_assets"]
    assert sorted(jobs["trends_job"] + jobs["hashtag_stats_job"]) == TRENDS_ASSETS
    assert jobs["hashtag_stats_job"] == ["lake/gold/hashtag_cooccurrence", "postgres/trends/hashtag_cooccurrence"]
    # trends run hourly on their own job, after moderation and content, never in the shared refresh jobs
    for shared in ("daily_refresh_job", "dimensions_refresh_job"):
        assert not set(jobs[shared]) & set(TRENDS_ASSETS)
    assert {"trends_hourly_schedule", "hashtag_stats_job_schedule"} <= set(snapshot["schedules"])
    assert {"lake/gold/trend_scores:scores_valid", "lake/gold/trending_topics:topics_valid"} <= set(snapshot["checks"])


DBT_MARTS = ["fct_creator_audience_daily", "fct_creator_daily_performance", "fct_creator_moderation_outcomes",
             "fct_follower_growth", "fct_post_daily_engagement", "fct_post_performance"]


def test_dbt_models_run_per_day_with_their_sources_drawn_from_the_producing_assets(snapshot):
    assets, jobs = snapshot["assets"], snapshot["job_assets"]
    dbt_keys = sorted(k for k in assets if k.startswith("postgres/dbt/"))
    assert [k for k in dbt_keys if k.startswith("postgres/dbt/fct_")] == [f"postgres/dbt/{m}" for m in DBT_MARTS]
    for key in dbt_keys:
        assert assets[key]["daily"] and assets[key]["backfill"] and assets[key]["group"] == "warehouse", key
    # a day's refresh exports that day and then builds it in dbt; the users dimension is exported before the days
    assert set(dbt_keys) <= set(jobs["daily_refresh_job"])
    assert jobs["dimensions_refresh_job"] == ["postgres/bronze/users"]
    deps = {k.removeprefix("postgres/dbt/"): assets[k]["deps"] for k in dbt_keys}
    assert deps["stg_bronze__users"] == ["postgres/bronze/users"]
    assert deps["stg_metrics__creator_daily"] == ["postgres/metrics/creator_metrics_daily"]
    assert deps["stg_moderation__decisions"] == ["postgres/moderation/decisions"]
    assert deps["int_post_interactions__enriched"] == [
        "postgres/dbt/stg_bronze__interactions", "postgres/dbt/stg_bronze__posts", "postgres/dbt/stg_bronze__users"]
    assert deps["fct_creator_audience_daily"] == ["postgres/dbt/int_post_interactions__enriched"]
    assert deps["fct_creator_moderation_outcomes"] == ["postgres/dbt/stg_moderation__decisions",
                                                       "postgres/dbt/stg_moderation__review_queue"]
    checks = [c for c in snapshot["checks"] if c.startswith("postgres/dbt/fct_creator_audience_daily:")]
    assert any("accepted_values" in c and "age_band" in c for c in checks), checks


def test_dbt_build_arguments_name_the_partition_day():
    from assets.warehouse.dbt_assets import build_args

    assert build_args("2026-06-01") == ["build", "--vars", '{"day": "2026-06-01"}']
    with pytest.raises(ValueError):
        build_args("2026-06-01; drop table x")


def test_dbt_counts_a_completion_as_the_metrics_do():
    import yaml

    from socialpulse.metrics import COMPLETION_SHARE

    project = yaml.safe_load((ROOT / "dbt" / "dbt_project.yml").read_text())
    assert project["vars"]["completion_share"] == COMPLETION_SHARE


def test_notifications_asset_job_and_sensor(snapshot):
    asset = snapshot["assets"]["postgres/notifications/from_assets"]
    assert asset["daily"] and asset["backfill"] and asset["group"] == "notifications"
    # derived from the metrics: it runs in the shared refreshes (today's partition every 15 minutes)
    assert "postgres/notifications/from_assets" in snapshot["job_assets"]["daily_refresh_job"]
    assert "notification_delivery_job" in snapshot["jobs"] and "notification_delivery_sensor" in snapshot["sensors"]


def test_the_audience_mart_has_the_columns_and_age_bands_the_dashboard_reads():
    import yaml

    from socialpulse import audience

    marts = yaml.safe_load((ROOT / "dbt" / "models" / "marts" / "_marts__models.yml").read_text())
    model = next(m for m in marts["models"] if m["name"] == "fct_creator_audience_daily")
    columns = {c["name"]: c for c in model["columns"]}
    assert list(columns) == ["creator_id", "activity_date", "country", "age_band", *audience.FIGURES]
    bands = next(t["accepted_values"]["arguments"]["values"] for t in columns["age_band"]["data_tests"]
                 if isinstance(t, dict) and "accepted_values" in t)
    assert tuple(bands) == audience.AGE_BANDS
    assert model["config"]["contract"]["enforced"]


CAPTIONS_ASSETS = ["lake/silver/media_labels", "lake/gold/post_captions", "postgres/captions/post_captions",
                   "lake/gold/captions_evaluation"]


def test_captions_assets_job_sensor_and_checks(snapshot):
    assets = snapshot["assets"]
    for key in CAPTIONS_ASSETS:
        assert assets[key]["daily"] and assets[key]["backfill"] and assets[key]["group"] == "captions", key
        assert assets[key]["description"] and assets[key]["owners"], key
    assert "lake/silver/moderation_scores" in assets["lake/gold/post_captions"]["deps"]
    assert "lake/silver/media_labels" in assets["lake/gold/post_captions"]["deps"]
    assert snapshot["job_assets"]["captions_job"] == ["lake/gold/post_captions", "lake/silver/media_labels",
                                                      "postgres/captions/post_captions"]
    # captions follow moderation on their own triggers (EfficientNet never runs in the shared refresh lane)
    for shared in ("daily_refresh_job", "dimensions_refresh_job"):
        assert not set(snapshot["job_assets"][shared]) & set(CAPTIONS_ASSETS), shared
    assert "captions_sensor" in snapshot["sensors"]
    assert {"captions_job_schedule", "captions_evaluation_job_schedule"} <= set(snapshot["schedules"])
    assert {"lake/gold/post_captions:captions_valid",
            "postgres/captions/post_captions:captions_serving_matches_lake"} <= set(snapshot["checks"])
