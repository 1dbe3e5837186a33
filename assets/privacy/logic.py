"""Pure logic of a user's deletion and export: which columns name a user or a post, how the user's ids are
recognised inside free text, keys and JSON values, and how a JSON value is scrubbed of them.

Matching is by whole id: an id counts only where it is not part of a longer id (``u-1`` never matches inside
``u-10``), with ids made of ``[A-Za-z0-9_.:-]``. ``:`` is a separator here (Redis key names such as
``feed:seen:<user>``), so it does not extend an id.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

#: columns that hold a user id, in any table of any store (a new table with one of these is covered)
USER_COLUMNS = (
    "user_id", "author_id", "creator_id", "target_user_id", "follower_id", "followee_id", "viewer_id",
    "actor_id", "owner_id", "recipient_id", "sender_id", "blocked_user_id", "reporter_id", "appellant_id",
    "subject_user_id", "reviewer_id",
)
#: columns that hold a post id
POST_COLUMNS = ("post_id", "target_post_id", "source_post_id", "parent_post_id")
#: columns of the user's own records (the ids their ingest dedup keys are named by)
RECORD_COLUMNS = ("event_id", "comment_id", "impression_id", "media_id", "record_id")
#: characters that continue an id (``:`` deliberately not: it separates key parts)
_ID_CHARS = "A-Za-z0-9_.\\-"

#: the order of a deletion's steps (each idempotent, each recorded when done)
DELETE_STEPS = ("plan", "streams", "lake", "lake_vacuum", "postgres", "redis", "media", "exports")


@dataclass
class Plan:
    """What a deletion removes, found before anything is removed (stored with the request, dropped at the end)."""

    user_id: str
    handles: list[str] = field(default_factory=list)
    post_ids: list[str] = field(default_factory=list)
    #: media files of the user's posts: ``{"uri", "sha256"}``
    media: list[dict[str, str | None]] = field(default_factory=list)
    #: ids of the records the user sent (events, comments, impressions): their ingest dedup keys
    record_ids: list[str] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        """Every id that identifies the user or their content (what the sweeps look for)."""
        return list(dict.fromkeys([self.user_id, *self.post_ids]))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Plan":
        return cls(**{k: data.get(k) or ([] if k != "user_id" else data["user_id"]) for k in
                      ("user_id", "handles", "post_ids", "media", "record_ids")})


def is_id_column(name: str) -> bool:
    """Whether a column holds ids (of users, posts or anything else), not free text."""
    return name in USER_COLUMNS or name in POST_COLUMNS or name == "id" or name.endswith("_id")


def user_columns(names: Iterable[str]) -> list[str]:
    return [n for n in names if n in USER_COLUMNS]


def post_columns(names: Iterable[str]) -> list[str]:
    return [n for n in names if n in POST_COLUMNS]


def id_regex(ids: Sequence[str]) -> str:
    """A POSIX / RE2 regex (no look-around) that finds any of ``ids`` as a whole id in a text."""
    if not ids:
        raise ValueError("no ids to match")
    alternatives = "|".join(re.escape(i) for i in sorted(set(ids), key=len, reverse=True))
    return f"(^|[^{_ID_CHARS}])({alternatives})($|[^{_ID_CHARS}])"


_SPLIT = re.compile(b"[^" + _ID_CHARS.encode() + b"]+")


class IdMatcher:
    """Finds any of a set of ids as a whole id in bytes or text. A text is cut into tokens at every character
    that cannot continue an id and the tokens are looked up in a set, so the cost does not grow with the
    number of ids (a creator with thousands of posts); ids holding ``:`` (a separator here) go through a regex."""

    def __init__(self, ids: Sequence[str]):
        if not ids:
            raise ValueError("no ids to match")
        self.ids = frozenset(i.encode() for i in ids if ":" not in i)
        colon = sorted({i for i in ids if ":" in i}, key=len, reverse=True)
        chars = _ID_CHARS.encode()
        self._colon = re.compile(b"(?<![" + chars + b"])(?:" + b"|".join(re.escape(i.encode()) for i in colon)
                                 + b")(?![" + chars + b"])") if colon else None

    def search(self, blob: bytes) -> bool:
        if not self.ids.isdisjoint(_SPLIT.split(blob)):
            return True
        return self._colon is not None and self._colon.search(blob) is not None


def id_matcher(ids: Sequence[str]) -> IdMatcher:
    """A matcher finding any of ``ids`` as a whole id (for Redis names and values, files, JSON)."""
    return IdMatcher(ids)


def split_ids(ids: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(ids a token lookup finds, ids holding ':' that need a regex)`` (see :class:`IdMatcher`)."""
    return [i for i in ids if ":" not in i], [i for i in ids if ":" in i]


#: the characters a text is cut at into id tokens (Postgres regexp_split_to_table)
TOKEN_SPLIT = f"[^{_ID_CHARS}]+"


def mentions(value: bytes | str | None, matcher: IdMatcher) -> bool:
    if value is None:
        return False
    if isinstance(value, str):
        value = value.encode()
    return bool(matcher.search(value))


def sql_literal(value: str) -> str:
    """A SQL string literal (for delta-rs predicates, which take no parameters)."""
    return "'" + value.replace("'", "''") + "'"


def delta_predicate(columns: Sequence[str], ids: Sequence[str]) -> str | None:
    """``"col" IN ('a', 'b') OR ...`` over the given columns, or None when there is nothing to match."""
    if not columns or not ids:
        return None
    values = ", ".join(sql_literal(i) for i in sorted(set(ids)))
    return " OR ".join(f'"{c}" IN ({values})' for c in columns)


_REMOVE = object()


def scrub_json(value: Any, matcher: IdMatcher) -> Any:
    """``value`` without what names the user: a matching string goes, a list loses its matching elements (an
    object holding a matching id is a record about the user: it goes whole), an object loses matching keys.
    Returns the sentinel :data:`REMOVE` when the value itself goes."""
    if isinstance(value, str):
        return _REMOVE if mentions(value, matcher) else value
    if isinstance(value, list):
        out = []
        for item in value:
            if isinstance(item, dict) and any(isinstance(v, str) and mentions(v, matcher) for v in item.values()):
                continue
            cleaned = scrub_json(item, matcher)
            if cleaned is not _REMOVE:
                out.append(cleaned)
        return out
    if isinstance(value, dict):
        if any(isinstance(v, str) and mentions(v, matcher) for v in value.values()):
            return _REMOVE
        out = {}
        for k, v in value.items():
            if mentions(k, matcher):
                continue
            cleaned = scrub_json(v, matcher)
            if cleaned is not _REMOVE:
                out[k] = cleaned
        return out
    return value


REMOVE = _REMOVE


def scrub_blob(blob: bytes, matcher: IdMatcher) -> bytes | None:
    """A stored value (Redis string, hash field, list element) without the user: unchanged when it does not
    mention them, the scrubbed JSON when it is JSON, else None (the value goes)."""
    if not mentions(blob, matcher):
        return blob
    try:
        data = json.loads(blob)
    except (ValueError, UnicodeDecodeError):
        return None
    cleaned = scrub_json(data, matcher)
    if cleaned is _REMOVE:
        return None
    out = json.dumps(cleaned, separators=(",", ":")).encode()
    return None if mentions(out, matcher) else out


def older_log_files(names: Iterable[str], checkpoint_version: int) -> list[str]:
    """The ``_delta_log`` entries a table no longer needs once a checkpoint at ``checkpoint_version`` exists:
    every commit, checksum and checkpoint of an earlier version (they carry old add actions, whose column
    statistics can hold a deleted id, and the deletion's own predicate)."""
    out = []
    for name in names:
        m = re.match(r"^(\d{20})\.", name)
        if m and int(m.group(1)) < checkpoint_version:
            out.append(name)
    return sorted(out)
