"""Shared Dagster pieces for every domain: the daily partitions, bronze asset keys, a partition's day and
table rows, and the result of a blocking check."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pyarrow as pa

from socialpulse import lake
from socialpulse.contracts import BRONZE, TableContract
from socialpulse.settings import get_settings

#: every event-derived asset is partitioned by UTC day
daily_partitions = dg.DailyPartitionsDefinition(start_date=get_settings().partitions_start, timezone="UTC", end_offset=1)

#: backfills run one day per run (each day is replaced by its own partition predicate)
daily_backfill = dg.BackfillPolicy.multi_run(max_partitions_per_run=1)

#: seconds between ticks of the sensors (a setting; the live test tier shortens it): a sensor only decides,
#: the run it launches does the work
SENSOR_INTERVAL_S = get_settings().sensor_interval_s

#: the run tag the run coordinator queues by: each lane runs one run at a time, lanes run side by side (so a
#: long refresh never holds back the drain, moderation or indexing of new uploads); see dagster_home.py
LANE_TAG = "socialpulse/lane"


def lane(name: str) -> dict[str, str]:
    return {LANE_TAG: name}


#: run states that count as "still going" when a sensor or schedule decides whether to launch another
ACTIVE_RUN_STATUSES = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
                       dg.DagsterRunStatus.STARTED]


def active_run(instance: dg.DagsterInstance, job_name: str, partition: str | None = None):
    """The newest queued or running run of ``job_name`` (for one partition when given), or None."""
    tags = {"dagster/partition": partition} if partition else {}
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=job_name, statuses=ACTIVE_RUN_STATUSES, tags=tags),
                             limit=1)
    return runs[0] if runs else None


def runs_per_new_day(context: dg.SensorEvaluationContext, upstream: dg.AssetKey, job_name: str, what: str,
                     fresh=None):
    """A sensor's answer to new materializations of ``upstream`` since its cursor: one run of ``job_name`` per day
    they touched (run key ``<what>-<day>-<newest storage id>``). A day whose run is still active waits, and the
    cursor never moves past its records (the next tick picks them up; a re-requested run key is deduplicated by
    Dagster). ``fresh(instance, day, storage_id)`` true: the day is already up to date after those records."""
    after = int(context.cursor or 0)
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=upstream, after_storage_id=after), limit=100, ascending=True).records
    if not records:
        return dg.SkipReason(f"no new {upstream.to_user_string()} since the last {what} run")
    requests, blocked = [], []
    for day in sorted({r.partition_key for r in records if r.partition_key}):
        ids = [r.storage_id for r in records if r.partition_key == day]
        if fresh is not None and fresh(context.instance, day, max(ids)):
            continue
        if active_run(context.instance, job_name, day):
            blocked.append(min(ids))
            continue
        requests.append(dg.RunRequest(partition_key=day, run_key=f"{what}-{day}-{max(ids)}"))
    cursor = min(blocked) - 1 if blocked else max(r.storage_id for r in records)
    if not requests:
        if not blocked:  # every day already up to date: nothing to wait for
            context.update_cursor(str(cursor))
            return dg.SkipReason(f"every day of the new {upstream.to_user_string()} is already up to date")
        return dg.SkipReason(f"new {upstream.to_user_string()} wait for a running {what} run to finish")
    context.update_cursor(str(cursor))
    return requests


def bronze_key(table: str) -> dg.AssetKey:
    if table not in BRONZE:
        raise KeyError(f"unknown bronze table {table!r}; known: {sorted(BRONZE)}")
    return dg.AssetKey(["lake", "bronze", table])


def partition_day(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> dt.date:
    """The UTC day of a daily-partitioned run or check."""
    return dt.date.fromisoformat(context.partition_key)


def day_table(contract: TableContract, settings, day: dt.date) -> pa.Table:
    """One ``event_date`` partition of a Delta table (empty when the table does not exist yet)."""
    return lake.read(contract, settings=settings, filters=[("event_date", "=", day)])


def blocking_result(violations: dict[str, int], context, **extra) -> dg.AssetCheckResult:
    """A check that passes when every violation count is zero, with the counts and the partition as metadata."""
    return dg.AssetCheckResult(
        passed=not any(violations.values()),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={**violations, **extra, "partition": context.partition_key},
    )
