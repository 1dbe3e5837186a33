"""Bronze table contracts: Arrow schemas declared once, enforced at every write.

Each contract names its key (the id that makes writes idempotent) and its partition column. Event tables
are partitioned by UTC day in a ``date32`` column named ``event_date``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

TS = pa.timestamp("us", tz="UTC")

POST_KINDS = ("video", "image", "text")
#: ``not_interested`` (on a post: fewer posts like it) and ``block`` (on a creator: none of theirs) are the
#: feed's negative feedback; they land in interactions like every other event
POST_EVENT_TYPES = ("view", "like", "share", "comment", "not_interested")
USER_EVENT_TYPES = ("follow", "unfollow", "block")
EVENT_TYPES = POST_EVENT_TYPES + USER_EVENT_TYPES
#: the user events that change the follow graph (bronze follows)
FOLLOW_ACTIONS = ("follow", "unfollow")
#: the youngest a user may be (a birth year after this year minus it is refused), and the earliest birth year
MIN_USER_AGE = 13
OLDEST_BIRTH_YEAR = 1900


class ContractError(ValueError):
    """A batch does not satisfy its table contract; the message says which column and why."""


@dataclass(frozen=True)
class TableContract:
    name: str
    layer: str
    schema: pa.Schema
    key: tuple[str, ...]
    partition_by: tuple[str, ...] = ()
    allowed: dict[str, tuple[str, ...]] = field(default_factory=dict)
    description: str = ""

    @property
    def required(self) -> list[str]:
        return [f.name for f in self.schema if not f.nullable]


def _schema(*fields: pa.Field) -> pa.Schema:
    return pa.schema(list(fields))


def _f(name: str, type_: pa.DataType, nullable: bool = False) -> pa.Field:
    return pa.field(name, type_, nullable=nullable)


USERS = TableContract(
    name="users",
    layer="bronze",
    key=("user_id",),
    description="One row per registered user (append-only; latest row per user_id wins).",
    schema=_schema(
        _f("user_id", pa.string()),
        _f("handle", pa.string()),
        _f("country", pa.string(), True),
        _f("language", pa.string(), True),
        _f("is_creator", pa.bool_()),
        _f("created_at", TS),
        # self-declared at sign-up, optional; the audience's age bands come from it (added after the first
        # tables were written: lake.ensure_table adds it to an existing table, its old rows read as null)
        _f("birth_year", pa.int16(), True),
    ),
)

POSTS = TableContract(
    name="posts",
    layer="bronze",
    key=("post_id",),
    partition_by=("event_date",),
    allowed={"kind": POST_KINDS},
    description="One row per post: kind, caption, hashtags, media reference, duration and language.",
    schema=_schema(
        _f("post_id", pa.string()),
        _f("author_id", pa.string()),
        _f("kind", pa.string()),
        _f("caption", pa.string(), True),
        _f("hashtags", pa.list_(pa.string())),
        _f("media_uri", pa.string(), True),
        _f("duration_s", pa.float32(), True),
        _f("language", pa.string(), True),
        _f("created_at", TS),
        _f("event_date", pa.date32()),
    ),
)

MEDIA = TableContract(
    name="media",
    layer="bronze",
    key=("media_id",),
    partition_by=("event_date",),
    description="One row per stored media object (bytes live in the media store, addressed by sha256).",
    schema=_schema(
        _f("media_id", pa.string()),
        _f("post_id", pa.string()),
        _f("uri", pa.string()),
        _f("content_type", pa.string()),
        _f("size_bytes", pa.int64()),
        _f("sha256", pa.string()),
        _f("created_at", TS),
        _f("event_date", pa.date32()),
    ),
)

INTERACTIONS = TableContract(
    name="interactions",
    layer="bronze",
    key=("event_id",),
    partition_by=("event_date",),
    allowed={"event_type": EVENT_TYPES},
    description="Every interaction event: views (with watch time), likes, shares, comments, not_interested, follows, unfollows, blocks.",
    schema=_schema(
        _f("event_id", pa.string()),
        _f("event_type", pa.string()),
        _f("user_id", pa.string()),
        _f("post_id", pa.string(), True),
        _f("target_user_id", pa.string(), True),
        _f("watch_time_s", pa.float32(), True),
        _f("created_at", TS),
        _f("event_date", pa.date32()),
    ),
)

COMMENTS = TableContract(
    name="comments",
    layer="bronze",
    key=("comment_id",),
    partition_by=("event_date",),
    description="Comment texts; comment_id equals the event_id of the comment interaction.",
    schema=_schema(
        _f("comment_id", pa.string()),
        _f("post_id", pa.string()),
        _f("user_id", pa.string()),
        _f("text", pa.string()),
        _f("created_at", TS),
        _f("event_date", pa.date32()),
    ),
)

FOLLOWS = TableContract(
    name="follows",
    layer="bronze",
    key=("event_id",),
    partition_by=("event_date",),
    allowed={"action": FOLLOW_ACTIONS},
    description="Follow graph changes (follow / unfollow), one row per event.",
    schema=_schema(
        _f("event_id", pa.string()),
        _f("follower_id", pa.string()),
        _f("followee_id", pa.string()),
        _f("action", pa.string()),
        _f("created_at", TS),
        _f("event_date", pa.date32()),
    ),
)

IMPRESSIONS = TableContract(
    name="impressions",
    layer="bronze",
    key=("impression_id",),
    partition_by=("event_date",),
    description="What the feed served: one row per (request, post) with its position, candidate source and model.",
    schema=_schema(
        _f("impression_id", pa.string()),
        _f("request_id", pa.string()),
        _f("user_id", pa.string()),
        _f("post_id", pa.string()),
        _f("position", pa.int32()),
        _f("source", pa.string()),
        _f("model_version", pa.string()),
        _f("score", pa.float32(), True),
        _f("served_at", TS),
        _f("event_date", pa.date32()),
    ),
)

DEAD_LETTER = TableContract(
    name="dead_letter",
    layer="bronze",
    key=("record_id",),
    partition_by=("event_date",),
    description="Records rejected by a contract, with the reason; never silently dropped.",
    schema=_schema(
        _f("record_id", pa.string()),
        _f("source", pa.string()),
        _f("target_table", pa.string()),
        _f("reason", pa.string()),
        _f("payload", pa.string()),
        _f("rejected_at", TS),
        _f("event_date", pa.date32()),
    ),
)

BRONZE: dict[str, TableContract] = {
    c.name: c for c in (USERS, POSTS, MEDIA, INTERACTIONS, COMMENTS, FOLLOWS, IMPRESSIONS, DEAD_LETTER)
}


def conform(contract: TableContract, table: pa.Table | list[dict]) -> pa.Table:
    """Cast ``table`` to the contract's schema (column order, types), or raise ContractError saying why.

    Extra columns are refused (a typo must not silently drop data); missing nullable columns are added
    as nulls; required columns must be present and free of nulls; enumerated columns must hold allowed
    values.
    """
    if isinstance(table, list):
        # every key of every row (from_pylist takes the first row's keys only: an optional field the first row
        # leaves out, such as a user's birth_year, would vanish from the rows that carry it)
        names = list(dict.fromkeys(k for row in table for k in row))
        table = pa.table({n: [row.get(n) for row in table] for n in names}) if table else contract.schema.empty_table()
    extra = set(table.column_names) - set(contract.schema.names)
    if extra:
        raise ContractError(f"{contract.name}: unknown columns {sorted(extra)}")
    columns = []
    for f in contract.schema:
        if f.name not in table.column_names:
            if not f.nullable:
                raise ContractError(f"{contract.name}: required column '{f.name}' is missing")
            columns.append(pa.nulls(table.num_rows, f.type))
            continue
        col = table[f.name]
        try:
            col = col.cast(f.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise ContractError(f"{contract.name}.{f.name}: cannot cast {col.type} to {f.type}: {exc}") from exc
        if not f.nullable and col.null_count:
            raise ContractError(f"{contract.name}.{f.name}: {col.null_count} null value(s) in a required column")
        columns.append(col)
    out = pa.Table.from_arrays(columns, schema=contract.schema)
    for name, values in contract.allowed.items():
        bad = pc.invert(pc.is_in(out[name], value_set=pa.array(values)))
        bad = pc.and_kleene(bad, pc.is_valid(out[name]))
        n_bad = pc.sum(bad).as_py() or 0
        if n_bad:
            sample = pc.filter(out[name], bad)[0].as_py()
            raise ContractError(f"{contract.name}.{name}: {n_bad} value(s) outside {list(values)}, e.g. {sample!r}")
    return out


def utc_day(ts: dt.datetime) -> dt.date:
    """The UTC calendar day of an aware timestamp (naive timestamps are taken as UTC)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.timezone.utc)
    return ts.astimezone(dt.timezone.utc).date()
