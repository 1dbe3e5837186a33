"""Bronze tables as Dagster assets, materialized by draining the ingest streams in micro-batches.

The drain (socialpulse.drain) commits each batch to Delta with its stream offset recorded in the same
commit and acknowledges the stream only afterwards, so a retried run never duplicates or loses a record.
Batch loaders (`socialpulse load ...`) write the same tables and report materializations without a run.
"""


import dagster as dg

from assets.common import SENSOR_INTERVAL_S, active_run, bronze_key, lane
from orchestration.resources import RedisResource, SettingsResource
from quality.checks import bronze_asset_checks
from socialpulse.contracts import BRONZE


@dg.multi_asset(
    name="bronze_from_streams",
    specs=[
        dg.AssetSpec(
            bronze_key(name),
            description=BRONZE[name].description,
            group_name="ingest",
            kinds={"delta", "redis"},
            owners=["team:data-eng"],
            skippable=True,
        )
        for name in BRONZE
    ],
    can_subset=False,
)
def bronze_from_streams(context: dg.AssetExecutionContext, settings: SettingsResource, redis: RedisResource):
    """Drain ingest:events and ingest:posts into the bronze Delta tables (exactly once per record)."""
    from socialpulse.drain import LOCK_WAIT_S, drain_all

    # a drain that died (kill -9, a lost pod) leaves its lock until it expires: wait for it rather than fail
    result = drain_all(settings.get(), redis.client(), wait_s=LOCK_WAIT_S)
    context.log.info(f"drained: {result}")
    for name in BRONZE:
        rows = result.rows.get(name, 0)
        if rows:
            yield dg.MaterializeResult(
                asset_key=bronze_key(name),
                metadata={"rows_appended": rows, "last_stream_id": str(result.last_entry_id or "")},
            )


bronze_ingest_job = dg.define_asset_job(
    "bronze_ingest_job",
    # the expectation suites scan recent partitions: they run on their own schedule, not per micro-batch
    selection=dg.AssetSelection.assets(bronze_from_streams).without_checks(),
    description="Drain the Redis ingest streams into bronze Delta (run by ingest_sensor).",
    tags={"dagster/max_runtime": "600", **lane("ingest")},
    # a single step: running it in the run's own process saves a second process start per micro-batch
    executor_def=dg.in_process_executor,
)

@dg.sensor(
    job=bronze_ingest_job,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launch a drain run whenever the ingest streams hold records not yet in Delta.",
)
def ingest_sensor(context: dg.SensorEvaluationContext, redis: RedisResource):
    from socialpulse.drain import stream_backlog

    backlog = stream_backlog(redis.client())
    waiting = sum(backlog.values())
    if not waiting:
        return dg.SkipReason("ingest streams are drained")
    # one drain at a time: a second run would only contend for the same batches
    active = active_run(context.instance, bronze_ingest_job.name)
    if active:
        return dg.SkipReason(f"{waiting} records waiting; drain run {active.run_id} still active")
    context.log.info(f"{waiting} records waiting: {backlog}")
    return dg.RunRequest(tags={"socialpulse/backlog": str(waiting)})


bronze_quality_job = dg.define_asset_job(
    "bronze_quality_job",
    selection=dg.AssetSelection.checks_for_assets(bronze_from_streams),
    description="Run the Great Expectations suites over the recent bronze partitions.",
    tags=lane("quality"),
)

bronze_quality_schedule = dg.ScheduleDefinition(
    name="bronze_quality_schedule",
    cron_schedule="5 * * * *",
    job=bronze_quality_job,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

ASSETS = [bronze_from_streams]
#: Great Expectations suites over recent bronze partitions (blocking where a run materializes bronze)
ASSET_CHECKS = bronze_asset_checks()
JOBS = [bronze_ingest_job, bronze_quality_job]
SCHEDULES = [bronze_quality_schedule]
SENSORS = [ingest_sensor]
