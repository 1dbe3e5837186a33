"""Exactly-once drain of the ingest streams into bronze Delta tables.

Each batch of stream entries becomes at most one Delta commit per bronze table. The commit records, in
the same atomic Delta transaction, the app id ``drain:<stream>:<table>`` with a version made from the
batch's last entry id (``ms * 1_000_000 + seq``, increasing along the stream). Entries are acknowledged
in Redis only after every commit of their batch. A drain that crashes anywhere in between re-reads its
pending entries and skips, table by table, the entries whose version is at or below the version already
committed there: no duplicate, nothing lost. Records that fail a table contract go to bronze
``dead_letter`` under the same scheme, and are acknowledged too.

Only one drain may work a stream at a time (the version check relies on batches committing in stream
order): a Redis lock per stream enforces it, and pending entries left by a dead consumer are claimed and
drained before any new entry.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import redis as redis_lib

from socialpulse import lake, notifications
from socialpulse.contracts import BRONZE, DEAD_LETTER, ContractError, conform, utc_day
from socialpulse.ingest import STREAM_TABLES, STREAMS, payload_rows
from socialpulse.settings import Settings, get_settings

log = logging.getLogger(__name__)

GROUP = "bronze"
#: a drain holds its stream's lock for this long past its last batch: a drain killed mid-batch (kill -9, a
#: lost pod) blocks the next one for at most this long; every batch renews it (a batch takes about a second)
LOCK_TIMEOUT_S = 60
#: how long a scheduled drain waits for the lock of a drain that died before giving up
LOCK_WAIT_S = LOCK_TIMEOUT_S + 5
SEQ_FACTOR = 1_000_000


class DrainBusy(RuntimeError):
    """Another drain holds the stream's lock."""


@dataclass
class DrainResult:
    rows: dict[str, int] = field(default_factory=dict)  # rows written per bronze table
    dead_letters: int = 0
    acked: int = 0
    #: entries acknowledged without writing anything, because every row they make had already landed
    skipped_already_committed: int = 0
    batches: int = 0
    last_entry_id: str | None = None
    last_entry_ids: dict[str, str] = field(default_factory=dict)  # per stream

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    def merge(self, other: "DrainResult") -> "DrainResult":
        rows = dict(self.rows)
        for table, n in other.rows.items():
            rows[table] = rows.get(table, 0) + n
        return DrainResult(
            rows=rows,
            dead_letters=self.dead_letters + other.dead_letters,
            acked=self.acked + other.acked,
            skipped_already_committed=self.skipped_already_committed + other.skipped_already_committed,
            batches=self.batches + other.batches,
            last_entry_id=other.last_entry_id or self.last_entry_id,
            last_entry_ids={**self.last_entry_ids, **other.last_entry_ids},
        )


def entry_version(entry_id: str) -> int:
    """The Delta app-transaction version of a stream entry id ``ms-seq``: ``ms * 1_000_000 + seq``."""
    ms, _, seq = entry_id.partition("-")
    ms_i, seq_i = int(ms), int(seq or 0)
    if seq_i >= SEQ_FACTOR:
        raise ValueError(f"stream entry id {entry_id!r} has a sequence >= {SEQ_FACTOR}; cannot encode it")
    return ms_i * SEQ_FACTOR + seq_i


def app_id(stream: str, table: str) -> str:
    return f"drain:{stream}:{table}"


def _s(value: Any) -> Any:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def ensure_group(redis_client, stream: str) -> None:
    """Create the ``bronze`` consumer group (and the stream) if missing; it starts at the beginning."""
    try:
        redis_client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    except redis_lib.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _claim_pending(redis_client, stream: str, consumer: str) -> int:
    """Move pending entries of other (dead) consumers to ``consumer`` so they drain before new ones."""
    claimed, start = 0, "0-0"
    while True:
        # (not JUSTID: redis-py then drops the cursor from the reply)
        reply = redis_client.xautoclaim(stream, GROUP, consumer, min_idle_time=0, start_id=start, count=1000)
        start, ids = _s(reply[0]), reply[1]
        claimed += len(ids)
        if start == "0-0":
            return claimed


def _read(redis_client, stream: str, consumer: str, from_id: str, count: int) -> list[tuple[str, dict | None]]:
    reply = redis_client.xreadgroup(GROUP, consumer, {stream: from_id}, count=count)
    if not reply:
        return []
    entries = next(iter(reply.values()))[0] if isinstance(reply, dict) else reply[0][1]
    out = []
    for entry_id, fields in entries:
        out.append((_s(entry_id), None if fields is None else {_s(k): _s(v) for k, v in fields.items()}))
    return out


def _ack(redis_client, stream: str, entry_ids: list[str]) -> None:
    """Acknowledge and delete drained entries in one transaction (so XLEN is exactly the backlog)."""
    pipe = redis_client.pipeline(transaction=True)
    pipe.xack(stream, GROUP, *entry_ids)
    pipe.xdel(stream, *entry_ids)
    pipe.execute()


@dataclass
class _Record:
    entry_id: str
    version: int
    raw: str
    rows: dict[str, list[dict]] = field(default_factory=dict)
    dead: tuple[str, str] | None = None  # (target table, reason)
    conformed: dict[str, pa.Table] = field(default_factory=dict)


def _parse(stream: str, entry_id: str, fields: dict | None) -> _Record:
    primary = STREAM_TABLES[stream][0]
    fields = fields or {}
    raw = fields.get("payload")
    rec = _Record(entry_id, entry_version(entry_id), raw if raw is not None else json.dumps(fields))
    if raw is None:
        rec.dead = (primary, f"stream entry has no 'payload' field (fields: {sorted(fields)})")
        return rec
    try:
        payload = json.loads(raw)
    except ValueError as exc:
        rec.dead = (primary, f"payload is not valid JSON: {exc}")
        return rec
    try:
        rec.rows = payload_rows(stream, payload)
    except ContractError as exc:
        rec.dead = (primary, str(exc))
    except Exception as exc:  # a malformed record must never stop the drain
        rec.dead = (primary, f"{primary}: cannot build rows: {type(exc).__name__}: {exc}")
    return rec


def _conform_batch(stream: str, records: list[_Record]) -> dict[str, pa.Table]:
    """Conformed tables of the batch; records that fail a contract are marked dead (whole record)."""
    tables = STREAM_TABLES[stream]
    alive = [r for r in records if r.dead is None]
    out: dict[str, pa.Table] = {}
    try:  # fast path: the whole batch passes every contract
        for table in tables:
            rows = [row for r in alive for row in r.rows.get(table, ())]
            out[table] = conform(BRONZE[table], rows)
        return out
    except (ContractError, pa.ArrowException, TypeError, ValueError, OverflowError):
        pass
    # slow path: find the bad records one by one, so good ones still land
    for r in alive:
        for table in tables:
            if not r.rows.get(table):
                continue
            try:
                r.conformed[table] = conform(BRONZE[table], r.rows[table])
            except ContractError as exc:
                r.dead = (table, str(exc))
            except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
                r.dead = (table, f"{table}: {type(exc).__name__}: {exc}")
            if r.dead:
                break
    for table in tables:
        parts = [r.conformed[table] for r in alive if r.dead is None and table in r.conformed]
        out[table] = pa.concat_tables(parts) if parts else BRONZE[table].schema.empty_table()
    return out


def _dead_letter_row(stream: str, rec: _Record, now: dt.datetime) -> dict:
    target, reason = rec.dead
    return {
        "record_id": f"{stream}:{rec.entry_id}",
        "source": stream,
        "target_table": target,
        "reason": reason,
        "payload": rec.raw,
        "rejected_at": now,
        "event_date": utc_day(now),
    }


class _Committed:
    """Last committed version per table (read once per drain; we hold the stream's lock)."""

    def __init__(self, settings: Settings, stream: str):
        self.settings, self.stream, self.cache = settings, stream, {}

    def get(self, table: str) -> int:
        if table not in self.cache:
            v = lake.committed_version(BRONZE[table], app_id(self.stream, table), settings=self.settings)
            self.cache[table] = -1 if v is None else v
        return self.cache[table]


def _notify_follows(settings: Settings, feed: "notifications.LiveFeed | None", rows: pa.Table) -> None:
    """New follower notifications for follows about to land: enqueued before the Delta commit, so a crash
    after it cannot lose them (a re-drained batch enqueues again; the outbox's dedupe key keeps one)."""
    if feed is None or rows.num_rows == 0:
        return
    now = dt.datetime.now(dt.timezone.utc)
    feed.enqueue(notifications.follow_items(rows.to_pylist(), now, dt.timedelta(hours=settings.notifications_max_age_h)))


def _drain_batch(settings, redis_client, stream, entries, committed: _Committed, result: DrainResult,
                 feed: "notifications.LiveFeed | None" = None) -> None:
    # an entry deleted while pending comes back without fields: nothing to land, only acknowledge it
    records = [_parse(stream, eid, fields) for eid, fields in entries if fields is not None]
    batch_version = max(entry_version(eid) for eid, _ in entries)
    conformed = _conform_batch(stream, records)
    wrote_for: set[str] = set()

    for table in STREAM_TABLES[stream]:
        data = conformed[table]
        if data.num_rows == 0:
            continue  # nothing for this table in the batch: no empty commit
        # the record each conformed row came from, in order (alive records, their rows in turn)
        owners = [r for r in records if r.dead is None for _ in r.rows.get(table, ())]
        done = committed.get(table)
        keep = [r.version > done for r in owners]
        if not any(keep):
            continue
        if not all(keep):
            data = data.filter(pa.array(keep))
        if table == "follows":
            _notify_follows(settings, feed, data)
        n = lake.append(BRONZE[table], data, settings=settings, app_id=app_id(stream, table), version=batch_version)
        committed.cache[table] = batch_version
        result.rows[table] = result.rows.get(table, 0) + n
        wrote_for.update(r.entry_id for r, k in zip(owners, keep) if k)

    dead = [r for r in records if r.dead is not None]
    if dead:
        done = committed.get(DEAD_LETTER.name)
        fresh = [r for r in dead if r.version > done]
        if fresh:
            now = dt.datetime.now(dt.timezone.utc)
            rows = [_dead_letter_row(stream, r, now) for r in fresh]
            lake.append(
                DEAD_LETTER, rows, settings=settings, app_id=app_id(stream, DEAD_LETTER.name), version=batch_version
            )
            committed.cache[DEAD_LETTER.name] = batch_version
            result.dead_letters += len(fresh)
            wrote_for.update(r.entry_id for r in fresh)
            for r in fresh:
                log.warning("dead letter %s:%s -> %s: %s", stream, r.entry_id, r.dead[0], r.dead[1])

    # only after every commit of the batch: acknowledge (a crash before this line re-drains safely)
    ids = [eid for eid, _ in entries]
    _ack(redis_client, stream, ids)
    result.acked += len(ids)
    result.skipped_already_committed += sum(1 for r in records if r.entry_id not in wrote_for and _has_output(r))
    result.batches += 1
    result.last_entry_id = ids[-1]
    result.last_entry_ids[stream] = ids[-1]


def _has_output(rec: _Record) -> bool:
    return rec.dead is not None or any(rec.rows.values())


def drain_stream(
    settings: Settings,
    redis_client,
    stream: str,
    *,
    max_records: int | None = None,
    consumer: str = "drain-1",
    wait_s: float = 0,
) -> DrainResult:
    """Drain one ingest stream into bronze, exactly once; stop when empty or after ``max_records``. When
    another drain holds the stream's lock, wait up to ``wait_s`` for it (a dead holder's lock expires after
    :data:`LOCK_TIMEOUT_S`), then raise :class:`DrainBusy`."""
    if stream not in STREAM_TABLES:
        raise ValueError(f"unknown ingest stream {stream!r}; known: {list(STREAMS)}")
    batch_size = max(1, settings.drain_batch_size)
    ensure_group(redis_client, stream)
    lock = redis_client.lock(f"drain:lock:{stream}", timeout=LOCK_TIMEOUT_S)
    if not lock.acquire(blocking=wait_s > 0, blocking_timeout=wait_s or None):
        waited = f" after waiting {wait_s:g} s" if wait_s else ""
        raise DrainBusy(f"another drain is working {stream} (lock drain:lock:{stream}){waited}; try again later")
    result = DrainResult()
    committed = _Committed(settings, stream)
    # new follower notifications (a Postgres that cannot be reached never fails or slows the drain)
    feed = notifications.LiveFeed(settings.postgres) if "follows" in STREAM_TABLES[stream] else None
    processed = 0
    try:
        claimed = _claim_pending(redis_client, stream, consumer)
        if claimed:
            log.info("%s: re-draining %d pending entries", stream, claimed)
        # pending entries first (delivered before a crash, maybe partly committed), then new ones
        for from_id in ("0", ">"):
            while max_records is None or processed < max_records:
                count = batch_size if max_records is None else min(batch_size, max_records - processed)
                entries = _read(redis_client, stream, consumer, from_id, count)
                if not entries:
                    break
                lock.reacquire()  # still ours: no other drain can have committed in between
                _drain_batch(settings, redis_client, stream, entries, committed, result, feed)
                processed += len(entries)
    finally:
        if feed is not None:
            feed.close()
        try:
            lock.release()
        except redis_lib.exceptions.LockError:
            log.warning("%s: drain lock expired before release", stream)
    return result


def drain_all(settings: Settings | None = None, redis_client=None, *, wait_s: float = 0) -> DrainResult:
    """Drain every ingest stream (``ingest:events`` and ``ingest:posts``) into bronze (``wait_s``: see
    :func:`drain_stream`)."""
    settings = settings or get_settings()
    own = redis_client is None
    client = redis_lib.Redis.from_url(settings.redis) if own else redis_client
    try:
        result = DrainResult()
        for stream in STREAMS:
            result = result.merge(drain_stream(settings, client, stream, wait_s=wait_s))
        return result
    finally:
        if own:
            client.close()


def stream_backlog(redis_client) -> dict[str, int]:
    """Entries per ingest stream that still have to land in bronze (pending + never delivered).

    Drained entries are deleted with their acknowledgement, so the stream length is exactly the backlog;
    where Redis reports the group's lag (7.0+) pending + lag is used instead.
    """
    out: dict[str, int] = {}
    for stream in STREAMS:
        length = int(redis_client.xlen(stream))
        backlog = length
        if length:
            try:
                groups = redis_client.xinfo_groups(stream)
            except redis_lib.ResponseError:
                groups = []
            for g in groups:
                g = {_s(k): _s(v) for k, v in g.items()}
                if g.get("name") == GROUP and g.get("lag") is not None:
                    backlog = int(g.get("pending") or 0) + int(g["lag"])
        out[stream] = backlog
    return out
