"""Ingest records: the validated shapes the API accepts, their bronze rows, and the Redis Streams envelope.

Two gates guard bronze: pydantic models here reject a bad request at the API (4xx with a precise
message), and the table contracts reject whatever still reaches the drain (dead letters). The row
builders therefore accept either a validated model or the raw JSON dict read back from a stream.

This module must stay light: serving imports it, so it never imports ``socialpulse.lake`` (deltalake).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from socialpulse.contracts import (
    FOLLOW_ACTIONS,
    MIN_USER_AGE,
    OLDEST_BIRTH_YEAR,
    POST_EVENT_TYPES,
    USER_EVENT_TYPES,
    ContractError,
    utc_day,
)
from socialpulse.tags import canonical_tags

EVENTS_STREAM = "ingest:events"
POSTS_STREAM = "ingest:posts"
#: sign-ups and profile changes (bronze users is append-only: the latest row per user_id wins)
USERS_STREAM = "ingest:users"
#: what the feed served (written by the serving tier itself, drained like every other stream)
IMPRESSIONS_STREAM = "ingest:impressions"
STREAMS = (EVENTS_STREAM, POSTS_STREAM, IMPRESSIONS_STREAM, USERS_STREAM)
#: bronze tables each stream feeds, in the order the drain commits them
STREAM_TABLES: dict[str, tuple[str, ...]] = {
    EVENTS_STREAM: ("interactions", "comments", "follows"),
    POSTS_STREAM: ("posts", "media"),
    IMPRESSIONS_STREAM: ("impressions",),
    USERS_STREAM: ("users",),
}
SEEN_PREFIX = "ingest:seen:"

ID_PATTERN = r"^[A-Za-z0-9_\-:.]+$"
#: a client-generated id: 1-64 characters of letters, digits and ``_ - : .``
Id = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=ID_PATTERN)]

MAX_FUTURE = dt.timedelta(minutes=5)
MAX_WATCH_TIME_S = 3600.0
MAX_COMMENT_CHARS = 2000
MAX_CAPTION_CHARS = 2200
MAX_HASHTAGS = 30
MAX_DURATION_S = 600.0
#: a language tag (``en``, ``pt-BR``), as posts and users carry it
Language = Annotated[str, StringConstraints(max_length=35, pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")]

POST_EVENTS = POST_EVENT_TYPES
USER_EVENTS = USER_EVENT_TYPES


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _check_not_future(value: dt.datetime) -> dt.datetime:
    value = value.astimezone(dt.timezone.utc)
    now = utc_now()
    if value > now + MAX_FUTURE:
        raise ValueError(
            f"created_at {value.isoformat()} is more than {int(MAX_FUTURE.total_seconds() // 60)} minutes "
            f"in the future (server time {now.isoformat(timespec='seconds')})"
        )
    return value


class _Record(BaseModel):
    # unknown fields are refused: a typo must not silently drop data
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class EventIn(_Record):
    """One interaction event sent by a client; ``event_id`` makes retries idempotent."""

    event_id: Id
    event_type: Literal["view", "like", "share", "comment", "not_interested", "follow", "unfollow", "block"]
    user_id: Id
    post_id: Id | None = None
    target_user_id: Id | None = None
    watch_time_s: Annotated[float, Field(ge=0, le=MAX_WATCH_TIME_S, allow_inf_nan=False)] | None = None
    text: Annotated[str, StringConstraints(min_length=1, max_length=MAX_COMMENT_CHARS)] | None = None
    created_at: AwareDatetime = Field(default_factory=utc_now, description="defaults to server time")

    @field_validator("created_at")
    @classmethod
    def _created_at_not_future(cls, value: dt.datetime) -> dt.datetime:
        return _check_not_future(value)

    @model_validator(mode="after")
    def _fields_match_event_type(self) -> "EventIn":
        kind = self.event_type
        if kind in POST_EVENTS:
            if self.post_id is None:
                raise ValueError(f"post_id is required for {kind} events")
            if self.target_user_id is not None:
                raise ValueError(f"target_user_id is not allowed for {kind} events (only follow/unfollow)")
        else:
            if self.target_user_id is None:
                raise ValueError(f"target_user_id is required for {kind} events")
            if self.target_user_id == self.user_id:
                raise ValueError(f"target_user_id must differ from user_id (a user cannot {kind} themselves)")
            if self.post_id is not None:
                raise ValueError(f"post_id is not allowed for {kind} events")
        if kind == "view":
            if self.watch_time_s is None:
                raise ValueError("watch_time_s is required for view events")
        elif self.watch_time_s is not None:
            raise ValueError(f"watch_time_s is only allowed for view events, not {kind}")
        if kind == "comment":
            if self.text is None:
                raise ValueError("text is required for comment events")
            if not self.text.strip():
                raise ValueError("text of a comment must not be blank")
        elif self.text is not None:
            raise ValueError(f"text is only allowed for comment events, not {kind}")
        return self


class EventBatch(_Record):
    """A batch of events (1 to ``settings.max_event_batch``; pass it as ``context={'max_events': n}``)."""

    events: list[EventIn] = Field(min_length=1)

    @field_validator("events")
    @classmethod
    def _at_most_max(cls, events: list[EventIn], info: ValidationInfo) -> list[EventIn]:
        limit = (info.context or {}).get("max_events")
        if limit is None:
            from socialpulse.settings import get_settings

            limit = get_settings().max_event_batch
        if len(events) > limit:
            raise ValueError(f"at most {limit} events per batch, got {len(events)}")
        return events


class PostIn(_Record):
    """A new post; its media bytes (video/image) travel beside it and are stored first."""

    post_id: Id
    author_id: Id
    kind: Literal["video", "image", "text"]
    caption: Annotated[str, StringConstraints(max_length=MAX_CAPTION_CHARS)] | None = None
    hashtags: list[str] = Field(default_factory=list, max_length=MAX_HASHTAGS)
    duration_s: Annotated[float, Field(gt=0, le=MAX_DURATION_S, allow_inf_nan=False)] | None = None
    language: Language | None = None
    created_at: AwareDatetime = Field(default_factory=utc_now, description="defaults to server time")

    @field_validator("hashtags")
    @classmethod
    def _normalise_hashtags(cls, tags: list[str]) -> list[str]:
        """Each tag in its canonical form (:mod:`socialpulse.tags`), each once; a non-tag is refused with why."""
        return canonical_tags(tags)

    @field_validator("created_at")
    @classmethod
    def _created_at_not_future(cls, value: dt.datetime) -> dt.datetime:
        return _check_not_future(value)

    @model_validator(mode="after")
    def _duration_matches_kind(self) -> "PostIn":
        if self.kind == "video":
            if self.duration_s is None:
                raise ValueError("duration_s is required for video posts")
        elif self.duration_s is not None:
            raise ValueError(f"duration_s is only allowed for video posts, not {self.kind}")
        if self.kind == "text" and not (self.caption or "").strip():
            raise ValueError("caption is required for text posts")
        return self


class UserIn(_Record):
    """A sign-up or a profile change; the latest row per ``user_id`` (by ``created_at``) is the user."""

    user_id: Id
    handle: Annotated[str, StringConstraints(min_length=1, max_length=30, pattern=r"^[A-Za-z0-9_.]+$")]
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] | None = Field(
        default=None, description="ISO 3166-1 alpha-2 code, e.g. US")
    language: Language | None = None
    is_creator: bool = False
    birth_year: int | None = Field(default=None, description=f"optional; {OLDEST_BIRTH_YEAR} to this year minus "
                                   f"{MIN_USER_AGE} (users are at least {MIN_USER_AGE})")
    created_at: AwareDatetime = Field(default_factory=utc_now, description="defaults to server time")

    @field_validator("birth_year")
    @classmethod
    def _plausible_birth_year(cls, year: int | None) -> int | None:
        latest = utc_now().year - MIN_USER_AGE
        if year is not None and not OLDEST_BIRTH_YEAR <= year <= latest:
            raise ValueError(f"birth_year must be between {OLDEST_BIRTH_YEAR} and {latest} (users must be at least "
                             f"{MIN_USER_AGE}), got {year}")
        return year

    @field_validator("created_at")
    @classmethod
    def _created_at_not_future(cls, value: dt.datetime) -> dt.datetime:
        return _check_not_future(value)

    @property
    def record_id(self) -> str:
        """What a retry repeats: the user and the time of the change (a later change of the same user is new)."""
        return f"{self.user_id}@{self.created_at.isoformat()}"


class MediaObject(BaseModel):
    """A media file in the media store (content addressed by sha256)."""

    uri: str
    key: str = Field(description="path relative to the media store root")
    content_type: str
    size: int
    sha256: str


# --- bronze rows (pure) -----------------------------------------------------------------------------


def _as_dict(record: BaseModel | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(record, BaseModel):
        return record.model_dump(mode="python")
    if not isinstance(record, Mapping):
        raise ContractError(f"record must be a JSON object, got {type(record).__name__}")
    return dict(record)


def _timestamp(value: Any, table: str, field: str = "created_at") -> dt.datetime:
    if isinstance(value, dt.datetime):
        ts = value
    elif isinstance(value, str):
        try:
            ts = dt.datetime.fromisoformat(value)
        except ValueError:
            raise ContractError(f"{table}.{field}: cannot parse {value!r} as an ISO-8601 timestamp") from None
    else:
        raise ContractError(f"{table}.{field}: expected an ISO-8601 timestamp, got {value!r}")
    if ts.tzinfo is None:
        raise ContractError(f"{table}.{field}: timestamp {value!r} has no time zone")
    return ts.astimezone(dt.timezone.utc)


def event_rows(event: EventIn | Mapping[str, Any]) -> dict[str, list[dict]]:
    """Bronze rows of one event: an interactions row always, plus comments or follows where it applies."""
    e = _as_dict(event)
    created_at = _timestamp(e.get("created_at"), "interactions")
    day = utc_day(created_at)
    kind = e.get("event_type")
    rows: dict[str, list[dict]] = {
        "interactions": [
            {
                "event_id": e.get("event_id"),
                "event_type": kind,
                "user_id": e.get("user_id"),
                "post_id": e.get("post_id"),
                "target_user_id": e.get("target_user_id"),
                "watch_time_s": e.get("watch_time_s"),
                "created_at": created_at,
                "event_date": day,
            }
        ]
    }
    if kind == "comment":
        rows["comments"] = [
            {
                "comment_id": e.get("event_id"),
                "post_id": e.get("post_id"),
                "user_id": e.get("user_id"),
                "text": e.get("text"),
                "created_at": created_at,
                "event_date": day,
            }
        ]
    elif kind in FOLLOW_ACTIONS:
        rows["follows"] = [
            {
                "event_id": e.get("event_id"),
                "follower_id": e.get("user_id"),
                "followee_id": e.get("target_user_id"),
                "action": kind,
                "created_at": created_at,
                "event_date": day,
            }
        ]
    return rows


def post_rows(
    post: PostIn | Mapping[str, Any], media: MediaObject | Mapping[str, Any] | None = None
) -> dict[str, list[dict]]:
    """Bronze rows of one post: a posts row, plus a media row when it carries media."""
    p = _as_dict(post)
    p.pop("media", None)
    created_at = _timestamp(p.get("created_at"), "posts")
    day = utc_day(created_at)
    m = _as_dict(media) if media is not None else None
    rows: dict[str, list[dict]] = {
        "posts": [
            {
                "post_id": p.get("post_id"),
                "author_id": p.get("author_id"),
                "kind": p.get("kind"),
                "caption": p.get("caption"),
                "hashtags": p.get("hashtags", []),
                "media_uri": m.get("uri") if m else None,
                "duration_s": p.get("duration_s"),
                "language": p.get("language"),
                "created_at": created_at,
                "event_date": day,
            }
        ]
    }
    if m is not None:
        sha = m.get("sha256")
        rows["media"] = [
            {
                "media_id": f"{p.get('post_id')}:{sha[:16]}" if isinstance(sha, str) else None,
                "post_id": p.get("post_id"),
                "uri": m.get("uri"),
                "content_type": m.get("content_type"),
                "size_bytes": m.get("size"),
                "sha256": sha,
                "created_at": created_at,
                "event_date": day,
            }
        ]
    return rows


class ImpressionIn(_Record):
    """One post the feed served: built by the serving tier, never sent by a client."""

    impression_id: Id
    request_id: Id
    user_id: Id
    post_id: Id
    position: Annotated[int, Field(ge=0)]
    source: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    model_version: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    score: float | None = None
    served_at: AwareDatetime


def impression_rows(impression: ImpressionIn | Mapping[str, Any]) -> dict[str, list[dict]]:
    """The bronze impressions row of one served post."""
    i = _as_dict(impression)
    served_at = _timestamp(i.get("served_at"), "impressions", "served_at")
    row = {k: i.get(k) for k in ("impression_id", "request_id", "user_id", "post_id", "position", "source",
                                 "model_version", "score")}
    return {"impressions": [{**row, "served_at": served_at, "event_date": utc_day(served_at)}]}


def user_rows(user: UserIn | Mapping[str, Any]) -> dict[str, list[dict]]:
    """The bronze users row of a sign-up or profile change."""
    u = _as_dict(user)
    row = {k: u.get(k) for k in ("user_id", "handle", "country", "language", "is_creator", "birth_year")}
    return {"users": [{**row, "created_at": _timestamp(u.get("created_at"), "users")}]}


def post_payload(post: PostIn, media: MediaObject | None) -> str:
    """The stream payload of a post: the validated record plus its media object (or null)."""
    body = post.model_dump(mode="json")
    body["media"] = media.model_dump(mode="json") if media is not None else None
    return json.dumps(body, separators=(",", ":"))


def payload_rows(stream: str, payload: Mapping[str, Any]) -> dict[str, list[dict]]:
    """Bronze rows of one stream payload (the drain's dispatcher)."""
    if not isinstance(payload, Mapping):
        raise ContractError(f"record must be a JSON object, got {type(payload).__name__}")
    if stream == EVENTS_STREAM:
        return event_rows(payload)
    if stream == POSTS_STREAM:
        return post_rows(payload, payload.get("media"))
    if stream == IMPRESSIONS_STREAM:
        return impression_rows(payload)
    if stream == USERS_STREAM:
        return user_rows(payload)
    raise ValueError(f"unknown ingest stream {stream!r}; known: {list(STREAMS)}")


# --- Redis Streams envelope ---------------------------------------------------------------------------

# Atomically: every record's id is checked first (SET NX EX of its seen key, valued with the owner, the user
# who sent it); when any id is already held by another owner, nothing is written and those ids are returned
# negative. Otherwise each new record is appended to the stream; a retried id of the same owner is a
# duplicate. A retried request therefore never duplicates, nobody can take or shadow another user's ids, and
# nothing is half-written (Lua scripts run atomically). Seen keys written before owners were recorded hold '1'
# and count as the caller's own.
# KEYS[1] = stream, KEYS[1+i] = seen key of record i; ARGV[1] = ttl, ARGV[3i-1], ARGV[3i], ARGV[3i+1] = id,
# payload, owner of record i. Returns one flag per record: 1 appended, 0 duplicate, -1 id held by another owner.
_ENQUEUE_LUA = """
local ttl = tonumber(ARGV[1])
local flags = {}
local conflict = false
for i = 2, #KEYS do
  local held = redis.call('GET', KEYS[i])
  if held == false then
    flags[#flags + 1] = 1
  elseif held == ARGV[3 * (i - 1) + 1] or held == '1' then
    flags[#flags + 1] = 0
  else
    flags[#flags + 1] = -1
    conflict = true
  end
end
if conflict then return flags end
for i = 2, #KEYS do
  if flags[i - 1] == 1 then
    local id = ARGV[3 * (i - 1) - 1]
    local payload = ARGV[3 * (i - 1)]
    redis.call('SET', KEYS[i], ARGV[3 * (i - 1) + 1], 'EX', ttl)
    redis.call('XADD', KEYS[1], '*', 'id', id, 'payload', payload)
  end
end
return flags
"""


class IdConflict(Exception):
    """Record ids another user already holds (nothing of the request was enqueued)."""

    def __init__(self, ids: list[str]):
        super().__init__(", ".join(ids))
        self.ids = ids


def seen_key(stream: str, record_id: str) -> str:
    return f"{SEEN_PREFIX}{stream}:{record_id}"


def enqueue(redis, stream: str, items: Sequence[tuple[str, str]], ttl: int, owner: str | Sequence[str]) -> list[bool]:
    """Append ``(id, payload)`` items to ``stream`` unless their id was seen within ``ttl`` seconds.

    ``owner`` is the user who sends them (one for all, or one per item). Returns one flag per item: True when
    it was appended, False when it was a duplicate (a retry by its owner). Raises :class:`IdConflict`, having
    enqueued nothing, when another user holds any of the ids.
    """
    if not items:
        return []
    if ttl <= 0:
        raise ValueError("ttl must be positive (seconds the ingest dedupe keys live)")
    keys = [stream] + [seen_key(stream, record_id) for record_id, _ in items]
    owners = [owner] * len(items) if isinstance(owner, str) else list(owner)
    args: list[Any] = [int(ttl)]
    for (record_id, payload), who in zip(items, owners, strict=True):
        args.extend((record_id, payload, who))
    flags = [int(f) for f in redis.register_script(_ENQUEUE_LUA)(keys=keys, args=args)]
    taken = [record_id for (record_id, _), f in zip(items, flags) if f < 0]
    if taken:
        raise IdConflict(taken)
    return [f == 1 for f in flags]


def enqueue_events(redis, records: Sequence[EventIn], ttl: int) -> tuple[int, int]:
    """Enqueue validated events on ``ingest:events`` (each owned by its ``user_id``); return ``(accepted,
    duplicates)``."""
    flags = enqueue(redis, EVENTS_STREAM, [(r.event_id, r.model_dump_json(exclude_none=True)) for r in records],
                    ttl, [r.user_id for r in records])
    accepted = sum(flags)
    return accepted, len(flags) - accepted


def impression_items(records: Sequence[ImpressionIn]) -> list[tuple[str, str]]:
    """``(id, payload)`` stream items of served impressions (for :func:`enqueue` or a pipelined XADD)."""
    return [(r.impression_id, r.model_dump_json(exclude_none=True)) for r in records]


def enqueue_post(redis, post: PostIn, media: MediaObject | None, ttl: int) -> bool:
    """Enqueue a validated post (with its stored media) on ``ingest:posts``; False if it was a duplicate."""
    return enqueue(redis, POSTS_STREAM, [(post.post_id, post_payload(post, media))], ttl, post.author_id)[0]


def enqueue_user(redis, user: UserIn, ttl: int) -> bool:
    """Enqueue a validated user row on ``ingest:users``; False if this change was already queued."""
    return enqueue(redis, USERS_STREAM, [(user.record_id, user.model_dump_json(exclude_none=True))], ttl,
                   user.user_id)[0]
