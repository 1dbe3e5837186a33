"""Postgres: connections, the one-off database bootstrap, capability probes, and COPY of rows and Arrow."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pyarrow as pa
from psycopg import sql

from socialpulse.settings import Settings

EXTENSIONS = ("vector", "pg_trgm")


def _with_db(dsn: str, db: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + db))


@contextmanager
def connect(settings: Settings, *, autocommit: bool = False, dsn: str | None = None):
    with psycopg.connect(dsn or settings.postgres, autocommit=autocommit, connect_timeout=5) as conn:
        yield conn


def bootstrap_database(settings: Settings) -> None:
    """Create the project database and its extensions if missing (idempotent)."""
    if settings.postgres_dsn is None:
        admin = _with_db(settings.postgres, "postgres")
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (settings.postgres_db,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{settings.postgres_db}"')
    with connect(settings, autocommit=True) as conn:
        for ext in EXTENSIONS:
            conn.execute(f"CREATE EXTENSION IF NOT EXISTS {ext}")


def has_extension(conn: psycopg.Connection, name: str) -> bool:
    """Whether an extension is installed in this database, or available to install."""
    row = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = %s", (name,)).fetchone()
    return row is not None


def relation_exists(conn: psycopg.Connection, name: str) -> bool:
    """Whether a table or index (``schema.name``) exists: readers answer "not built yet" instead of failing."""
    return conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0] is not None


#: Arrow type tests and the Postgres column type each maps to (lists map to arrays of their item's type)
_PG_TYPES = (
    (pa.types.is_string, "text"), (pa.types.is_large_string, "text"), (pa.types.is_date32, "date"),
    (pa.types.is_float32, "real"), (pa.types.is_float64, "double precision"), (pa.types.is_int64, "bigint"),
    (pa.types.is_int32, "integer"), (pa.types.is_int16, "smallint"), (pa.types.is_boolean, "boolean"),
)


def pg_type(arrow_type: pa.DataType) -> str:
    """The Postgres column type of an Arrow type (what the bronze, metrics and other COPY targets declare)."""
    if pa.types.is_timestamp(arrow_type):
        return "timestamptz" if arrow_type.tz else "timestamp"
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return pg_type(arrow_type.value_type) + "[]"
    for is_type, name in _PG_TYPES:
        if is_type(arrow_type):
            return name
    raise TypeError(f"no Postgres type for Arrow type {arrow_type}")


def copy_rows(conn: psycopg.Connection, table: str | sql.Composable, columns: Sequence[str],
              rows: Iterable[Sequence], types: Sequence[str] | None = None) -> int:
    """``COPY`` rows (sequences in ``columns`` order) into ``table`` (``schema.name`` or a composed
    identifier); binary when the Postgres ``types`` are given, text otherwise. Returns the rows copied."""
    target = sql.SQL(table) if isinstance(table, str) else table
    statement = sql.SQL("COPY {} ({}) FROM STDIN{}").format(
        target, sql.SQL(", ").join(map(sql.Identifier, columns)), sql.SQL(" (FORMAT BINARY)" if types else ""))
    n = 0
    with conn.cursor() as cur, cur.copy(statement) as copy:
        if types:
            copy.set_types(list(types))
        for row in rows:
            copy.write_row(row)
            n += 1
    return n


def upsert_rows(conn: psycopg.Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence],
                key: str = "post_id") -> int:
    """Insert or replace ``rows`` (sequences in ``columns`` order) of ``table`` by ``key``; returns how many."""
    rows = list(rows)
    if not rows:
        return 0
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c != key)
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))}) "
                        f"ON CONFLICT ({key}) DO UPDATE SET {updates}", rows)
    return len(rows)


def copy_arrow(conn: psycopg.Connection, table: str | sql.Composable, rows: pa.Table) -> int:
    """Binary ``COPY`` of an Arrow table into the same-named columns of ``table``, typed by :func:`pg_type`."""
    if rows.num_rows == 0:
        return 0

    def tuples():
        for batch in rows.to_batches(max_chunksize=50_000):
            yield from zip(*(col.to_pylist() for col in batch.columns))

    return copy_rows(conn, table, rows.schema.names, tuples(), [pg_type(f.type) for f in rows.schema])
