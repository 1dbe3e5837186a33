"""A user's data in each store: find it (the deletion's plan, the export), and remove it. Every removal is
idempotent: run twice, the second run finds nothing and changes nothing.

Tables, columns and keys are discovered, not listed: every Delta table under the lake folder, every Postgres
table outside the catalog schemas, every Redis key. A new table or key layout is covered as long as it names
users and posts in a column of :data:`~assets.privacy.logic.USER_COLUMNS` / ``POST_COLUMNS`` or holds the ids
in its text.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from psycopg import sql

from assets.privacy import logic
from assets.privacy.logic import Plan
from socialpulse import media as media_store
from socialpulse.ingest import STREAMS, seen_key
from socialpulse.settings import Settings

log = logging.getLogger(__name__)

#: Postgres schemas never swept: the catalogs, the append-only audit log (pseudonyms only), the request store
PG_SKIP_SCHEMAS = ("pg_catalog", "information_schema", "audit", "privacy")
PG_TEXT_TYPES = ("text", "varchar", "bpchar", "name", "citext", "json", "jsonb", "uuid")
#: in a table of more rows than this, a text column with fewer distinct values is an enumeration: not swept
BIG_TABLE_ROWS = 100_000
ENUM_DISTINCT = 1_000
COMMIT_RETRIES = 8


# --- the lake --------------------------------------------------------------------------------------------

def lake_tables(settings: Settings) -> list[str]:
    """Every Delta table under the lake folder (a folder holding ``_delta_log``), sorted."""
    root = Path(settings.lake)
    if not root.is_dir():
        return []
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        if "_delta_log" in dirnames:
            found.append(dirpath)
            dirnames[:] = []  # a table's partitions hold no tables
        else:
            dirnames[:] = [d for d in dirnames if not d.startswith((".", "_"))]
    return sorted(found)


def _open(uri: str) -> DeltaTable | None:
    try:
        return DeltaTable(uri)
    except TableNotFoundError:
        return None


def _string_field(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _string_list(t: pa.DataType) -> bool:
    return (pa.types.is_list(t) or pa.types.is_large_list(t)) and _string_field(t.value_type)


def _f(column: str) -> ds.Expression:
    """A string column as ``string`` (files that delta-rs rewrote hold ``string_view``, which compares with
    nothing else)."""
    return ds.field(column).cast(pa.string())


def _id_filter(schema: pa.Schema, plan: Plan, export: bool = False) -> ds.Expression | None:
    """Rows naming the user (a user column) or their posts (a post column). ``export``: post columns only count
    in tables without a user column (the stats and media of their posts, not other users' views of them)."""
    expr = None
    users = [c for c in logic.user_columns(schema.names) if _string_field(schema.field(c).type)]
    for col in users:
        e = _f(col).isin([plan.user_id])
        expr = e if expr is None else expr | e
    if plan.post_ids and not (export and users):
        for col in logic.post_columns(schema.names):
            if _string_field(schema.field(col).type):
                e = _f(col).isin(plan.post_ids)
                expr = e if expr is None else expr | e
    return expr


def _text_columns(schema: pa.Schema) -> tuple[list[str], list[str]]:
    """(string columns, list-of-string columns) where the user's ids may hide in text: not the id columns
    (user and post columns are matched exactly; other ``*_id`` columns name other things)."""
    strings = [f.name for f in schema if not logic.is_id_column(f.name) and _string_field(f.type)]
    lists = [f.name for f in schema if _string_list(f.type)]
    return strings, lists


def _mention_mask(table: pa.Table, strings: list[str], lists: list[str], regex: str) -> pa.Array:
    import numpy as np

    mask = np.zeros(table.num_rows, dtype=bool)
    for col in strings:
        hit = pc.fill_null(pc.match_substring_regex(table[col].cast(pa.string()), regex), False)
        mask |= np.asarray(hit.to_numpy(zero_copy_only=False), dtype=bool)
    for col in lists:
        values = table[col].cast(pa.list_(pa.string())).combine_chunks()
        flat = pc.list_flatten(values)
        if len(flat) == 0:
            continue
        parents = pc.list_parent_indices(values)
        hit_parents = pc.filter(parents, pc.fill_null(pc.match_substring_regex(flat, regex), False))
        if len(hit_parents):
            mask[np.asarray(hit_parents.to_numpy(zero_copy_only=False), dtype=np.int64)] = True
    return pa.array(mask)


def _retry(fn: Callable[[], Any]) -> Any:
    """A Delta commit, retried when a concurrent writer (the drain, an asset) won the race."""
    for attempt in range(COMMIT_RETRIES):
        try:
            return fn()
        except CommitFailedError:
            if attempt == COMMIT_RETRIES - 1:
                raise
            time.sleep(0.2 * 2 ** attempt)


def _scrub_rows(table: pa.Table, strings: list[str], lists: list[str], matcher) -> pa.Table:
    """Rows without the user: a row whose text mentions them goes; lists lose the matching elements."""
    out = []
    for row in table.to_pylist():
        if any(logic.mentions(row.get(c), matcher) for c in strings):
            continue
        for c in lists:
            if row.get(c):
                row[c] = [v for v in row[c] if not logic.mentions(v, matcher)]
        out.append(row)
    return pa.Table.from_pylist(out, schema=table.schema)


def lake_delete(uri: str, plan: Plan) -> dict[str, int]:
    """Remove the user's rows from one Delta table: rows naming the user or their posts in an id column
    (a Delta DELETE), then rows whose free text names them (their partitions rewritten without them) and ids
    inside list columns (removed from the lists). Returns ``{"rows": n, "rewritten": n}``."""
    dt_ = _open(uri)
    if dt_ is None:
        return {"rows": 0, "rewritten": 0}
    schema = dt_.schema().to_arrow()
    if not isinstance(schema, pa.Schema):
        schema = pa.schema(schema)
    deleted = rewritten = 0
    id_filter = _id_filter(schema, plan)
    if id_filter is not None and dt_.to_pyarrow_dataset().count_rows(filter=id_filter):
        cols = [c for c in logic.user_columns(schema.names) if _string_field(schema.field(c).type)]
        pcols = [c for c in logic.post_columns(schema.names) if _string_field(schema.field(c).type)]
        preds = [p for p in (logic.delta_predicate(cols, [plan.user_id]), logic.delta_predicate(pcols, plan.post_ids))
                 if p]
        result = _retry(lambda: DeltaTable(uri).delete(" OR ".join(preds)))
        deleted += int(result.get("num_deleted_rows", 0) or 0)
    strings, lists = _text_columns(schema)
    if strings or lists:
        dt_ = DeltaTable(uri)
        regex = logic.id_regex(plan.ids)
        parts = dt_.metadata().partition_columns
        data = dt_.to_pyarrow_dataset().to_table(columns=list(dict.fromkeys([*parts, *strings, *lists])))
        mask = _mention_mask(data, strings, lists, regex)
        if pc.any(mask).as_py():
            matcher = logic.id_matcher(plan.ids)
            hit = data.filter(mask)
            if parts:
                keys = {tuple(r[p] for p in parts) for r in hit.select(parts).to_pylist()}
                for key in sorted(keys, key=str):
                    filters = [(p, "=", v) for p, v in zip(parts, key)]
                    rows = dt_.to_pyarrow_table(filters=filters)
                    fixed = _scrub_rows(rows, strings, lists, matcher)
                    predicate = " AND ".join(f'"{p}" = {logic.sql_literal(str(v))}' for p, v in zip(parts, key))
                    _retry(lambda: write_deltalake(uri, fixed, mode="overwrite", partition_by=parts,
                                                   predicate=predicate))
                    deleted += rows.num_rows - fixed.num_rows
                    rewritten += 1
            else:
                rows = dt_.to_pyarrow_table()
                fixed = _scrub_rows(rows, strings, lists, matcher)
                _retry(lambda: write_deltalake(uri, fixed, mode="overwrite"))
                deleted += rows.num_rows - fixed.num_rows
                rewritten += 1
    return {"rows": deleted, "rewritten": rewritten}


def lake_purge_history(uri: str, matcher) -> dict[str, int]:
    """Make removed rows unrecoverable: vacuum every file the current version no longer uses (no retention,
    for real: ``dry_run=False``), checkpoint the current version and remove the log entries before it (old
    commits' add actions carry min/max statistics that can hold a deleted id, and a DELETE commit records its
    predicate). Time travel to versions before the deletion ends here, for every table."""
    dt_ = _open(uri)
    if dt_ is None:
        return {"files": 0, "log_files": 0}
    removed = _retry(lambda: DeltaTable(uri).vacuum(retention_hours=0, dry_run=False,
                                                     enforce_retention_duration=False))
    dt_ = DeltaTable(uri)
    version = dt_.version()
    log_dir = Path(uri) / "_delta_log"
    head = log_dir / f"{version:020d}.json"
    if head.exists() and logic.mentions(head.read_bytes(), matcher):
        # the newest commit names the user (a DELETE's predicate in its commitInfo): keep its actions, drop
        # the informational commitInfo (the table's state does not depend on it)
        lines = [ln for ln in head.read_text().splitlines() if ln.strip() and '"commitInfo"' not in ln]
        tmp = head.with_suffix(".privacy.tmp")
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, head)
        dt_ = DeltaTable(uri)
    dt_.create_checkpoint()
    old = logic.older_log_files(os.listdir(log_dir), version)
    for name in old:
        (log_dir / name).unlink(missing_ok=True)
    return {"files": len(removed), "log_files": len(old)}


def _read_matching(uri: str, expr: ds.Expression, columns: list[str] | None = None) -> pa.Table:
    dt_ = _open(uri)
    if dt_ is None:
        return pa.table({})
    dataset = dt_.to_pyarrow_dataset()
    names = dataset.schema.names
    if columns is not None:
        columns = [c for c in columns if c in names]
    try:
        return dataset.to_table(filter=expr, columns=columns)
    except (pa.ArrowInvalid, KeyError):
        return pa.table({})


def build_plan(settings: Settings, user_id: str) -> Plan:
    """The user's posts (and their media), handles and record ids, from bronze, before anything is removed."""
    bronze = lambda name: settings.table_uri("bronze", name)  # noqa: E731
    plan = Plan(user_id=user_id)
    users = _read_matching(bronze("users"), _f("user_id") == user_id, ["handle"])
    plan.handles = sorted({h for h in users.column("handle").to_pylist() if h}) if users.num_rows else []
    posts = _read_matching(bronze("posts"), _f("author_id") == user_id, ["post_id", "media_uri"])
    plan.post_ids = sorted(set(posts.column("post_id").to_pylist())) if posts.num_rows else []
    media = {}
    if posts.num_rows:
        for uri in posts.column("media_uri").to_pylist():
            if uri:
                media[uri] = None
    if plan.post_ids:
        rows = _read_matching(bronze("media"), _f("post_id").isin(plan.post_ids), ["uri", "sha256"])
        for r in rows.to_pylist():
            media[r["uri"]] = r["sha256"]
    plan.media = [{"uri": u, "sha256": s} for u, s in sorted(media.items())]
    records: set[str] = set()
    for table, column, key in (("interactions", "user_id", "event_id"), ("comments", "user_id", "comment_id"),
                               ("follows", "follower_id", "event_id"), ("impressions", "user_id", "impression_id")):
        got = _read_matching(bronze(table), _f(column) == user_id, [key])
        if got.num_rows:
            records.update(got.column(key).to_pylist())
    plan.record_ids = sorted(records)
    return plan


def lake_export(settings: Settings, plan: Plan) -> Iterator[tuple[str, list[dict]]]:
    """``(table path relative to the lake, rows)`` of every table holding the user's rows."""
    root = Path(settings.lake)
    for uri in lake_tables(settings):
        dt_ = _open(uri)
        schema = dt_.schema().to_arrow()
        expr = _id_filter(pa.schema(schema) if not isinstance(schema, pa.Schema) else schema, plan, export=True)
        if expr is None:
            continue
        rows = dt_.to_pyarrow_dataset().to_table(filter=expr)
        if rows.num_rows:
            yield str(Path(uri).relative_to(root)), rows.to_pylist()


# --- Postgres ----------------------------------------------------------------------------------------------

def pg_tables(conn) -> list[dict]:
    """Every table (and materialized view) outside the skipped schemas, with its columns and their types;
    partitions are reached through their parent."""
    rows = conn.execute(
        """SELECT n.nspname, c.relname, c.relkind, a.attname, t.typname, t.typcategory,
                  coalesce(et.typname, '') AS elem, c.reltuples
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
           JOIN pg_type t ON t.oid = a.atttypid LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A'
           WHERE c.relkind IN ('r', 'p', 'm') AND NOT c.relispartition
             AND n.nspname NOT IN %s AND n.nspname NOT LIKE 'pg_toast%%' AND n.nspname NOT LIKE 'pg_temp%%'
           ORDER BY n.nspname, c.relname, a.attnum""".replace("%s", "(" + ", ".join(
            f"'{s}'" for s in PG_SKIP_SCHEMAS) + ")", 1)).fetchall()
    tables: dict[tuple[str, str], dict] = {}
    for schema, name, kind, col, typ, cat, elem, reltuples in rows:
        t = tables.setdefault((schema, name), {"schema": schema, "name": name, "kind": kind, "columns": {},
                                               "rows": reltuples, "distinct": {}})
        t["columns"][col] = {"type": typ, "category": cat, "elem": elem}
    for schema, name, col, n_distinct in conn.execute(
            "SELECT schemaname, tablename, attname, n_distinct FROM pg_stats WHERE n_distinct > 0"):
        if (schema, name) in tables:
            tables[(schema, name)]["distinct"][col] = n_distinct
    return list(tables.values())


def _is_text(info: dict) -> bool:
    return info["type"] in PG_TEXT_TYPES or info["category"] == "S"


def _sweep_columns(t: dict) -> dict[str, dict]:
    """The columns of a table the sweep reads: JSON, text arrays, and text that is neither an id column
    (matched exactly, or naming other things) nor, in a big table, an enumeration (``event_type``, ``country``:
    fewer than :data:`ENUM_DISTINCT` distinct values by the planner's statistics)."""
    big = (t.get("rows") or 0) > BIG_TABLE_ROWS
    out = {}
    for c, info in t["columns"].items():
        if info["category"] == "A" and info["elem"] in PG_TEXT_TYPES:
            out[c] = info
        elif info["type"] in ("json", "jsonb"):
            out[c] = info
        elif _is_text(info) and not logic.is_id_column(c):
            distinct = (t.get("distinct") or {}).get(c)
            if big and distinct is not None and 0 < distinct < ENUM_DISTINCT:
                continue
            out[c] = info
    return out


def _text_expr(columns: dict[str, dict]) -> sql.Composable | None:
    """The text of a row's text-like columns (not vectors, numbers or bytes), for the sweep."""
    parts = [sql.SQL("coalesce({}::text, '')").format(sql.Identifier(c)) for c, info in columns.items()
             if _is_text(info) or (info["category"] == "A" and info["elem"] in PG_TEXT_TYPES)]
    if not parts:
        return None
    return sql.SQL("concat_ws(' ', {})").format(sql.SQL(", ").join(parts))


def _mentions_sql(text: sql.Composable, plan: Plan) -> sql.Composable:
    """``text`` names one of the plan's ids: its id tokens looked up in the ids (hashed: fast for thousands of
    post ids, where one regex alternation of them took 30x longer), ids with ``:`` by regex."""
    plain, colon = logic.split_ids(plan.ids)
    cond = sql.SQL("EXISTS (SELECT 1 FROM regexp_split_to_table({t}, {split}) tok "
                   "WHERE tok = ANY({ids}::text[]))").format(
        t=text, split=sql.Literal(logic.TOKEN_SPLIT), ids=sql.Literal(plain))
    if colon:
        cond = sql.SQL("({} OR {} ~ {})").format(cond, text, sql.Literal(logic.id_regex(colon)))
    return cond


def _where_ids(t: dict, plan: Plan, export: bool = False) -> sql.Composable | None:
    """As :func:`_id_filter`, in SQL."""
    conds = []
    users = logic.user_columns(t["columns"])
    def col_sql(col: str) -> sql.Composable:  # a text column as it is (its index applies), others as text
        fmt = "{}" if t["columns"][col]["type"] in ("text", "varchar") else "{}::text"
        return sql.SQL(fmt).format(sql.Identifier(col))

    for col in users:
        conds.append(sql.SQL("{} = {}").format(col_sql(col), sql.Literal(plan.user_id)))
    if plan.post_ids and not (export and users):
        for col in logic.post_columns(t["columns"]):
            conds.append(sql.SQL("{} = ANY({}::text[])").format(col_sql(col), sql.Literal(plan.post_ids)))
    return sql.SQL(" OR ").join(conds) if conds else None


def pg_delete(conn, plan: Plan) -> dict[str, Any]:
    """Remove the user from every Postgres table: rows with the user or their posts in an id column; ids in
    text arrays (removed from the array, the row stays: an aggregate); rows whose other text (JSON payloads,
    vector metadata, free text) names them. Materialized views holding them are refreshed. One transaction.
    Returns ``{"rows": n, "arrays": n, "tables": {name: n}}``."""
    total = arrays = 0
    per_table: dict[str, int] = {}
    refresh: list[dict] = []
    with conn.transaction():
        for t in pg_tables(conn):
            ident = sql.Identifier(t["schema"], t["name"])
            text = _text_expr(_sweep_columns(t))
            if t["kind"] == "m":
                if text is not None and conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE {})").format(
                        ident, _mentions_sql(text, plan))).fetchone()[0]:
                    refresh.append(t)
                continue
            n = 0
            where = _where_ids(t, plan)
            if where is not None:
                n += conn.execute(sql.SQL("DELETE FROM {} WHERE {}").format(ident, where)).rowcount
            for col, info in t["columns"].items():
                if info["category"] == "A" and info["elem"] in ("text", "varchar"):
                    arrays += conn.execute(sql.SQL(
                        "UPDATE {t} SET {c} = ARRAY(SELECT x FROM unnest({c}) x WHERE NOT (x = ANY({ids}::text[]))) "
                        "WHERE {c}::text[] && {ids}::text[]").format(
                        t=ident, c=sql.Identifier(col), ids=sql.Literal(plan.ids))).rowcount
            if text is not None:
                n += conn.execute(sql.SQL("DELETE FROM {} WHERE {}").format(ident, _mentions_sql(text, plan))).rowcount
            if n:
                per_table[f"{t['schema']}.{t['name']}"] = n
                total += n
    for t in refresh:
        conn.execute(sql.SQL("REFRESH MATERIALIZED VIEW {}").format(sql.Identifier(t["schema"], t["name"])))
    return {"rows": total, "arrays": arrays, "tables": per_table, "refreshed": len(refresh)}


def pg_vacuum(conn, tables: list[str]) -> None:
    """VACUUM the tables a deletion touched (needs an autocommit connection): dead rows' space is reclaimed."""
    for name in tables:
        schema, table = name.split(".", 1)
        conn.execute(sql.SQL("VACUUM {}").format(sql.Identifier(schema, table)))


def pg_export(conn, plan: Plan) -> Iterator[tuple[str, list[dict]]]:
    from psycopg.rows import dict_row

    for t in pg_tables(conn):
        where = _where_ids(t, plan, export=True)
        if where is None:
            continue
        with conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(sql.SQL("SELECT * FROM {} WHERE {}").format(
                sql.Identifier(t["schema"], t["name"]), where)).fetchall()
        if rows:
            yield f"{t['schema']}.{t['name']}", rows


# --- Redis -------------------------------------------------------------------------------------------------

def feast_keys(plan: Plan) -> list[bytes]:
    """The Feast online store's Redis keys of the user and their posts (entity key serialization v3)."""
    from feast.infra.online_stores.helpers import _redis_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    from socialpulse.features import PROJECT

    keys = []
    for join_key, ids in (("user_id", [plan.user_id]), ("post_id", plan.post_ids)):
        for value in ids:
            key = EntityKey(join_keys=[join_key], entity_values=[Value(string_val=value)])
            keys.append(_redis_key(PROJECT, key, entity_key_serialization_version=3))
    return keys


def _feast_project_suffix() -> bytes:
    from socialpulse.features import PROJECT

    return PROJECT.encode()


def stream_delete(client, plan: Plan, streams: tuple[str, ...] = STREAMS, chunk: int = 1000) -> dict[str, int]:
    """XDEL the stream entries that name the user or their posts (so nothing of theirs lands after the lake is
    clean), and the ingest dedup keys of their records. Returns ``{"entries": n, "dedup_keys": n}``."""
    matcher = logic.id_matcher(plan.ids)
    entries = 0
    record_ids = set(plan.record_ids) | set(plan.post_ids) | {plan.user_id}
    for stream in streams:
        start = "-"
        while True:
            batch = client.xrange(stream, min=start, max="+", count=chunk)
            if not batch:
                break
            doomed = []
            for entry_id, fields in batch:
                if any(logic.mentions(v, matcher) for v in fields.values()):
                    doomed.append(entry_id)
                    rid = fields.get(b"id")
                    if rid:
                        record_ids.add(rid.decode())
            if doomed:
                entries += client.xdel(stream, *doomed)
            last = batch[-1][0]
            last = last.decode() if isinstance(last, bytes) else last
            start = "(" + last
            if len(batch) < chunk:
                break
    keys = [seen_key(s, rid) for s in streams for rid in sorted(record_ids)]
    dedup = 0
    for i in range(0, len(keys), 1000):
        dedup += client.delete(*keys[i:i + 1000])
    return {"entries": entries, "dedup_keys": dedup}


def _name_mentions(name: bytes, matcher, suffix: bytes) -> bool:
    if logic.mentions(name, matcher):
        return True
    # a Feast key is <serialized entity key><project>: the id is followed by the project's name
    return name.endswith(suffix) and logic.mentions(name[: -len(suffix)], matcher)


#: collections larger than this are walked with HSCAN/SSCAN/ZSCAN rather than fetched whole
BIG_COLLECTION = 10_000


def _scan_batches(client, scan_count: int) -> Iterator[list[bytes]]:
    cursor = 0
    while True:
        cursor, keys = client.scan(cursor=cursor, count=scan_count)
        if keys:
            yield keys
        if cursor == 0:
            return


def redis_delete(client, plan: Plan, scan_count: int = 1000) -> dict[str, int]:
    """Remove the user from Redis: their Feast online rows (keys computed), then every key is scanned (one
    pipelined round trip per batch for the types, one for the contents): a key named by the user's ids goes; a
    string / hash field / list element / set or sorted-set member / stream entry that names them goes, or, when
    it is JSON (id lists of other users' feed state, cached pages), loses the ids. Returns ``{"keys": n,
    "members": n, "feast_keys": n, "scanned": n}``."""
    matcher = logic.id_matcher(plan.ids)
    suffix = _feast_project_suffix()
    feast = client.delete(*feast_keys(plan)) if plan.ids else 0
    keys_removed = members = scanned = 0
    for batch in _scan_batches(client, scan_count):
        scanned += len(batch)
        doomed = [k for k in batch if _name_mentions(k, matcher, suffix)]
        if doomed:
            keys_removed += client.delete(*doomed)
        rest = [k for k in batch if k not in set(doomed)]
        pipe = client.pipeline(transaction=False)
        for k in rest:
            pipe.type(k)
        kinds = [t.decode() if isinstance(t, bytes) else t for t in pipe.execute()]
        sizes_pipe = client.pipeline(transaction=False)
        for k, kind in zip(rest, kinds):
            {"string": sizes_pipe.strlen, "hash": sizes_pipe.hlen, "list": sizes_pipe.llen, "set": sizes_pipe.scard,
             "zset": sizes_pipe.zcard, "stream": sizes_pipe.xlen}.get(kind, sizes_pipe.exists)(k)
        sizes = sizes_pipe.execute()
        fetch = client.pipeline(transaction=False)
        small: list[tuple[bytes, str]] = []
        big: list[tuple[bytes, str]] = []
        for k, kind, size in zip(rest, kinds, sizes):
            if kind == "stream":
                big.append((k, kind))
            elif kind != "string" and size > BIG_COLLECTION:
                big.append((k, kind))
            elif kind in ("string", "hash", "list", "set", "zset"):
                small.append((k, kind))
                {"string": fetch.get, "hash": fetch.hgetall, "set": fetch.smembers}.get(
                    kind, lambda key, kind=kind: (fetch.lrange(key, 0, -1) if kind == "list"
                                                  else fetch.zrange(key, 0, -1)))(k)
        contents = fetch.execute() if small else []
        for (k, kind), value in zip(small, contents):
            members += _scrub_key(client, k, kind, value, matcher)
        for k, kind in big:
            if kind == "stream":
                members += stream_delete(client, plan, (k.decode(),))["entries"]
                continue
            it = {"hash": client.hscan_iter, "set": client.sscan_iter, "zset": client.zscan_iter}.get(kind)
            if kind == "list":
                value = client.lrange(k, 0, -1)
            elif kind == "hash":
                value = dict(it(k, count=scan_count))
            elif kind == "zset":
                value = [m for m, _ in it(k, count=scan_count)]
            else:
                value = list(it(k, count=scan_count))
            members += _scrub_key(client, k, kind, value, matcher)
    return {"keys": keys_removed, "members": members, "feast_keys": feast, "scanned": scanned}


def _scrub_key(client, key: bytes, kind: str, value, matcher) -> int:
    """Remove what names the user from one key's fetched ``value``; returns the members (or keys) changed."""
    if value is None:
        return 0
    changed = 0
    if kind == "string":
        if not logic.mentions(value, matcher):
            return 0
        cleaned = logic.scrub_blob(value, matcher)
        if cleaned is None:
            return client.delete(key)
        client.set(key, cleaned, keepttl=True)
        return 1
    if kind == "hash":
        for field, v in value.items():
            if logic.mentions(field, matcher):
                changed += client.hdel(key, field)
            elif logic.mentions(v, matcher):
                cleaned = logic.scrub_blob(v, matcher)
                if cleaned is None:
                    changed += client.hdel(key, field)
                else:
                    client.hset(key, field, cleaned)
                    changed += 1
        return changed
    doomed = [m for m in set(value) if logic.mentions(m, matcher)]
    if not doomed:
        return 0
    if kind == "list":
        return sum(client.lrem(key, 0, m) for m in doomed)
    if kind == "set":
        return client.srem(key, *doomed)
    return client.zrem(key, *doomed)


def redis_export(client, settings: Settings, plan: Plan) -> dict[str, Any]:
    """The user's online features (Feast) and every Redis key named by their ids, decoded where possible."""
    out: dict[str, Any] = {"features": {}, "keys": {}}
    try:
        from socialpulse import features

        out["features"]["user"] = features.get_user_features(settings, plan.user_id)
        out["features"]["posts"] = {p: features.get_post_stats(settings, p) for p in plan.post_ids}
    except Exception as exc:  # noqa: BLE001 - no Feast registry yet: nothing online
        out["features"]["error"] = type(exc).__name__
    matcher = logic.id_matcher(plan.ids)
    suffix = _feast_project_suffix()

    def text(v: bytes) -> str:
        try:
            return v.decode()
        except UnicodeDecodeError:
            return v.hex()

    for key in client.scan_iter(count=1000):
        if not _name_mentions(key, matcher, suffix) or key.endswith(suffix):
            continue
        kind = client.type(key).decode()
        name = text(key)
        if kind == "string":
            out["keys"][name] = text(client.get(key) or b"")
        elif kind == "hash":
            out["keys"][name] = {text(f): text(v) for f, v in client.hgetall(key).items()}
        elif kind == "set":
            out["keys"][name] = sorted(text(m) for m in client.smembers(key))
        elif kind == "list":
            out["keys"][name] = [text(m) for m in client.lrange(key, 0, -1)]
        elif kind == "zset":
            out["keys"][name] = [[text(m), s] for m, s in client.zrange(key, 0, -1, withscores=True)]
    return out


# --- media -------------------------------------------------------------------------------------------------

def media_path(settings: Settings, uri: str, sha: str | None) -> Path | None:
    """The local file of a media object: from its ``file://`` URI, or by its sha256 under the media root."""
    try:
        path = media_store.local_path(uri)
        if path.exists():
            return path
    except ValueError:
        pass
    if sha:
        root = media_store.media_root(settings)
        for candidate in (root / sha[:2]).glob(f"{sha}.*"):
            return candidate
    return None


def media_still_referenced(settings: Settings, plan: Plan) -> set[str]:
    """URIs / sha256s of the user's media that another (remaining) post still refers to (content-addressed:
    the same bytes uploaded by someone else stay)."""
    uris = [m["uri"] for m in plan.media if m.get("uri")]
    shas = [m["sha256"] for m in plan.media if m.get("sha256")]
    kept: set[str] = set()
    if uris:
        rows = _read_matching(settings.table_uri("bronze", "posts"), _f("media_uri").isin(uris), ["media_uri"])
        if rows.num_rows:
            kept.update(rows.column("media_uri").to_pylist())
    if shas:
        rows = _read_matching(settings.table_uri("bronze", "media"), _f("sha256").isin(shas), ["uri", "sha256"])
        if rows.num_rows:
            kept.update(rows.column("uri").to_pylist())
            kept.update(rows.column("sha256").to_pylist())
    return kept


def media_delete(settings: Settings, plan: Plan) -> dict[str, int]:
    """Remove the media files of the user's posts that no remaining post refers to (and their lock files)."""
    kept = media_still_referenced(settings, plan)
    removed = shared = 0
    for m in plan.media:
        if m.get("uri") in kept or (m.get("sha256") and m["sha256"] in kept):
            shared += 1
            continue
        path = media_path(settings, m["uri"], m.get("sha256"))
        if path is not None and path.exists():
            path.unlink()
            removed += 1
        if m.get("sha256"):
            (media_store.media_root(settings) / media_store.LOCK_DIR / f"{m['sha256']}.lock").unlink(missing_ok=True)
    return {"files": removed, "shared_kept": shared}


def json_default(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def dumps_rows(rows: list[dict]) -> str:
    return "".join(json.dumps(r, default=json_default, ensure_ascii=False) + "\n" for r in rows)


__all__ = ["build_plan", "feast_keys", "lake_delete", "lake_export", "lake_purge_history",
           "lake_tables", "media_delete", "pg_delete", "pg_export", "pg_tables", "pg_vacuum", "redis_delete",
           "redis_export", "stream_delete"]
