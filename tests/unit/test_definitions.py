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
                                   "content_job", "interest_job", "trends_job", "hashtag_stats_job")}, "sensors": sorted(s.name for s in defs.sensors),
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
        assert not any("moderation" in k for k in jobs[shared]), jobs[shared]
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
