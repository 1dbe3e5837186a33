"""Shared asset-check builders. ``bronze_asset_checks`` runs the bronze GX suites as blocking checks."""

from collections.abc import Iterable

import dagster as dg
import pyarrow as pa

from assets.common import bronze_key
from orchestration.resources import SettingsResource
from quality.bronze import validate_bronze
from socialpulse.contracts import BRONZE
from socialpulse.lake import open_table, table_uri, with_missing_columns
from socialpulse.settings import Settings

#: bronze tables with a suite (the dead-letter table holds rejected records by design)
CHECKED_TABLES: tuple[str, ...] = ("users", "posts", "media", "interactions", "comments", "follows")
RECENT_DAYS = 3
MAX_ROWS = 200_000


def read_recent(
    settings: Settings, table: str, days: int = RECENT_DAYS, max_rows: int = MAX_ROWS
) -> tuple[pa.Table, list[str]]:
    """The rows to validate: the latest ``days`` partitions (or the whole unpartitioned table), at most
    ``max_rows``; also the partition days read."""
    contract = BRONZE[table]
    delta = open_table(table_uri(contract, settings))
    if delta is None:
        return contract.schema.empty_table(), []
    partitions = None
    recent: list[str] = []
    if contract.partition_by:
        column = contract.partition_by[0]
        recent = sorted({p[column] for p in delta.partitions() if p.get(column) is not None})[-days:]
        if not recent:
            return contract.schema.empty_table(), []
        partitions = [(column, "in", recent)]
    dataset = delta.to_pyarrow_dataset(partitions=partitions)
    present = [n for n in contract.schema.names if n in dataset.schema.names]
    return with_missing_columns(contract, dataset.head(max_rows, columns=present)), recent


def _bronze_check(table: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=bronze_key(table),
        name="bronze_expectations",
        blocking=True,
        description=f"Great Expectations suite bronze_{table} over the latest {RECENT_DAYS} days "
        f"(at most {MAX_ROWS} rows).",
    )
    def _check(settings: SettingsResource) -> dg.AssetCheckResult:
        rows, days = read_recent(settings.get(), table)
        result = validate_bronze(table, rows)
        return dg.AssetCheckResult(
            passed=result.success,
            severity=dg.AssetCheckSeverity.ERROR,
            description="; ".join(result.failures[:5]) or None,
            metadata={
                "rows_checked": result.rows,
                "days_checked": dg.MetadataValue.json(days),
                "failures": dg.MetadataValue.json(result.failures),
                "success_percent": float(result.statistics.get("success_percent", 100.0) or 0.0),
                "evaluated_expectations": int(result.statistics.get("evaluated_expectations", 0)),
            },
        )

    return _check


def bronze_asset_checks(tables: Iterable[str] = CHECKED_TABLES) -> list[dg.AssetChecksDefinition]:
    """One blocking GX check per bronze asset (``["lake","bronze",<table>]``)."""
    return [_bronze_check(t) for t in tables]
