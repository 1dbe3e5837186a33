"""Notifications: an outbox in Postgres (schema ``notifications``), the rules that decide what is pushed and
when, and its delivery through a provider.

What is notified (each fact once: the outbox's ``dedupe_key`` is unique and every feed writes
``ON CONFLICT DO NOTHING``, so an at-least-once feed makes exactly one notification):

==================  ============================================  ===================================
kind                fact, and who is told                          dedupe key
==================  ============================================  ===================================
new_follower        a user followed a creator (the creator)       ``new_follower:{followee}:{follower}``
milestone           a post's views / a creator's followers         ``milestone:{post|creator}:{metric}:{n}``
                    passed a threshold (the creator)
viral_prediction    a post's predicted virality >= the setting     ``viral:{post}``
hashtag_trending    a tag the creator posted with that day         ``trending:{user}:{tag}:{day}``
                    trends (the creator)
moderation_outcome  a post was limited, held for review or         ``moderation:{post}:{action}``
                    removed (its author)
digest              a window's low-priority notifications of a     ``digest:{user}:{window start}``
                    user who chose digests, as one push
==================  ============================================  ===================================

Feeds: the stream drain (new followers, live, before the batch's Delta commit), the moderation decision
writers (live worker and assets, in their own transaction), and the ``notifications_from_assets`` asset
(milestones, viral predictions, trending hashtags; new followers again as a backstop). A feed never fails
its own path because of notifications (:func:`enqueue_safely`, :class:`LiveFeed`). Facts older than
``notifications_max_age_h`` are not notified, so a backfill never floods anyone.

Delivery (:func:`deliver_due`): due rows are claimed (``queued`` -> ``sending``, committed) before the
provider is called, and marked ``delivered`` after; a retryable error puts the row back with an exponential
backoff, a permanent one or the last attempt marks it ``failed``. **At most once**: a row left in ``sending``
(a crash between the claim and the confirmation) is never sent again; :func:`expire_unconfirmed` marks it
failed once it is older than ``unconfirmed_after``. Preferences decide per kind (shown at all, pushed or
not), quiet hours defer a push to the end of the window (in the user's zone), and users who chose digests
get their new followers batched into one push per window. In-app reads (``GET /v1/notifications``) show every
notification of an enabled kind at once, whatever its push state, with digests carrying their items.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import random
import re
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field, field_validator

from socialpulse.settings import Settings
from socialpulse.stores.postgres import relation_exists
from socialpulse.tags import normalise_tags

log = logging.getLogger(__name__)

SCHEMA = "notifications"
OUTBOX = f"{SCHEMA}.outbox"
PREFERENCES = f"{SCHEMA}.preferences"
DELIVERIES = f"{SCHEMA}.deliveries"

KINDS = ("new_follower", "milestone", "viral_prediction", "hashtag_trending", "moderation_outcome")
DIGEST = "digest"
#: low-priority kinds: batched into one digest per window for users who chose digests
DIGESTABLE = ("new_follower",)
STATUSES = ("queued", "sending", "delivered", "failed", "digested", "suppressed")
#: the moderation actions an author is told about (``allow`` is the silent default)
MODERATION_NOTIFIED = ("limit", "review", "remove")
VIEW_MILESTONES = (100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000)
FOLLOWER_MILESTONES = (10, 100, 1_000, 10_000, 100_000, 1_000_000)
#: delivery tries before a notification is given up (``failed``)
MAX_ATTEMPTS = 5
#: retry backoff: ``BACKOFF_BASE_S * 2 ** (attempt - 1)``, at most ``BACKOFF_CAP_S``, with jitter
BACKOFF_BASE_S = 30.0
BACKOFF_CAP_S = 3600.0
#: a claimed row not confirmed for this long is marked failed (its outcome is unknown: never re-sent)
UNCONFIRMED_AFTER = dt.timedelta(minutes=15)
#: members listed inside a digest's payload (the in-app read lists them all)
DIGEST_PREVIEW = 10

DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {OUTBOX} (
    id bigserial PRIMARY KEY,
    user_id text NOT NULL,
    kind text NOT NULL CHECK (kind IN ({", ".join(f"'{k}'" for k in (*KINDS, DIGEST))})),
    dedupe_key text NOT NULL UNIQUE,
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    deliver_after timestamptz NOT NULL DEFAULT now(),
    status text NOT NULL DEFAULT 'queued' CHECK (status IN ({", ".join(f"'{s}'" for s in STATUSES)})),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    claimed_at timestamptz,
    last_error text,
    delivered_at timestamptz,
    read_at timestamptz,
    digest_id bigint REFERENCES {OUTBOX} (id)
);
CREATE INDEX IF NOT EXISTS outbox_due_idx ON {OUTBOX} (next_attempt_at) WHERE status = 'queued';
CREATE INDEX IF NOT EXISTS outbox_user_idx ON {OUTBOX} (user_id, id DESC);
CREATE INDEX IF NOT EXISTS outbox_digest_idx ON {OUTBOX} (digest_id) WHERE digest_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS outbox_sending_idx ON {OUTBOX} (claimed_at) WHERE status = 'sending';
CREATE TABLE IF NOT EXISTS {PREFERENCES} (
    user_id text PRIMARY KEY,
    prefs jsonb NOT NULL,
    digest boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {DELIVERIES} (
    id bigserial PRIMARY KEY,
    notification_id bigint NOT NULL,
    user_id text NOT NULL,
    kind text NOT NULL,
    message jsonb NOT NULL,
    delivered_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS deliveries_notification_idx ON {DELIVERIES} (notification_id);
"""


# --- preferences ----------------------------------------------------------------------------------------

_OFFSET = re.compile(r"^(?:UTC)?([+-])(\d{2}):?(\d{2})$")


def parse_zone(name: str) -> dt.tzinfo:
    """An IANA zone (``Europe/Paris``), ``UTC``, or a fixed UTC offset (``+05:30``, ``UTC-08:00``)."""
    m = _OFFSET.match(name)
    if m:
        sign, hours, minutes = m.groups()
        if int(hours) > 14 or int(minutes) > 59:
            raise ValueError(f"UTC offset {name!r} is out of range (-14:00 .. +14:00)")
        delta = dt.timedelta(hours=int(hours), minutes=int(minutes))
        return dt.timezone(-delta if sign == "-" else delta)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name!r}: use an IANA name such as Europe/Paris, or an offset "
                         "such as +02:00") from None


class KindPreference(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(True, description="shown at all (in-app and pushed)")
    push: bool = Field(True, description="pushed to the user's device (when off: in-app only)")


class QuietHours(BaseModel):
    """A daily window in the user's zone during which nothing is pushed; ``start > end`` crosses midnight."""

    model_config = ConfigDict(extra="forbid")
    start: dt.time
    end: dt.time
    timezone: str = Field("UTC", max_length=64, description="IANA zone (Europe/Paris) or UTC offset (+02:00)")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        parse_zone(v)
        return v

    @field_validator("start", "end")
    @classmethod
    def _local(cls, v: dt.time) -> dt.time:
        if v.tzinfo is not None:
            raise ValueError("a local time without a zone (the zone is the timezone field)")
        return v


class PushSubscription(BaseModel):
    """A browser's Web Push subscription (``PushSubscription.toJSON()``)."""

    model_config = ConfigDict(extra="ignore")
    endpoint: str = Field(pattern=r"^https?://[!-~]+$", max_length=2048)
    keys: dict[Literal["p256dh", "auth"], Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]+=*$", max_length=256)]]

    @field_validator("keys")
    @classmethod
    def _keys(cls, v: dict) -> dict:
        if set(v) != {"p256dh", "auth"}:
            raise ValueError("keys needs both p256dh and auth")
        return v


class Preferences(BaseModel):
    """A user's notification preferences; every field has the default a user who set nothing gets."""

    model_config = ConfigDict(extra="forbid")
    kinds: dict[Literal[KINDS], KindPreference] = Field(default_factory=dict,
                                                        description="per kind; a kind left out is enabled and pushed")
    quiet_hours: QuietHours | None = None
    digest: bool = Field(False, description="batch new followers into one push per digest window")
    push_subscription: PushSubscription | None = None

    def kind(self, kind: str) -> KindPreference:
        return self.kinds.get(kind) or KindPreference()

    def disabled_kinds(self) -> list[str]:
        return [k for k in KINDS if not self.kind(k).enabled]


# --- pure rules ------------------------------------------------------------------------------------------


def quiet_until(now: dt.datetime, quiet: QuietHours | None) -> dt.datetime | None:
    """When ``now`` falls inside the quiet hours, the (UTC) end of that window; else None. A window whose
    start equals its end is empty."""
    if quiet is None or quiet.start == quiet.end:
        return None
    zone = parse_zone(quiet.timezone)
    local = now.astimezone(zone)
    t = local.time().replace(tzinfo=None)
    if quiet.start < quiet.end:
        inside = quiet.start <= t < quiet.end
    else:  # crosses midnight: 22:00-07:00
        inside = t >= quiet.start or t < quiet.end
    if not inside:
        return None
    end = dt.datetime.combine(local.date(), quiet.end, tzinfo=zone)
    if end <= local:
        end = dt.datetime.combine(local.date() + dt.timedelta(days=1), quiet.end, tzinfo=zone)
    return end.astimezone(dt.timezone.utc)


def digest_window(at: dt.datetime, window_s: int) -> tuple[dt.datetime, dt.datetime]:
    """The ``[start, end)`` digest window (aligned on the UTC epoch) that holds ``at``."""
    epoch = at.timestamp()
    start = math.floor(epoch / window_s) * window_s
    return (dt.datetime.fromtimestamp(start, dt.timezone.utc),
            dt.datetime.fromtimestamp(start + window_s, dt.timezone.utc))


def thresholds_crossed(before: float, after: float, thresholds: Sequence[int]) -> list[int]:
    """The thresholds passed when a total grew from ``before`` to ``after`` (``before < t <= after``)."""
    return [t for t in thresholds if before < t <= after]


def backoff_s(attempt: int, rand: float, base: float = BACKOFF_BASE_S, cap: float = BACKOFF_CAP_S) -> float:
    """Seconds before retry number ``attempt`` (1-based): exponential, capped, with "equal jitter"
    (half fixed, half random from ``rand`` in [0, 1)) so failed pushes do not retry in lockstep."""
    delay = min(cap, base * 2 ** max(0, attempt - 1))
    return delay / 2 + delay / 2 * rand


def is_fresh(fact_at: dt.datetime, now: dt.datetime, max_age: dt.timedelta) -> bool:
    """Whether a fact is recent enough to notify (a backfill of old days notifies nobody)."""
    return now - fact_at <= max_age


@dataclass(frozen=True)
class Decision:
    action: Literal["send", "defer", "suppress"]
    until: dt.datetime | None = None
    reason: str | None = None


def plan(kind: str, payload: Mapping, prefs: Preferences, now: dt.datetime, *, needs_subscription: bool) -> Decision:
    """What to do with a due notification: push it now, defer it (quiet hours) or suppress the push (kind
    disabled or not pushed, or nowhere to push to). A digest is pushed when any kind it holds is pushed."""
    kinds = list(payload.get("kinds", {})) if kind == DIGEST else [kind]
    pushed = [k for k in kinds if prefs.kind(k).enabled and prefs.kind(k).push]
    if not pushed:
        return Decision("suppress", reason="push turned off for this kind")
    if needs_subscription and prefs.push_subscription is None:
        return Decision("suppress", reason="no push subscription")
    until = quiet_until(now, prefs.quiet_hours)
    if until is not None:
        return Decision("defer", until=until, reason="quiet hours")
    return Decision("send")


def group_digests(rows: Iterable[Mapping], window_s: int, now: dt.datetime) -> dict[tuple[str, dt.datetime], list]:
    """Queued low-priority rows (``user_id``, ``created_at``) of closed windows, per (user, window start).
    Rows of the window still open wait for it to close."""
    groups: dict[tuple[str, dt.datetime], list] = {}
    for r in rows:
        start, end = digest_window(r["created_at"], window_s)
        if end <= now:
            groups.setdefault((r["user_id"], start), []).append(r)
    return groups


def digest_payload(members: Sequence[Mapping], window_start: dt.datetime, window_s: int) -> dict:
    kinds: dict[str, int] = {}
    for m in members:
        kinds[m["kind"]] = kinds.get(m["kind"], 0) + 1
    return {"count": len(members), "kinds": kinds, "window_start": window_start.isoformat(),
            "window_s": window_s, "preview": [m["payload"] for m in members[:DIGEST_PREVIEW]]}


def _n(value: float) -> str:
    return f"{int(value):,}"


def render(kind: str, payload: Mapping) -> dict[str, str]:
    """The title and body a user reads (push and in-app)."""
    if kind == "new_follower":
        return {"title": "New follower", "body": f"{payload['follower_id']} started following you"}
    if kind == "milestone":
        what = "your post" if payload["subject"] == "post" else "you"
        return {"title": "Milestone reached", "body": f"{what.capitalize()} reached {_n(payload['threshold'])} "
                f"{payload['metric']}"}
    if kind == "viral_prediction":
        return {"title": "Your post is taking off",
                "body": f"Your post is predicted to go viral ({payload['probability']:.0%} likely)"}
    if kind == "hashtag_trending":
        return {"title": f"#{payload['tag']} is trending", "body": f"#{payload['tag']}, which you posted with, "
                "is trending now"}
    if kind == "moderation_outcome":
        body = {"limit": "Your post is age-restricted and will not be recommended",
                "review": "Your post is held for review by a moderator",
                "remove": "Your post was removed"}[payload["action"]]
        reasons = payload.get("reasons") or []
        return {"title": "Moderation decision", "body": body + (f" ({', '.join(reasons)})" if reasons else "")}
    if kind == DIGEST:
        parts = [f"{n} new follower{'s' if n != 1 else ''}" if k == "new_follower" else f"{n} {k}"
                 for k, n in payload["kinds"].items()]
        return {"title": "While you were away", "body": ", ".join(parts)}
    raise ValueError(f"unknown notification kind {kind!r}")


# --- what each feed notifies -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One notification to enqueue."""

    user_id: str
    kind: str
    dedupe_key: str
    payload: dict


def _iso(value) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def follow_items(follows: Iterable[Mapping], now: dt.datetime, max_age: dt.timedelta) -> list[Item]:
    """New follower notifications from bronze ``follows`` rows (``follow`` actions; not self-follows)."""
    out = []
    for f in follows:
        follower, followee = f.get("follower_id"), f.get("followee_id")
        if f.get("action") != "follow" or not follower or not followee or follower == followee:
            continue
        if not is_fresh(f["created_at"], now, max_age):
            continue
        out.append(Item(followee, "new_follower", f"new_follower:{followee}:{follower}",
                        {"follower_id": follower, "followed_at": _iso(f["created_at"])}))
    return out


def moderation_items(decisions: Iterable[Mapping], now: dt.datetime, max_age: dt.timedelta) -> list[Item]:
    """Moderation outcome notifications (limit, review, remove) for their authors, from decision rows."""
    return [Item(d["author_id"], "moderation_outcome", f"moderation:{d['post_id']}:{d['action']}",
                 {"post_id": d["post_id"], "action": d["action"], "reasons": list(d.get("reasons") or [])})
            for d in decisions
            if d["action"] in MODERATION_NOTIFIED and d.get("author_id") and is_fresh(d["created_at"], now, max_age)]


def milestone_items(totals: Iterable[Mapping], subject: str, metric: str, thresholds: Sequence[int]) -> list[Item]:
    """Milestones from rows of (``id``, ``user_id``, ``before``, ``after``): the highest threshold crossed
    (several crossed at once make one notification)."""
    out = []
    for r in totals:
        crossed = thresholds_crossed(r["before"], r["after"], thresholds)
        if crossed:
            t = crossed[-1]
            out.append(Item(r["user_id"], "milestone", f"milestone:{subject}:{r['id']}:{metric}:{t}",
                            {"subject": subject, "id": r["id"], "metric": metric, "threshold": t}))
    return out


def viral_items(predictions: Iterable[Mapping], min_probability: float) -> list[Item]:
    return [Item(p["author_id"], "viral_prediction", f"viral:{p['post_id']}",
                 {"post_id": p["post_id"], "probability": float(p["probability"])})
            for p in predictions if p["probability"] >= min_probability]


def trending_items(posts: Iterable[Mapping], flagged: Iterable[str], day: dt.date) -> list[Item]:
    """A creator whose posts of ``day`` carry a tag flagged as trending that day is told once per tag and day."""
    flagged = set(flagged)
    per: dict[tuple[str, str], list[str]] = {}
    for p in posts:
        for tag in normalise_tags(p.get("hashtags")):
            if tag in flagged and p.get("author_id"):
                per.setdefault((p["author_id"], tag), []).append(p["post_id"])
    return [Item(user, "hashtag_trending", f"trending:{user}:{tag}:{day.isoformat()}",
                 {"tag": tag, "day": day.isoformat(), "post_ids": sorted(ids)[:3]})
            for (user, tag), ids in sorted(per.items())]


# --- the store ------------------------------------------------------------------------------------------

_READY: "weakref.WeakSet[psycopg.Connection]" = weakref.WeakSet()


def ensure_schema(conn: psycopg.Connection) -> None:
    """Create the tables (once per connection), inside the caller's transaction when it has one."""
    if conn in _READY:
        return
    # the DDL's last object exists: skip it (CREATE INDEX IF NOT EXISTS still locks the table against writes,
    # and a feed runs this inside its own, possibly long, transaction)
    if not relation_exists(conn, f"{SCHEMA}.deliveries_notification_idx"):
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('notifications.ddl'))")
            conn.execute(DDL)
    _READY.add(conn)


def enqueue(conn: psycopg.Connection, items: Sequence[Item]) -> int:
    """Insert notifications; one already enqueued under the same dedupe key is skipped. Returns the new rows."""
    if not items:
        return 0
    ensure_schema(conn)
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            f"""INSERT INTO {OUTBOX} (user_id, kind, dedupe_key, payload)
                SELECT u, k, d, p::jsonb FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]) AS t(u, k, d, p)
                ON CONFLICT (dedupe_key) DO NOTHING""",
            ([i.user_id for i in items], [i.kind for i in items], [i.dedupe_key for i in items],
             [json.dumps(i.payload, default=str) for i in items]))
        return cur.rowcount


def enqueue_safely(conn: psycopg.Connection, items: Sequence[Item]) -> int:
    """:func:`enqueue` inside the caller's transaction (a savepoint) for a path that must not fail because of
    notifications: an error is logged and rolled back to the savepoint, the caller's work stands."""
    try:
        return enqueue(conn, items)
    except Exception as exc:  # noqa: BLE001 - never the caller's failure; the savepoint is rolled back
        _READY.discard(conn)
        log.warning("notifications not enqueued (%d items): %s: %s", len(items), type(exc).__name__, exc)
        return 0


class LiveFeed:
    """Enqueue from a live path (the stream drain) on its own lazily opened connection, never failing the
    path: an error is logged and the items dropped (the asset feed re-derives them), and after a failure
    Postgres is not tried again for ``cooldown_s`` (a down Postgres must not slow every batch)."""

    def __init__(self, dsn: str, cooldown_s: float = 30.0):
        self.dsn, self.cooldown_s = dsn, cooldown_s
        self._conn: psycopg.Connection | None = None
        self._failed_at = float("-inf")

    def enqueue(self, items: Sequence[Item]) -> int:
        if not items or time.monotonic() - self._failed_at < self.cooldown_s:
            return 0
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=3)
            return enqueue(self._conn, items)
        except Exception as exc:  # noqa: BLE001 - never the live path's failure
            self._failed_at = time.monotonic()
            log.warning("notifications not enqueued (%d items), Postgres unavailable: %s", len(items), exc)
            self.close()
            return 0

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def get_preferences(conn: psycopg.Connection, user_id: str) -> Preferences:
    ensure_schema(conn)
    row = conn.execute(f"SELECT prefs FROM {PREFERENCES} WHERE user_id = %s", (user_id,)).fetchone()
    return Preferences.model_validate(row[0]) if row else Preferences()


def put_preferences(conn: psycopg.Connection, user_id: str, prefs: Preferences) -> Preferences:
    ensure_schema(conn)
    with conn.transaction():
        conn.execute(
            f"""INSERT INTO {PREFERENCES} (user_id, prefs, digest) VALUES (%s, %s, %s)
                ON CONFLICT (user_id) DO UPDATE SET prefs = EXCLUDED.prefs, digest = EXCLUDED.digest, updated_at = now()""",
            (user_id, Jsonb(prefs.model_dump(mode="json")), prefs.digest))
    return prefs


def _preferences_of(conn: psycopg.Connection, user_ids: Iterable[str]) -> dict[str, Preferences]:
    rows = conn.execute(f"SELECT user_id, prefs FROM {PREFERENCES} WHERE user_id = ANY(%s::text[])",
                        (sorted(set(user_ids)),)).fetchall()
    return {u: Preferences.model_validate(p) for u, p in rows}


# --- delivery -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Notification:
    """A claimed notification, what a provider sends."""

    id: int
    user_id: str
    kind: str
    payload: dict
    created_at: dt.datetime
    attempts: int
    subscription: dict | None = None

    def message(self) -> dict:
        return {"id": self.id, "kind": self.kind, **render(self.kind, self.payload), "data": self.payload}


class DeliveryError(Exception):
    """A provider could not deliver."""


class RetryableDeliveryError(DeliveryError):
    """Worth retrying later (the push service is down, throttling, timing out)."""


class PermanentDeliveryError(DeliveryError):
    """Never worth retrying (the subscription is gone, the request is refused)."""


class Provider(Protocol):
    name: str
    #: whether a user needs a push subscription to be sent anything
    needs_subscription: bool

    def send(self, notification: Notification) -> None:
        """Deliver, or raise :class:`RetryableDeliveryError` / :class:`PermanentDeliveryError`."""


class RecordingProvider:
    """The embedded default: "delivers" by recording the message in ``notifications.deliveries`` (on its own
    connection, committed at once, like a real device receiving it)."""

    name = "recording"
    needs_subscription = False

    def __init__(self, dsn: str):
        self.dsn = dsn
        self._conn: psycopg.Connection | None = None

    def send(self, notification: Notification) -> None:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=3)
            ensure_schema(self._conn)
        except psycopg.OperationalError as exc:  # nothing was recorded: safe to retry
            self.close()
            raise RetryableDeliveryError(f"recording store unavailable: {exc}") from exc
        try:
            self._conn.execute(f"INSERT INTO {DELIVERIES} (notification_id, user_id, kind, message) "
                               "VALUES (%s, %s, %s, %s)",
                               (notification.id, notification.user_id, notification.kind,
                                Jsonb(notification.message())))
        except psycopg.OperationalError as exc:  # the insert may have committed: never retried
            self.close()
            raise PermanentDeliveryError(f"recording outcome unknown: {exc}") from exc

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


#: push service answers that will not change on a retry (RFC 8030: 404/410 the subscription is gone)
_PERMANENT_STATUSES = frozenset({400, 401, 403, 404, 410, 413})


class WebPushProvider:
    """Web Push (RFC 8030 with VAPID, RFC 8292; payload encrypted with aes128gcm, RFC 8291) through
    ``pywebpush``, to the subscription the user's browser registered (their preferences)."""

    name = "webpush"
    needs_subscription = True

    def __init__(self, vapid_private_key: str, vapid_subject: str, *, ttl_s: int = 24 * 3600, timeout_s: float = 10):
        self.vapid_private_key, self.vapid_subject = vapid_private_key, vapid_subject
        self.ttl_s, self.timeout_s = ttl_s, timeout_s

    def send(self, notification: Notification) -> None:
        import requests
        from pywebpush import WebPushException, webpush

        if not notification.subscription:
            raise PermanentDeliveryError("the user has no push subscription")
        try:
            webpush(subscription_info=notification.subscription, data=json.dumps(notification.message(), default=str),
                    vapid_private_key=self.vapid_private_key, vapid_claims={"sub": self.vapid_subject},
                    ttl=self.ttl_s, timeout=self.timeout_s)
        except WebPushException as exc:
            status = getattr(exc.response, "status_code", None)
            if status in _PERMANENT_STATUSES:
                raise PermanentDeliveryError(f"push service answered {status}") from exc
            raise RetryableDeliveryError(f"push service answered {status}") from exc
        except requests.RequestException as exc:
            if _never_connected(exc):
                raise RetryableDeliveryError(f"push service unreachable: {type(exc).__name__}") from exc
            # the request may have reached the push service: a retry could deliver twice
            raise PermanentDeliveryError(f"push outcome unknown: {type(exc).__name__}") from exc

    def close(self) -> None:
        pass


def _never_connected(exc: Exception) -> bool:
    """Whether a request failed before any byte could reach the server (refused, no route, connect timeout)."""
    import requests
    from urllib3.exceptions import NewConnectionError

    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(exc, requests.ConnectionError) and isinstance(reason, NewConnectionError)


def provider_from_settings(settings: Settings) -> Provider:
    """The provider ``SOCIALPULSE_NOTIFICATIONS_PROVIDER`` names (``recording``, the default, or ``webpush``)."""
    if settings.notifications_provider == "webpush":
        return WebPushProvider(settings.webpush_vapid_private_key, settings.webpush_vapid_subject)
    return RecordingProvider(settings.postgres)


def deliver(settings: Settings, limit: int = 500) -> "DeliveryResult":
    """One delivery pass with the configured provider, on a connection of its own (the delivery job's and the
    CLI's)."""
    provider = provider_from_settings(settings)
    try:
        with psycopg.connect(settings.postgres, autocommit=True, connect_timeout=5) as conn:
            return deliver_due(conn, provider, limit=limit, window_s=settings.notifications_digest_window_s)
    finally:
        provider.close()


@dataclass
class DeliveryResult:
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    deferred: int = 0
    suppressed: int = 0
    digests: int = 0
    expired: int = 0
    errors: list[str] = field(default_factory=list)


def expire_unconfirmed(conn: psycopg.Connection, now: dt.datetime, older_than: dt.timedelta = UNCONFIRMED_AFTER) -> int:
    """Mark failed the rows claimed (``sending``) before ``now - older_than`` and never confirmed: whether the
    push went out is unknown, and sending again could deliver twice, so they are not retried."""
    ensure_schema(conn)
    with conn.transaction():
        return conn.execute(
            f"UPDATE {OUTBOX} SET status = 'failed', last_error = %s WHERE status = 'sending' AND claimed_at < %s",
            ("unconfirmed: the delivery outcome is unknown (the sender stopped between the claim and the "
             "confirmation); not re-sent", now - older_than)).rowcount


def fold_digests(conn: psycopg.Connection, now: dt.datetime, window_s: int) -> int:
    """Fold the queued low-priority notifications of digest users, per closed window, into one digest each
    (members marked ``digested`` and linked to it; members of a kind the user disabled are suppressed)."""
    ensure_schema(conn)
    made = 0
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"""SELECT o.id, o.user_id, o.kind, o.payload, o.created_at FROM {OUTBOX} o
                JOIN {PREFERENCES} p ON p.user_id = o.user_id AND p.digest
                WHERE o.status = 'queued' AND o.kind = ANY(%s) AND o.created_at < %s
                ORDER BY o.id FOR UPDATE OF o SKIP LOCKED""",
            (list(DIGESTABLE), now)).fetchall()
        groups = group_digests(rows, window_s, now)
        prefs = _preferences_of(conn, {u for u, _ in groups})
        for (user, start), members in groups.items():
            p = prefs.get(user, Preferences())
            off = [m["id"] for m in members if not p.kind(m["kind"]).enabled]
            members = [m for m in members if p.kind(m["kind"]).enabled]
            if off:
                cur.execute(f"UPDATE {OUTBOX} SET status = 'suppressed', last_error = 'kind disabled' "
                            "WHERE id = ANY(%s)", (off,))
            if not members:
                continue
            key = f"digest:{user}:{start.isoformat()}"
            digest_id = cur.execute(
                f"""INSERT INTO {OUTBOX} (user_id, kind, dedupe_key, payload) VALUES (%s, %s, %s, %s)
                    ON CONFLICT (dedupe_key) DO UPDATE SET dedupe_key = EXCLUDED.dedupe_key RETURNING id""",
                (user, DIGEST, key, Jsonb(digest_payload(members, start, window_s)))).fetchone()["id"]
            cur.execute(f"UPDATE {OUTBOX} SET status = 'digested', digest_id = %s WHERE id = ANY(%s)",
                        (digest_id, [m["id"] for m in members]))
            made += 1
    return made


def _due_where() -> str:
    # low-priority kinds of digest users are folded (fold_digests), never pushed one by one
    return (f"o.status = 'queued' AND o.deliver_after <= %(now)s AND o.next_attempt_at <= %(now)s "
            f"AND NOT (o.kind = ANY(%(digestable)s) AND EXISTS "
            f"(SELECT 1 FROM {PREFERENCES} p WHERE p.user_id = o.user_id AND p.digest))")


def due_count(conn: psycopg.Connection, now: dt.datetime, window_s: int) -> int:
    """Notifications to push now, plus low-priority ones whose digest window has closed (what a delivery run
    would work on): the delivery sensor's question."""
    ensure_schema(conn)
    args = {"now": now, "digestable": list(DIGESTABLE)}
    due = conn.execute(f"SELECT count(*) FROM {OUTBOX} o WHERE {_due_where()}", args).fetchone()[0]
    foldable = conn.execute(
        f"""SELECT count(*) FROM {OUTBOX} o JOIN {PREFERENCES} p ON p.user_id = o.user_id AND p.digest
            WHERE o.status = 'queued' AND o.kind = ANY(%(digestable)s) AND o.created_at < %(closed)s""",
        {**args, "closed": digest_window(now, window_s)[0]}).fetchone()[0]
    return due + foldable


def claim(conn: psycopg.Connection, now: dt.datetime) -> dict | None:
    """Claim the next due notification (``queued`` -> ``sending``, with its user's stored preferences) and
    commit: from here on it is never claimed again, whatever happens to this sender. One at a time, so a
    sender that dies strands only the notification it was sending."""
    ensure_schema(conn)
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"""UPDATE {OUTBOX} SET status = 'sending', claimed_at = %(now)s
                WHERE id = (SELECT o.id FROM {OUTBOX} o WHERE {_due_where()}
                            ORDER BY o.next_attempt_at, o.id LIMIT 1 FOR UPDATE SKIP LOCKED)
                RETURNING id, user_id, kind, payload, created_at, attempts,
                          (SELECT p.prefs FROM {PREFERENCES} p WHERE p.user_id = {OUTBOX}.user_id) AS prefs""",
            {"now": now, "digestable": list(DIGESTABLE)}).fetchone()


def _set(conn: psycopg.Connection, nid: int, assignments: str, args: tuple = ()) -> None:
    with conn.transaction():
        conn.execute(f"UPDATE {OUTBOX} SET {assignments} WHERE id = %s AND status = 'sending'", (*args, nid))


def deliver_due(conn: psycopg.Connection, provider: Provider, *, now: Callable[[], dt.datetime] | None = None,
                limit: int = 500, window_s: int = 3600, max_attempts: int = MAX_ATTEMPTS,
                rand: Callable[[], float] = random.random,
                unconfirmed_after: dt.timedelta = UNCONFIRMED_AFTER) -> DeliveryResult:
    """One delivery pass: age out unconfirmed claims, fold digests, then claim the due notifications one by one
    (at most ``limit``) and push each at most once (its claim commits before the provider is called)."""
    if not conn.autocommit:  # each step must commit on its own: the claim above all, before anything is sent
        raise ValueError("deliver_due needs an autocommit connection")
    clock = now or (lambda: dt.datetime.now(dt.timezone.utc))
    result = DeliveryResult()
    result.expired = expire_unconfirmed(conn, clock(), unconfirmed_after)
    result.digests = fold_digests(conn, clock(), window_s)
    for _ in range(limit):
        r = claim(conn, clock())
        if r is None:
            break
        p = Preferences.model_validate(r["prefs"]) if r["prefs"] else Preferences()
        decision = plan(r["kind"], r["payload"], p, clock(), needs_subscription=provider.needs_subscription)
        if decision.action == "suppress":
            _set(conn, r["id"], "status = 'suppressed', last_error = %s", (decision.reason,))
            result.suppressed += 1
            continue
        if decision.action == "defer":
            _set(conn, r["id"], "status = 'queued', deliver_after = %s", (decision.until,))
            result.deferred += 1
            continue
        sub = p.push_subscription.model_dump() if p.push_subscription else None
        note = Notification(r["id"], r["user_id"], r["kind"], r["payload"], r["created_at"], r["attempts"], sub)
        attempt = r["attempts"] + 1
        try:
            provider.send(note)
        except RetryableDeliveryError as exc:
            if attempt >= max_attempts:
                _set(conn, r["id"], "status = 'failed', attempts = %s, last_error = %s",
                     (attempt, f"gave up after {attempt} attempts: {exc}"))
                result.failed += 1
            else:
                retry_at = clock() + dt.timedelta(seconds=backoff_s(attempt, rand()))
                _set(conn, r["id"], "status = 'queued', attempts = %s, next_attempt_at = %s, last_error = %s",
                     (attempt, retry_at, str(exc)))
                result.retried += 1
            result.errors.append(f"{r['id']}: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 - permanent, or an unexpected error: whether it went out is unknown
            _set(conn, r["id"], "status = 'failed', attempts = %s, last_error = %s",
                 (attempt, str(exc) if isinstance(exc, PermanentDeliveryError) else f"{type(exc).__name__}: {exc}"))
            result.failed += 1
            result.errors.append(f"{r['id']}: {exc}")
            continue
        _set(conn, r["id"], "status = 'delivered', attempts = %s, delivered_at = %s", (attempt, clock()))
        result.delivered += 1
    return result


# --- in-app reads ---------------------------------------------------------------------------------------


class NotificationsNotBuilt(LookupError):
    """The notifications tables do not exist yet."""


def _public(row: Mapping) -> dict:
    return {"id": row["id"], "kind": row["kind"], **render(row["kind"], row["payload"]), "data": row["payload"],
            "created_at": row["created_at"].isoformat(), "read": row["read_at"] is not None,
            "pushed": row["status"] == "delivered"}


def list_for_user(conn: psycopg.Connection, user_id: str, *, unread_only: bool = False, limit: int = 20,
                  before_id: int | None = None) -> tuple[list[dict], int | None]:
    """A user's notifications of enabled kinds, newest first (a digest carries its ``items``; digested
    notifications show only inside their digest), and the cursor of the next page (None at the end)."""
    ensure_schema(conn)
    disabled = get_preferences(conn, user_id).disabled_kinds()
    where = ["user_id = %s", "status <> 'digested'", "NOT (kind = ANY(%s::text[]))"]
    args: list[Any] = [user_id, disabled]
    if unread_only:
        where.append("read_at IS NULL")
    if before_id is not None:
        where.append("id < %s")
        args.append(before_id)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(f"SELECT id, kind, payload, status, created_at, read_at FROM {OUTBOX} "
                           f"WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT %s", (*args, limit + 1)).fetchall()
        page, more = rows[:limit], len(rows) > limit
        digests = [r["id"] for r in page if r["kind"] == DIGEST]
        members: dict[int, list[dict]] = {}
        if digests:
            for m in cur.execute(f"SELECT id, kind, payload, status, created_at, read_at, digest_id FROM {OUTBOX} "
                                 "WHERE digest_id = ANY(%s) ORDER BY id DESC", (digests,)).fetchall():
                members.setdefault(m["digest_id"], []).append(_public(m))
    items = []
    for r in page:
        item = _public(r)
        if r["kind"] == DIGEST:
            item["items"] = members.get(r["id"], [])
        items.append(item)
    return items, (page[-1]["id"] if more else None)


def mark_read(conn: psycopg.Connection, user_id: str, ids: Sequence[int], now: dt.datetime) -> dict:
    """Mark a user's notifications read (a digest with its items); ids that are not the user's are reported
    back as ``not_found``, never touched."""
    ensure_schema(conn)
    with conn.transaction():
        owned = {r[0] for r in conn.execute(f"SELECT id FROM {OUTBOX} WHERE user_id = %s AND id = ANY(%s)",
                                            (user_id, list(ids))).fetchall()}
        marked = conn.execute(
            f"UPDATE {OUTBOX} SET read_at = %s WHERE user_id = %s AND read_at IS NULL "
            "AND (id = ANY(%s::bigint[]) OR digest_id = ANY(%s::bigint[]))", (now, user_id, sorted(owned), sorted(owned))).rowcount
    return {"marked": marked, "not_found": sorted(set(ids) - owned)}


# --- the asset feed -------------------------------------------------------------------------------------


def asset_items(conn: psycopg.Connection, day: dt.date, posts: Iterable[Mapping], follows: Iterable[Mapping],
                now: dt.datetime, settings: Settings) -> list[Item]:
    """What the assets notify for one UTC day: view and follower milestones (metrics tables), posts predicted
    to go viral (virality predictions), creators' trending hashtags (trend scores x the day's posts), and
    new followers again (the live drain's backstop). Nothing for a day older than the notification age."""
    max_age = dt.timedelta(hours=settings.notifications_max_age_h)
    day_end = min(now, dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.timezone.utc))
    items = follow_items(follows, now, max_age)
    if not is_fresh(day_end, now, max_age):
        return items
    with conn.cursor(row_factory=dict_row) as cur:
        if relation_exists(conn, "metrics.post_metrics_daily"):
            rows = cur.execute(
                """SELECT post_id AS id, author_id AS user_id, coalesce(sum(views) FILTER (WHERE day < %(d)s), 0) AS before,
                          sum(views) AS after
                   FROM metrics.post_metrics_daily
                   WHERE day <= %(d)s AND post_id IN (SELECT post_id FROM metrics.post_metrics_daily
                                                      WHERE day = %(d)s AND views > 0)
                   GROUP BY post_id, author_id""", {"d": day}).fetchall()
            items += milestone_items(rows, "post", "views", VIEW_MILESTONES)
        if relation_exists(conn, "metrics.creator_metrics_daily"):
            rows = cur.execute(
                """SELECT creator_id AS id, creator_id AS user_id,
                          coalesce(sum(followers_gained - followers_lost) FILTER (WHERE day < %(d)s), 0) AS before,
                          sum(followers_gained - followers_lost) AS after
                   FROM metrics.creator_metrics_daily
                   WHERE day <= %(d)s AND creator_id IN (SELECT creator_id FROM metrics.creator_metrics_daily
                                                         WHERE day = %(d)s AND followers_gained > 0)
                   GROUP BY creator_id""", {"d": day}).fetchall()
            items += milestone_items(rows, "creator", "followers", FOLLOWER_MILESTONES)
        if relation_exists(conn, "virality.predictions"):
            rows = cur.execute("SELECT post_id, author_id, probability FROM virality.predictions "
                               "WHERE probability >= %s AND post_created_at >= %s",
                               (settings.notifications_viral_probability, now - max_age)).fetchall()
            items += viral_items(rows, settings.notifications_viral_probability)
        if relation_exists(conn, "trends.hashtag_scores"):
            flagged = [r["tag"] for r in cur.execute(
                "SELECT DISTINCT tag FROM trends.hashtag_scores WHERE day = %s AND flagged", (day,)).fetchall()]
            items += trending_items(posts, flagged, day)
    return items
