"""Delta lake access for small writes, merges and ingestion commits (delta-rs).

Heavy transforms go through Spark Connect (see ``socialpulse.spark``); this module is the one place
that writes bronze, so every write passes its table contract.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import TableNotFoundError
from deltalake.schema import Field

from socialpulse.contracts import BRONZE, ContractError, TableContract, conform
from socialpulse.settings import Settings, get_settings


def table_uri(contract: TableContract, settings: Settings | None = None) -> str:
    return (settings or get_settings()).table_uri(contract.layer, contract.name)


def open_table(uri: str) -> DeltaTable | None:
    try:
        return DeltaTable(uri)
    except TableNotFoundError:
        return None


def ensure_table(contract: TableContract, settings: Settings | None = None) -> DeltaTable:
    """Create the (empty) Delta table of a contract if it does not exist yet, or add the nullable columns the
    contract gained since the table was made (its older rows read them as null); return it."""
    uri = table_uri(contract, settings)
    dt_ = open_table(uri)
    if dt_ is None:
        return DeltaTable.create(
            uri,
            schema=contract.schema,
            partition_by=list(contract.partition_by) or None,
            mode="ignore",
            description=contract.description,
        )
    existing = set(dt_.schema().to_arrow().names)
    missing = [f for f in contract.schema if f.name not in existing]
    if missing:
        required = [f.name for f in missing if not f.nullable]
        if required:
            raise ContractError(f"{contract.name}: the Delta table lacks required column(s) {required}; only "
                                "nullable columns can be added to an existing table")
        dt_.alter.add_columns([Field.from_arrow(f) for f in missing])
        dt_ = DeltaTable(uri)
    return dt_


def ensure_bronze(settings: Settings | None = None) -> None:
    for contract in BRONZE.values():
        ensure_table(contract, settings)


def committed_version(contract: TableContract, app_id: str, settings: Settings | None = None) -> int | None:
    """The last batch version an ingestion app committed to this table (None if never)."""
    dt_ = open_table(table_uri(contract, settings))
    if dt_ is None:
        return None
    return dt_.transaction_version(app_id)


def append(
    contract: TableContract,
    rows: pa.Table | list[dict],
    *,
    settings: Settings | None = None,
    app_id: str | None = None,
    version: int | None = None,
) -> int:
    """Append rows that satisfy the contract; return the number of rows written.

    With ``app_id``/``version`` the batch number is recorded in the same atomic Delta commit, so a
    drain that restarts can tell which batches already landed (``committed_version``).
    """
    table = conform(contract, rows)
    ensure_table(contract, settings)
    props = None
    if app_id is not None:
        if version is None:
            raise ValueError("append: version is required with app_id")
        props = CommitProperties(app_transactions=[Transaction(app_id=app_id, version=version)])
    if table.num_rows == 0 and props is None:
        return 0
    write_deltalake(
        table_uri(contract, settings),
        table,
        mode="append",
        partition_by=list(contract.partition_by) or None,
        commit_properties=props,
    )
    return table.num_rows


def replace_partitions(
    contract: TableContract,
    rows: pa.Table | list[dict],
    days: Iterable[dt.date],
    *,
    settings: Settings | None = None,
) -> int:
    """Replace exactly the given ``event_date`` partitions with ``rows`` (used by batch loaders)."""
    table = conform(contract, rows)
    days = sorted(set(days))
    ensure_table(contract, settings)
    if not days:
        return 0
    predicate = "event_date IN (" + ", ".join(f"'{d.isoformat()}'" for d in days) + ")"
    write_deltalake(
        table_uri(contract, settings),
        table,
        mode="overwrite",
        partition_by=list(contract.partition_by) or None,
        predicate=predicate,
    )
    return table.num_rows


def overwrite(contract: TableContract, rows: pa.Table | list[dict], *, settings: Settings | None = None) -> int:
    """Replace the whole table (used for unpartitioned dimension loads)."""
    table = conform(contract, rows)
    ensure_table(contract, settings)
    write_deltalake(
        table_uri(contract, settings),
        table,
        mode="overwrite",
        partition_by=list(contract.partition_by) or None,
    )
    return table.num_rows


def with_missing_columns(contract: TableContract, data: pa.Table) -> pa.Table:
    """Rows read from a table written before its contract gained a nullable column, in the contract's column
    order with that column as nulls (``ensure_table`` adds it at the next write). A missing required column
    stays missing, for the caller to refuse; nothing is cast or validated."""
    for f in contract.schema:
        if f.nullable and f.name not in data.column_names:
            data = data.append_column(pa.field(f.name, f.type), pa.nulls(data.num_rows, f.type))
    return data.select([n for n in contract.schema.names if n in data.column_names])


def read(contract_or_uri: TableContract | str, *, settings: Settings | None = None, columns=None, filters=None) -> pa.Table:
    uri = contract_or_uri if isinstance(contract_or_uri, str) else table_uri(contract_or_uri, settings)
    dt_ = open_table(uri)
    if dt_ is None:
        if isinstance(contract_or_uri, TableContract):
            return contract_or_uri.schema.empty_table()
        raise FileNotFoundError(f"no Delta table at {uri}")
    return dt_.to_pyarrow_table(columns=columns, filters=filters)
