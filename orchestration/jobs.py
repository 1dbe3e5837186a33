"""Cross-domain jobs and schedules: the daily refresh of every day-partitioned derived asset."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from assets.common import active_run, daily_partitions, lane
from socialpulse.settings import get_settings


#: domains whose assets run in their own jobs, not in the shared refresh jobs: moderation's are driven by
#: its sensor (new posts) and its own schedule, and its model is trained by text_model_job on demand;
#: content's follow moderation (content_sensor) and a daily interest schedule (models load once per run);
#: trends' run hourly (trends_job, one Spark session per run) after moderation and content; ranking's
#: training set, ranker and serving state run on their own schedules (assets/ranking); virality's model is
#: trained nightly and its predictions refreshed hourly (assets/virality)
OWN_JOB_GROUPS = frozenset({"moderation", "content", "trends", "ranking", "virality", "captions"})


def _shared(a) -> bool:
    return isinstance(a, dg.AssetsDefinition) and not (set(a.group_names_by_key.values()) & OWN_JOB_GROUPS)


def daily_asset_keys(asset_defs) -> list[dg.AssetKey]:
    """Keys of every derived asset partitioned by UTC day (ingest's bronze tables are not derived)."""
    keys = []
    for a in asset_defs:
        if _shared(a) and a.partitions_def == daily_partitions:
            keys.extend(a.keys)
    return keys


def build_jobs_and_schedules(asset_defs) -> tuple[list, list]:
    keys = daily_asset_keys(asset_defs)
    daily_refresh_job = dg.define_asset_job(
        "daily_refresh_job",
        selection=dg.AssetSelection.assets(*keys),
        description="Rebuild one UTC day of every derived asset (features, Feast, Postgres exports, metrics, dbt "
        "models: the incremental marts replace that day's rows).",
        tags=lane("refresh"),
    )
    unpartitioned = [
        k
        for a in asset_defs
        if _shared(a) and a.partitions_def is None
        for k in a.keys
        if k.path[:2] != ["lake", "bronze"]
    ]
    dimensions_job = dg.define_asset_job(
        "dimensions_refresh_job",
        selection=dg.AssetSelection.assets(*unpartitioned),
        description="Refresh unpartitioned derived assets (dimension exports such as bronze.users, which the "
        "day's dbt build joins).",
        tags=lane("refresh"),
    )

    # a day is rebuilt shortly after it closes (UTC), when late events have had time to land
    daily_schedule = dg.build_schedule_from_partitioned_job(
        daily_refresh_job, hour_of_day=0, minute_of_hour=30, default_status=dg.DefaultScheduleStatus.RUNNING
    )

    @dg.schedule(
        name="intraday_refresh_schedule",
        cron_schedule=get_settings().intraday_refresh_cron,
        job=daily_refresh_job,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Refresh today's partition (every 15 minutes by default, SOCIALPULSE_INTRADAY_REFRESH_CRON) so "
        "serving sees recent engagement; a tick is skipped while today's previous refresh is still queued or running.",
    )
    def intraday_schedule(context: dg.ScheduleEvaluationContext):
        today = context.scheduled_execution_time.astimezone(dt.timezone.utc).date().isoformat()
        active = active_run(context.instance, daily_refresh_job.name, today)
        if active:  # a second run would redo the same day behind it
            return dg.SkipReason(f"today's refresh run {active.run_id} is still {active.status.value.lower()}")
        return dg.RunRequest(partition_key=today, run_key=f"intraday-{context.scheduled_execution_time.isoformat()}")

    # before the day's rebuild at 00:30, so the dbt marts join yesterday's new users
    dims_schedule = dg.ScheduleDefinition(
        name="dimensions_refresh_schedule",
        cron_schedule="15 0 * * *",
        job=dimensions_job,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    return [daily_refresh_job, dimensions_job], [daily_schedule, intraday_schedule, dims_schedule]
