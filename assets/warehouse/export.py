"""Bronze export: copy bronze Delta partitions into Postgres schema ``bronze`` for dbt and analysts.

Pure functions over ``Settings``. Each export replaces exactly its slice (one ``event_date`` day, or the
whole table for unpartitioned ones) in a single transaction, so a retry or a re-run never duplicates.
Delta is read with delta-rs directly (dagster-deltalake's IO manager filters daily windows wrongly).
"""

from __future__ import annotations

import datetime as dt

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from socialpulse.contracts import BRONZE, TableContract
from socialpulse import lake
from socialpulse.lake import with_missing_columns
from socialpulse.settings import Settings
from socialpulse.stores.postgres import copy_arrow, pg_type

SCHEMA = "bronze"

#: bronze tables that dbt reads (the dead-letter table stays in the lake)
EXPORTED_TABLES: tuple[str, ...] = ("users", "posts", "media", "interactions", "comments", "follows")
PARTITIONED_TABLES: tuple[str, ...] = tuple(t for t in EXPORTED_TABLES if BRONZE[t].partition_by)
UNPARTITIONED_TABLES: tuple[str, ...] = tuple(t for t in EXPORTED_TABLES if not BRONZE[t].partition_by)


def table_ddl(contract: TableContract, schema: str = SCHEMA) -> sql.Composed:
    """``CREATE TABLE IF NOT EXISTS`` for a contract: its columns, NOT NULLs and the key as primary key."""
    columns = [
        sql.SQL("{} {}{}").format(
            sql.Identifier(f.name),
            sql.SQL(pg_type(f.type)),
            sql.SQL("" if f.nullable else " NOT NULL"),
        )
        for f in contract.schema
    ]
    columns.append(sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, contract.key))))
    return sql.SQL("CREATE TABLE IF NOT EXISTS {}.{} ({})").format(
        sql.Identifier(schema), sql.Identifier(contract.name), sql.SQL(", ").join(columns)
    )


def ensure_bronze_table(conn: psycopg.Connection, table: str) -> None:
    """Create ``bronze.<table>`` from its contract, or add contract columns it lacks (commits)."""
    contract = _contract(table)
    # exports of several days run in parallel (backfills); concurrent CREATE ... IF NOT EXISTS can collide
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{SCHEMA}.{table}",))
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
    conn.execute(table_ddl(contract))
    existing = {
        r[0]
        for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
            (SCHEMA, table),
        )
    }
    # a contract that grew a (nullable) column; ALTER only when needed, it takes an exclusive lock
    for f in (f for f in contract.schema if f.name not in existing):
        conn.execute(
            sql.SQL("ALTER TABLE {}.{} ADD COLUMN IF NOT EXISTS {} {}").format(
                sql.Identifier(SCHEMA), sql.Identifier(table), sql.Identifier(f.name), sql.SQL(pg_type(f.type))
            )
        )
    index = f"{contract.name}_{contract.partition_by[0]}_idx" if contract.partition_by else None
    if index and conn.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.{index}",)).fetchone()[0] is None:
        # the per-day delete must not scan the whole table
        conn.execute(
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {}.{} ({})").format(
                sql.Identifier(index),
                sql.Identifier(SCHEMA),
                sql.Identifier(contract.name),
                sql.Identifier(contract.partition_by[0]),
            )
        )
    conn.commit()


def _contract(table: str) -> TableContract:
    if table not in EXPORTED_TABLES:
        raise KeyError(f"bronze table {table!r} is not exported; exported: {list(EXPORTED_TABLES)}")
    return BRONZE[table]


def latest_per_key(table: pa.Table, key: tuple[str, ...], order_by: str = "created_at") -> pa.Table:
    """Keep one row per key: the one with the greatest ``order_by`` (the last one on ties)."""
    if table.num_rows == 0:
        return table
    indexed = table.append_column("__row", pa.array(range(table.num_rows), pa.int64()))
    order = pc.sort_indices(
        indexed, sort_keys=[*((k, "ascending") for k in key), (order_by, "descending"), ("__row", "descending")]
    )
    ordered = indexed.take(order)
    keys = ordered.select(list(key))
    if len(key) == 1:
        same_as_previous = pc.equal(keys[key[0]][1:], keys[key[0]][:-1])
    else:
        same_as_previous = pc.and_(*(pc.equal(keys[k][1:], keys[k][:-1]) for k in key))
    first = pa.concat_arrays([pa.array([True]), pc.invert(same_as_previous.combine_chunks())])
    return ordered.filter(first).drop_columns(["__row"])


def read_bronze_day(settings: Settings, table: str, day: dt.date) -> pa.Table:
    """One ``event_date`` partition of a bronze table (an empty table if the table does not exist)."""
    return _read_bronze(settings, table, [("event_date", "=", day)])


def read_bronze_all(settings: Settings, table: str) -> pa.Table:
    return _read_bronze(settings, table)


def _read_bronze(settings: Settings, table: str, filters=None) -> pa.Table:
    """Rows of a bronze table in its contract's schema (columns added since a row was written come back null)."""
    contract = _contract(table)
    return with_missing_columns(contract, lake.read(contract, settings=settings, filters=filters)).cast(contract.schema)


def export_bronze_partition(settings: Settings, table: str, day: dt.date | str) -> int:
    """Replace one ``event_date`` day of ``bronze.<table>`` in Postgres with that Delta partition.

    Delete and COPY run in one transaction: readers see the old day or the new day, never a mix.
    Returns the number of rows exported.
    """
    contract = _contract(table)
    if not contract.partition_by:
        raise ValueError(f"bronze.{table} is not partitioned; use export_bronze_table")
    day = dt.date.fromisoformat(day) if isinstance(day, str) else day
    # ingest is idempotent by key, but a loader re-run may still leave a duplicate: keep the latest
    rows = latest_per_key(read_bronze_day(settings, table, day), contract.key)
    target = sql.SQL("{}.{}").format(sql.Identifier(SCHEMA), sql.Identifier(table))
    with psycopg.connect(settings.postgres, connect_timeout=5) as conn:
        ensure_bronze_table(conn, table)
        with conn.transaction():
            conn.execute(sql.SQL("DELETE FROM {} WHERE event_date = %s").format(target), (day,))
            n = copy_arrow(conn, target, rows)
    return n


def export_bronze_table(settings: Settings, table: str) -> int:
    """Replace the whole of an unpartitioned ``bronze.<table>`` (users: the latest row per user_id)."""
    contract = _contract(table)
    if contract.partition_by:
        raise ValueError(f"bronze.{table} is partitioned by day; use export_bronze_partition")
    rows = latest_per_key(read_bronze_all(settings, table), contract.key)
    target = sql.SQL("{}.{}").format(sql.Identifier(SCHEMA), sql.Identifier(table))
    with psycopg.connect(settings.postgres, connect_timeout=5) as conn:
        ensure_bronze_table(conn, table)
        with conn.transaction():
            # DELETE rather than TRUNCATE: readers keep seeing the old rows until the commit
            conn.execute(sql.SQL("DELETE FROM {}").format(target))
            n = copy_arrow(conn, target, rows)
    return n
