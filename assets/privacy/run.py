"""Carry out one privacy request, step by step (what the privacy job's op calls).

A deletion runs :data:`~assets.privacy.logic.DELETE_STEPS` in order: ``plan`` (the user's posts, media and
record ids from bronze, saved with the request), ``streams`` (stream entries and dedup keys first, so nothing
of the user lands after the lake is clean), ``lake`` (every Delta table), ``lake_vacuum`` (vacuum without
retention, checkpoint, old log entries removed: on every table, since any may hold old files of the user),
``postgres`` (every table: serving, marts, trends, moderation, notifications, metrics, pgvector), ``redis``
(Feast online rows, feed state, moderation gate, any key naming the user), ``media`` (files only the user's
posts used), ``exports`` (the user's export archives). Each finished step is recorded with its counts and
duration; a rerun after a crash skips the finished ones, and every step is idempotent.
"""

from __future__ import annotations

import logging
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import redis as redis_lib

from assets.privacy import logic, stores
from assets.privacy.logic import Plan
from socialpulse import privacy
from socialpulse.settings import Settings

log = logging.getLogger(__name__)


class StepFailed(RuntimeError):
    """Raised by a test hook to simulate a crash after some steps."""


def _redis(settings: Settings):
    return redis_lib.Redis.from_url(settings.redis)


def delete_steps(settings: Settings, plan: Plan) -> dict[str, Callable[[], dict[str, Any]]]:
    """The deletion's steps (after ``plan``), each a callable returning its counts."""
    matcher = logic.id_matcher(plan.ids)

    def streams() -> dict:
        client = _redis(settings)
        try:
            return stores.stream_delete(client, plan)
        finally:
            client.close()

    def lake() -> dict:
        per_table, total = {}, 0
        for uri in stores.lake_tables(settings):
            got = stores.lake_delete(uri, plan)
            if got["rows"]:
                per_table[str(Path(uri).relative_to(settings.lake))] = got["rows"]
                total += got["rows"]
        return {"rows": total, "tables": per_table}

    def lake_vacuum() -> dict:
        files = logs = 0
        tables = stores.lake_tables(settings)
        for uri in tables:
            got = stores.lake_purge_history(uri, matcher)
            files += got["files"]
            logs += got["log_files"]
        return {"tables": len(tables), "files_vacuumed": files, "log_files_removed": logs}

    def postgres() -> dict:
        with psycopg.connect(settings.postgres, autocommit=True) as conn:
            got = stores.pg_delete(conn, plan)
            stores.pg_vacuum(conn, list(got["tables"]))
        return got

    def redis() -> dict:
        client = _redis(settings)
        try:
            return stores.redis_delete(client, plan)
        finally:
            client.close()

    def media() -> dict:
        return stores.media_delete(settings, plan)

    def exports() -> dict:
        with psycopg.connect(settings.postgres, autocommit=True) as conn:
            ids = privacy.forget_exports(conn, plan.user_id)
        removed = 0
        folder = privacy.exports_dir(settings)
        for rid in ids:
            for path in folder.glob(f"{rid}*"):
                path.unlink(missing_ok=True)
                removed += 1
        return {"archives": removed, "requests": len(ids)}

    return {"streams": streams, "lake": lake, "lake_vacuum": lake_vacuum, "postgres": postgres, "redis": redis,
            "media": media, "exports": exports}


def run_deletion(settings: Settings, request_id: str, *, fail_at: str | None = None) -> dict[str, Any]:
    """Carry out (or resume) a deletion request; returns the finished request's public fields.
    ``fail_at``: raise before that step (a test's simulated crash)."""
    with psycopg.connect(settings.postgres, autocommit=True) as conn:
        row = privacy.claim(conn, request_id)
        if row is None:
            return privacy.public(privacy.get(conn, request_id)) or {}
        if row["kind"] != "delete":
            raise ValueError(f"request {request_id} is an {row['kind']}, not a deletion")
        done = list(row["steps_done"] or [])
        try:
            if "plan" in done and row["plan"]:
                plan = Plan.from_json(row["plan"])
            else:
                started = time.perf_counter()
                plan = stores.build_plan(settings, row["user_id"])
                privacy.save_plan(conn, request_id, plan.to_json())
                privacy.step_done(conn, request_id, "plan", {
                    "posts": len(plan.post_ids), "media": len(plan.media), "records": len(plan.record_ids),
                    "seconds": round(time.perf_counter() - started, 3)})
            for name, step in delete_steps(settings, plan).items():
                if name in done:
                    continue
                if fail_at == name:
                    raise StepFailed(f"simulated crash before step {name}")
                started = time.perf_counter()
                counts = step()
                counts["seconds"] = round(time.perf_counter() - started, 3)
                privacy.step_done(conn, request_id, name, counts)
                log.info("privacy request %s: step %s done (%s)", request_id, name,
                         {k: v for k, v in counts.items() if k != "tables"})
            finished = privacy.finish_delete(conn, settings, request_id)
        except Exception as exc:
            privacy.fail(conn, request_id, f"{type(exc).__name__}: {exc}")
            raise
        return privacy.public(finished)


def build_export(settings: Settings, user_id: str, path: Path) -> dict[str, int]:
    """Write everything the platform holds about ``user_id`` to a zip at ``path`` (atomically); the counts."""
    plan = stores.build_plan(settings, user_id)
    counts = {"lake_rows": 0, "postgres_rows": 0, "redis_keys": 0, "media_files": 0}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for table, rows in stores.lake_export(settings, plan):
            zf.writestr(f"lake/{table}.jsonl", stores.dumps_rows(rows))
            counts["lake_rows"] += len(rows)
        with psycopg.connect(settings.postgres, autocommit=True) as conn:
            for table, rows in stores.pg_export(conn, plan):
                zf.writestr(f"postgres/{table}.jsonl", stores.dumps_rows(rows))
                counts["postgres_rows"] += len(rows)
        client = _redis(settings)
        try:
            online = stores.redis_export(client, settings, plan)
        finally:
            client.close()
        counts["redis_keys"] = len(online["keys"])
        zf.writestr("redis/online.json", stores.dumps_rows([online]))
        for m in plan.media:
            file = stores.media_path(settings, m["uri"], m.get("sha256"))
            if file is not None and file.exists():
                zf.write(file, f"media/{file.name}")
                counts["media_files"] += 1
        zf.writestr("manifest.json", stores.dumps_rows([{
            "user_id": user_id, "posts": plan.post_ids, "counts": counts,
            "stores": ["lake (Delta)", "postgres", "redis", "media"]}]))
    tmp.replace(path)
    return counts


def remove_expired_archives(settings: Settings, now: float | None = None) -> int:
    """Delete export archives older than their serving window (each export run does this housekeeping)."""
    folder = privacy.exports_dir(settings)
    if not folder.is_dir():
        return 0
    cutoff = (now or time.time()) - privacy.EXPORT_TTL.total_seconds()
    removed = 0
    for path in folder.iterdir():
        if path.is_file() and path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def run_export(settings: Settings, request_id: str) -> dict[str, Any]:
    remove_expired_archives(settings)
    with psycopg.connect(settings.postgres, autocommit=True) as conn:
        row = privacy.claim(conn, request_id)
        if row is None:
            return privacy.public(privacy.get(conn, request_id)) or {}
        try:
            started = time.perf_counter()
            archive = privacy.exports_dir(settings) / f"{request_id}.zip"
            counts = build_export(settings, row["user_id"], archive)
            counts["seconds"] = round(time.perf_counter() - started, 3)
            finished = privacy.finish_export(conn, settings, request_id, archive, counts)
        except Exception as exc:
            privacy.fail(conn, request_id, f"{type(exc).__name__}: {exc}")
            raise
        return privacy.public(finished)


def run_request(settings: Settings, request_id: str, **kw) -> dict[str, Any]:
    with psycopg.connect(settings.postgres, autocommit=True) as conn:
        row = privacy.get(conn, request_id)
    if row is None:
        raise KeyError(f"no privacy request {request_id}")
    if row["kind"] == "delete":
        return run_deletion(settings, request_id, **kw)
    return run_export(settings, request_id)
