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
