"""Loaders for the real public data sets (HateXplain, CrisisLex T6) into bronze posts + reference tables.

Each loader parses line by line: a malformed line (bad JSON, a missing or wrong field, a duplicate id)
goes to the bronze ``dead_letter`` table with a precise reason and never stops the load. Loads are
idempotent: bronze posts are replaced by ``event_date`` partition and the reference tables by their
own partitions, so loading the same file twice leaves the same rows.

HateXplain is vendored whole under ``data/hatexplain`` (the official split; see its ATTRIBUTION.md): the
default for ``socialpulse load hatexplain`` and what the demo trains on. Small samples of HateXplain and
CrisisLex under ``data/samples`` keep tests fast; pass the full CrisisLex file by path for real runs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
from deltalake import write_deltalake

from socialpulse import lake
from socialpulse.contracts import DEAD_LETTER, POSTS, TS
from socialpulse.settings import Settings
from socialpulse.tags import find_tags, normalise_tags

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
#: the full official HateXplain split (train 15,383 / val 1,922 / test 1,924)
HATEXPLAIN_DIR = DATA_DIR / "hatexplain"
SAMPLES_DIR = DATA_DIR / "samples"
HATEXPLAIN_SAMPLE = SAMPLES_DIR / "hatexplain"
CRISISLEX_SAMPLE = SAMPLES_DIR / "crisislex_t6" / "stream.jsonl"

HATEXPLAIN_LABELS = ("hatespeech", "offensive", "normal")
HATEXPLAIN_SPLITS = ("train", "val", "test")
#: HateXplain has no time stamps: each split lives on its own fixed day, so reloading one split replaces
#: exactly that split's partition (and never touches live or synthetic days). The days are the first three
#: daily partitions (settings.partitions_start), so the day-partitioned assets (moderation) cover them.
HATEXPLAIN_DAYS = {"train": dt.date(2026, 1, 1), "val": dt.date(2026, 1, 2), "test": dt.date(2026, 1, 3)}
CRISISLEX_TOPIC = ("on-topic", "off-topic")
PAYLOAD_MAX = 10_000  # dead-letter payloads are truncated so one huge line cannot bloat the table

HATEXPLAIN_REF_SCHEMA = pa.schema(
    [
        pa.field("post_id", pa.string(), nullable=False),
        pa.field("source_post_id", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("label", pa.string(), nullable=False),
        pa.field("annotator_labels", pa.list_(pa.string())),
        pa.field("targets", pa.list_(pa.string())),
        pa.field("source", pa.string()),
    ]
)
CRISISLEX_REF_SCHEMA = pa.schema(
    [
        pa.field("post_id", pa.string(), nullable=False),
        pa.field("tweet_id", pa.string(), nullable=False),
        pa.field("event", pa.string(), nullable=False),
        pa.field("on_topic", pa.string(), nullable=False),
        pa.field("hashtags", pa.list_(pa.string())),
        pa.field("created_at", TS, nullable=False),
        pa.field("event_date", pa.date32(), nullable=False),
    ]
)


class Reject(ValueError):
    """A line that cannot be loaded; the message is the dead-letter reason."""


@dataclass
class _Parsed:
    """Rows parsed from one or more files: good rows per file/split and rejected lines."""

    rows: list[dict] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)
    lines: int = 0


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with open(path, encoding="utf-8", errors="replace") as fh:
        for no, line in enumerate(fh, start=1):
            if line.strip():
                yield no, line.rstrip("\n")


def _reject(parsed: _Parsed, source: str, path: Path, no: int, line: str, reason: str) -> None:
    digest = hashlib.sha1(line.encode("utf-8", "replace")).hexdigest()[:12]
    parsed.rejects.append(
        {
            "record_id": f"{source}:{path.name}:{no}:{digest}",
            "reason": f"{path.name} line {no}: {reason}",
            "payload": line[:PAYLOAD_MAX],
        }
    )


def _json_object(line: str) -> dict:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise Reject(f"invalid JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(obj, dict):
        raise Reject(f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _text_field(obj: dict, name: str) -> str:
    value = obj.get(name)
    if value is None:
        raise Reject(f"missing field '{name}'")
    if not isinstance(value, str):
        raise Reject(f"field '{name}' must be a string, got {type(value).__name__}")
    if not value.strip():
        raise Reject(f"field '{name}' is empty")
    return value


def _id_field(obj: dict, name: str) -> str:
    value = obj.get(name)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value).strip() == "":
        raise Reject(f"missing or invalid id field '{name}': {value!r}")
    return str(value).strip()


def _str_list(obj: dict, name: str, default: list[str] | None = None) -> list[str]:
    value = obj.get(name, default)
    if value is None:
        value = default
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Reject(f"field '{name}' must be a list of strings, got {value!r}")
    return value


def _targets(obj: dict) -> list[str]:
    """HateXplain targets as one distinct list: train holds a flat list, val/test one list per annotator."""
    value = obj.get("targets") or []
    if not isinstance(value, list):
        raise Reject(f"field 'targets' must be a list, got {value!r}")
    flat: list = []
    for v in value:
        flat.extend(v if isinstance(v, list) else [v])
    if not all(isinstance(v, str) for v in flat):
        raise Reject(f"field 'targets' must hold strings (or one list of strings per annotator), got {value!r}")
    return list(dict.fromkeys(flat))


def _dead_letter(settings: Settings, source: str, rejects: list[dict]) -> int:
    """Append rejects not already recorded (same record_id) for this source; return how many were new."""
    if not rejects:
        return 0
    seen = lake.read(DEAD_LETTER, settings=settings, columns=["record_id"], filters=[("source", "=", source)])
    known = set(seen["record_id"].to_pylist())
    now = dt.datetime.now(dt.timezone.utc)
    rows = [
        {**r, "source": source, "target_table": POSTS.name, "rejected_at": now, "event_date": now.date()}
        for r in rejects
        if r["record_id"] not in known
    ]
    return lake.append(DEAD_LETTER, rows, settings=settings) if rows else 0


def _write_reference(settings: Settings, name: str, table: pa.Table, partition: str, values: list) -> None:
    """Replace the given partitions of a plain reference Delta table (create it on first write)."""
    uri = settings.table_uri("reference", name)
    if lake.open_table(uri) is None:
        write_deltalake(uri, table, mode="overwrite", partition_by=[partition])
        return
    if not values:
        return
    quoted = ", ".join("'" + str(v).replace("'", "''") + "'" for v in values)
    write_deltalake(uri, table, mode="overwrite", partition_by=[partition], predicate=f"{partition} IN ({quoted})")


# --- HateXplain --------------------------------------------------------------------------------------


def _hatexplain_files(path: Path) -> list[tuple[str, Path]]:
    path = Path(path)
    if path.is_dir():
        files = [(s, path / f"{s}.jsonl") for s in HATEXPLAIN_SPLITS if (path / f"{s}.jsonl").exists()]
        if not files:
            raise FileNotFoundError(f"no train/val/test.jsonl in {path}")
        return files
    if path.stem not in HATEXPLAIN_SPLITS:
        raise ValueError(f"{path}: a HateXplain file must be named train.jsonl, val.jsonl or test.jsonl")
    return [(path.stem, path)]


def parse_hatexplain(files: list[tuple[str, Path]]) -> _Parsed:
    """Parse HateXplain JSONL files (pure apart from reading them): good rows and rejected lines."""
    out = _Parsed()
    first_seen: dict[str, str] = {}
    for split, path in files:
        for no, line in _lines(path):
            out.lines += 1
            try:
                obj = _json_object(line)
                pid = _id_field(obj, "post_id")
                text = _text_field(obj, "text")
                label = obj.get("label")
                if label not in HATEXPLAIN_LABELS:
                    raise Reject(f"unknown label {label!r}; expected one of {list(HATEXPLAIN_LABELS)}")
                annotators = _str_list(obj, "annotator_labels", [])
                targets = _targets(obj)
                source = obj.get("source") or "unknown"
                if not isinstance(source, str):
                    raise Reject(f"field 'source' must be a string, got {source!r}")
                if pid in first_seen:
                    raise Reject(f"duplicate post_id {pid!r} (first seen at {first_seen[pid]})")
            except Reject as exc:
                _reject(out, "hatexplain", path, no, line, str(exc))
                continue
            first_seen[pid] = f"{path.name} line {no}"
            out.rows.append(
                {
                    "split": split, "post_id": pid, "text": text, "label": label,
                    "annotator_labels": annotators, "targets": targets, "source": source,
                }
            )
    return out


def load_hatexplain(
    settings: Settings, path: str | Path, progress: Callable[[str], None] | None = None, *,
    post_splits: Sequence[str] | None = None,
) -> dict[str, int]:
    """Load HateXplain (a folder with train/val/test.jsonl, or one such file): the reference labels of every
    split read, and the rows of ``post_splits`` (default: every split read) as bronze posts.

    Each row becomes a row of ``reference/hatexplain`` holding its labels (what the text model trains and is
    evaluated on) and, for the post splits, a text post ``hx-<post_id>`` by author ``hx-<source>`` on its
    split's fixed day (what moderation decides on). Returns counts: ``lines``, ``posts``, ``reference``,
    ``dead_letter`` (new rejects written) and ``rejected`` (rejected lines in this file).
    """
    say = progress or (lambda _msg: None)
    files = _hatexplain_files(Path(path))
    parsed = parse_hatexplain(files)
    say(f"hatexplain: parsed {parsed.lines} lines from {len(files)} file(s), {len(parsed.rejects)} rejected")

    splits = [s for s, _ in files]
    unknown = sorted(set(post_splits or ()) - set(HATEXPLAIN_SPLITS))
    if unknown:
        raise ValueError(f"post_splits {unknown} are not HateXplain splits {list(HATEXPLAIN_SPLITS)}")
    post_days = [HATEXPLAIN_DAYS[s] for s in splits if post_splits is None or s in post_splits]
    # created_at: the split's day plus one second per row, in file order (deterministic, no real time)
    seq: dict[str, int] = {}
    posts = []
    for r in parsed.rows:
        day = HATEXPLAIN_DAYS[r["split"]]
        if day not in post_days:
            continue
        i = seq[r["split"]] = seq.get(r["split"], -1) + 1
        created = dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=i)
        posts.append(
            {
                "post_id": f"hx-{r['post_id']}", "author_id": f"hx-{r['source']}", "kind": "text",
                "caption": r["text"], "hashtags": find_tags(r["text"]), "language": "en",
                "created_at": created, "event_date": day,
            }
        )
    n_posts = lake.replace_partitions(POSTS, _table(POSTS.schema, posts), post_days, settings=settings)
    ref = _table(
        HATEXPLAIN_REF_SCHEMA,
        [
            {
                "post_id": f"hx-{r['post_id']}", "source_post_id": r["post_id"], "split": r["split"],
                "text": r["text"], "label": r["label"], "annotator_labels": r["annotator_labels"],
                "targets": r["targets"], "source": r["source"],
            }
            for r in parsed.rows
        ],
    )
    _write_reference(settings, "hatexplain", ref, "split", splits)
    n_dead = _dead_letter(settings, "loader:hatexplain", parsed.rejects)
    counts = {
        "lines": parsed.lines, "posts": n_posts, "reference": ref.num_rows,
        "rejected": len(parsed.rejects), "dead_letter": n_dead,
    }
    say("hatexplain: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    return counts


# --- CrisisLex T6 ------------------------------------------------------------------------------------


def _parse_time(value) -> dt.datetime:
    if not isinstance(value, str) or not value.strip():
        raise Reject(f"missing or invalid 'created_at': {value!r}")
    try:
        ts = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise Reject(f"unparseable 'created_at': {value!r}") from None
    if ts.tzinfo is None:
        raise Reject(f"'created_at' has no UTC offset: {value!r}")
    return ts.astimezone(dt.timezone.utc)


def parse_crisislex(path: Path) -> _Parsed:
    """Parse a CrisisLex T6 ``stream.jsonl``: good rows and rejected lines."""
    out = _Parsed()
    first_seen: dict[str, tuple[int, dict]] = {}
    for no, line in _lines(path):
        out.lines += 1
        try:
            obj = _json_object(line)
            tid = _id_field(obj, "tweet_id")
            if not tid.isdigit():
                raise Reject(f"tweet_id must be digits, got {tid!r}")
            created = _parse_time(obj.get("created_at"))
            event = _text_field(obj, "event")
            text = _text_field(obj, "text")
            topic = obj.get("on_topic")
            if topic not in CRISISLEX_TOPIC:
                raise Reject(f"unknown on_topic {topic!r}; expected one of {list(CRISISLEX_TOPIC)}")
            tags = find_tags(text) if obj.get("hashtags") is None else normalise_tags(_str_list(obj, "hashtags"))
            if tid in first_seen:
                prev_no, prev_obj = first_seen[tid]
                same = "an identical record" if prev_obj == obj else "a different record"
                raise Reject(f"duplicate tweet_id {tid}: {same} was loaded from line {prev_no}")
        except Reject as exc:
            _reject(out, "crisislex", path, no, line, str(exc))
            continue
        first_seen[tid] = (no, obj)
        out.rows.append(
            {"tweet_id": tid, "created_at": created, "event": event, "text": text, "hashtags": tags, "on_topic": topic}
        )
    return out


def _previous_crisislex_days(settings: Settings) -> set[dt.date]:
    t = lake.open_table(settings.table_uri("reference", "crisislex"))
    if t is None:
        return set()
    return set(t.to_pyarrow_table(columns=["event_date"])["event_date"].unique().to_pylist())


def load_crisislex(
    settings: Settings, path: str | Path, progress: Callable[[str], None] | None = None
) -> dict[str, int]:
    """Load CrisisLex T6 (``stream.jsonl`` or the folder holding it) into bronze posts + ``reference/crisislex``.

    Posts are ``cl-<tweet_id>`` text posts on their UTC day; the author is unknown in the data set, so
    every post is by ``cl-anonymous``. A reload replaces the days of this load and of the previous
    CrisisLex load (so a smaller file does not leave stale rows behind). Returns counts like
    ``load_hatexplain``.
    """
    say = progress or (lambda _msg: None)
    path = Path(path)
    if path.is_dir():
        path = path / "stream.jsonl"
    parsed = parse_crisislex(path)
    say(f"crisislex: parsed {parsed.lines} lines, {len(parsed.rejects)} rejected")
    rows = parsed.rows
    posts = pa.table(
        {
            "post_id": pa.array([f"cl-{r['tweet_id']}" for r in rows], pa.string()),
            "author_id": pa.array(["cl-anonymous"] * len(rows), pa.string()),
            "kind": pa.array(["text"] * len(rows), pa.string()),
            "caption": pa.array([r["text"] for r in rows], pa.string()),
            "hashtags": pa.array([r["hashtags"] for r in rows], pa.list_(pa.string())),
            "language": pa.array(["en"] * len(rows), pa.string()),
            "created_at": pa.array([r["created_at"] for r in rows], TS),
            "event_date": pa.array([r["created_at"].date() for r in rows], pa.date32()),
        }
    )
    days = set(posts["event_date"].unique().to_pylist())
    stale = _previous_crisislex_days(settings) - days
    n_posts = lake.replace_partitions(POSTS, posts, days | stale, settings=settings)
    say(f"crisislex: wrote {n_posts} posts over {len(days)} day(s)")
    ref = pa.table(
        {
            "post_id": posts["post_id"],
            "tweet_id": pa.array([r["tweet_id"] for r in rows], pa.string()),
            "event": pa.array([r["event"] for r in rows], pa.string()),
            "on_topic": pa.array([r["on_topic"] for r in rows], pa.string()),
            "hashtags": posts["hashtags"],
            "created_at": posts["created_at"],
            "event_date": posts["event_date"],
        }
    ).cast(CRISISLEX_REF_SCHEMA)
    # the reference table is small (60k rows): replace it whole
    write_deltalake(settings.table_uri("reference", "crisislex"), ref, mode="overwrite", schema_mode="overwrite")
    n_dead = _dead_letter(settings, "loader:crisislex", parsed.rejects)
    counts = {
        "lines": parsed.lines, "posts": n_posts, "reference": ref.num_rows,
        "rejected": len(parsed.rejects), "dead_letter": n_dead,
    }
    say("crisislex: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    return counts


def _table(schema: pa.Schema, rows: list[dict]) -> pa.Table:
    """Rows -> table with the columns of ``schema`` that the rows carry (missing nullable ones are added later)."""
    if not rows:
        return schema.empty_table()
    names = [n for n in schema.names if n in rows[0]]
    return pa.Table.from_pylist(rows, schema=pa.schema([schema.field(n) for n in names]))


__all__ = [
    "CRISISLEX_SAMPLE", "HATEXPLAIN_DIR", "HATEXPLAIN_SAMPLE", "load_crisislex", "load_hatexplain",
    "parse_crisislex", "parse_hatexplain",
]
