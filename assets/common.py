"""Shared Dagster pieces for every domain: the daily partitions and bronze asset keys."""

from __future__ import annotations

import dagster as dg

from socialpulse.contracts import BRONZE
from socialpulse.settings import get_settings

#: every event-derived asset is partitioned by UTC day
daily_partitions = dg.DailyPartitionsDefinition(start_date=get_settings().partitions_start, timezone="UTC", end_offset=1)

#: backfills run one day per run (each day is replaced by its own partition predicate)
daily_backfill = dg.BackfillPolicy.multi_run(max_partitions_per_run=1)


def bronze_key(table: str) -> dg.AssetKey:
    if table not in BRONZE:
        raise KeyError(f"unknown bronze table {table!r}; known: {sorted(BRONZE)}")
    return dg.AssetKey(["lake", "bronze", table])
