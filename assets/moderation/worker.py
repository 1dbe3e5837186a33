"""The live moderation path: a long-lived worker that moderates each accepted post within seconds.

It reads ``ingest:posts`` through its own consumer group (``moderation``), independent of the drain's
``bronze`` group, so a post is moderated straight from its stream payload (its media bytes are already in
the media store) while the drain lands it in Delta. Models stay loaded between batches. Decisions go to
the serving stores at once (Postgres ``moderation.decisions`` + review queue, Redis gate); the daily
moderation assets remain the lake of record and re-derive the same decisions into Delta (same scoring and
policy functions), and catch any post the worker missed (the drain deletes entries once they are in Delta).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Callable

import pyarrow as pa
import redis as redis_lib

from assets.moderation.publish import publish_posts
from assets.moderation.scoring import decide_rows, media_model_version, score_posts
from socialpulse.contracts import POSTS
from socialpulse.ingest import POSTS_STREAM, payload_rows

GROUP = "moderation"


def ensure_group(redis_client) -> None:
    """Create the worker's group at the stream's end: it moderates what arrives from now on (earlier posts
    are the assets' job)."""
    try:
        redis_client.xgroup_create(POSTS_STREAM, GROUP, id="$", mkstream=True)
    except redis_lib.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _decode(v):
    return v.decode("utf-8", errors="replace") if isinstance(v, bytes) else v


def posts_of(entries: list[tuple[str, dict]]) -> tuple[pa.Table, list[str]]:
    """Bronze-shaped post rows of stream entries, and the ids of entries that hold no valid post (those are
    the drain's to dead-letter; the worker only acknowledges them)."""
    rows, bad = [], []
    for entry_id, fields in entries:
        try:
            payload = json.loads(fields["payload"])
            rows.extend(payload_rows(POSTS_STREAM, payload)["posts"])
        except Exception:  # noqa: BLE001 - a malformed entry is the drain's to report, never the worker's crash
            bad.append(entry_id)
    table = pa.Table.from_pylist(rows, schema=POSTS.schema) if rows else POSTS.schema.empty_table()
    return table, bad


def moderate_once(redis_client, conn, *, model, analyser_factory, read_media, policy, consumer: str = "worker-1",
                  count: int = 64, block_ms: int = 1000) -> dict:
    """Read up to ``count`` new post entries (waiting up to ``block_ms``), moderate and publish them, then
    acknowledge. Entries left pending by a crashed consumer are taken over first, so none is skipped."""
    ensure_group(redis_client)
    claimed = redis_client.xautoclaim(POSTS_STREAM, GROUP, consumer, min_idle_time=30_000, start_id="0-0", count=count)
    entries = [(_decode(i), {_decode(k): _decode(v) for k, v in f.items()}) for i, f in claimed[1] if f]
    if not entries:
        reply = redis_client.xreadgroup(GROUP, consumer, {POSTS_STREAM: ">"}, count=count, block=block_ms)
        for _stream, items in reply or []:
            entries += [(_decode(i), {_decode(k): _decode(v) for k, v in f.items()}) for i, f in items if f]
    if not entries:
        return {"posts": 0}
    t0 = time.perf_counter()
    posts, bad = posts_of(entries)
    media_version = media_model_version(analyser_factory().versions)
    scores = score_posts(posts, text_model=model, analyser_factory=analyser_factory, read_media=read_media,
                         media_version=media_version)
    decisions = decide_rows(scores, policy)
    counts = publish_posts(conn, redis_client, decisions, posts)
    redis_client.xack(POSTS_STREAM, GROUP, *[e[0] for e in entries])
    return {"posts": posts.num_rows, "malformed": len(bad), "seconds": round(time.perf_counter() - t0, 3), **counts}


def run_worker(settings, *, stop: Callable[[], bool] = lambda: False, ready_file: Path | None = None,
               log: Callable[[str], None] = print) -> None:
    """Load the champion text model and the media models once, then moderate new posts until ``stop()``."""
    import psycopg

    from assets.moderation.assets import _analyser, _champion, _read_media
    from assets.moderation.policy import load_policy

    model = _champion(settings.mlflow, str(settings.home_abs / "models"))
    model.warm()
    policy = load_policy()
    client = redis_lib.Redis.from_url(settings.redis, socket_timeout=30)
    ensure_group(client)
    log(f"moderation worker: model {model.version}, {policy.version}, reading {POSTS_STREAM} as group {GROUP}")
    if ready_file is not None:
        ready_file.write_text(dt.datetime.now(dt.timezone.utc).isoformat())
    with psycopg.connect(settings.postgres, connect_timeout=5) as conn:
        while not stop():
            done = moderate_once(client, conn, model=model, analyser_factory=_analyser, read_media=_read_media,
                                 policy=policy)
            if done["posts"] or done.get("malformed"):
                log(f"moderated {done}")
