"""Notifications on the real stack: the outbox and its de-duplication, delivery (recording provider and Web
Push to a real local endpoint), retries with backoff, at most once across a crash, quiet hours, digests,
preferences, the feeds (stream drain, moderation writers, the asset through Dagster), the delivery job and
sensor, and the API."""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import psycopg
import pyarrow as pa
import pytest
import redis
from click.testing import CliRunner

from cli.main import main as cli_main
from socialpulse import lake, notifications as n
from tests.tokens import bearer

ROOT = Path(__file__).resolve().parents[2]
UTC = dt.timezone.utc
#: a fake "now" for delivery passes, after every row the tests enqueue (rows are due from the real time of
#: their insert), at a known time of day (quiet hours)
T0 = dt.datetime.combine(dt.datetime.now(UTC).date() + dt.timedelta(days=2), dt.time(12, 0, 5), UTC)


class Clock:
    def __init__(self, at: dt.datetime):
        self.at = at

    def __call__(self) -> dt.datetime:
        return self.at

    def advance(self, **kw) -> None:
        self.at += dt.timedelta(**kw)


@pytest.fixture(scope="module")
def stores(own_stores):
    """The session's Postgres and Redis, with a database of this module's own (the outbox is emptied per test;
    a delivery pass claims every due row of its database)."""
    with own_stores("notifications", redis_db=11) as settings:
        yield settings


@pytest.fixture
def conn(stores):
    """An autocommit connection on the module's own Postgres database, with the notifications tables emptied."""
    with psycopg.connect(stores.postgres, autocommit=True) as c:
        n.ensure_schema(c)
        c.execute(f"TRUNCATE {n.OUTBOX}, {n.PREFERENCES}, {n.DELIVERIES} RESTART IDENTITY")
        yield c


def item(user, key, kind="milestone", **payload):
    payload = payload or {"subject": "post", "id": key, "metric": "views", "threshold": 100}
    return n.Item(user, kind, key, payload)


def outbox(conn, **where) -> list[dict]:
    cond = " AND ".join(f"{k} = %s" for k in where) or "true"
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(f"SELECT * FROM {n.OUTBOX} WHERE {cond} ORDER BY id", tuple(where.values())).fetchall()


def delivered_ids(conn) -> list[int]:
    return [r[0] for r in conn.execute(f"SELECT notification_id FROM {n.DELIVERIES} ORDER BY id").fetchall()]


# --- the outbox and delivery ------------------------------------------------------------------------------
def test_the_same_fact_is_enqueued_once(conn):
    items = [item("c1", "milestone:post:p1:views:100"), item("c1", "milestone:post:p2:views:100")]
    assert n.enqueue(conn, items) == 2
    assert n.enqueue(conn, items + [item("c2", "milestone:post:p3:views:100")]) == 1
    assert len(outbox(conn)) == 3 and {r["status"] for r in outbox(conn)} == {"queued"}


def test_recording_provider_delivers_each_notification_once(stores, conn):
    n.enqueue(conn, [item("c1", f"k{i}") for i in range(3)])
    provider = n.RecordingProvider(stores.postgres)
    first = n.deliver_due(conn, provider, now=Clock(T0))
    assert first.delivered == 3 and n.deliver_due(conn, provider, now=Clock(T0)).delivered == 0
    provider.close()
    assert sorted(delivered_ids(conn)) == [r["id"] for r in outbox(conn)]
    assert all(r["status"] == "delivered" and r["attempts"] == 1 and r["delivered_at"] == T0 for r in outbox(conn))
    message = conn.execute(f"SELECT message FROM {n.DELIVERIES} LIMIT 1").fetchone()[0]
    assert message["kind"] == "milestone" and message["body"] == "Your post reached 100 views"


class Flaky:
    """Fails ``failures`` times (retryably), then delivers."""

    name, needs_subscription = "flaky", False

    def __init__(self, failures: int, error=n.RetryableDeliveryError):
        self.failures, self.error, self.sent, self.calls = failures, error, [], 0

    def send(self, note):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error(f"push service down (call {self.calls})")
        self.sent.append(note.id)


def test_retryable_failures_back_off_then_deliver(conn):
    n.enqueue(conn, [item("c1", "k1")])
    clock, provider = Clock(T0), Flaky(2)
    r = n.deliver_due(conn, provider, now=clock, rand=lambda: 0.5)
    assert r.retried == 1 and r.delivered == 0
    row = outbox(conn)[0]
    # attempt 1 failed: base 30 s, equal jitter at 0.5 -> 22.5 s
    assert row["status"] == "queued" and row["attempts"] == 1 and "call 1" in row["last_error"]
    assert row["next_attempt_at"] == T0 + dt.timedelta(seconds=22.5)
    clock.advance(seconds=22)
    assert n.deliver_due(conn, provider, now=clock).retried == 0 and provider.calls == 1  # not due yet
    clock.advance(seconds=1)
    assert n.deliver_due(conn, provider, now=clock, rand=lambda: 0.5).retried == 1
    assert outbox(conn)[0]["next_attempt_at"] == clock.at + dt.timedelta(seconds=45)  # attempt 2: 60 s base
    clock.advance(seconds=45)
    assert n.deliver_due(conn, provider, now=clock).delivered == 1
    row = outbox(conn)[0]
    assert row["status"] == "delivered" and row["attempts"] == 3 and provider.sent == [row["id"]]


def test_too_many_attempts_or_a_permanent_error_fail(conn):
    n.enqueue(conn, [item("c1", "k1")])
    clock, provider = Clock(T0), Flaky(10)
    for _ in range(3):
        n.deliver_due(conn, provider, now=clock, max_attempts=3, rand=lambda: 0.0)
        clock.advance(hours=2)
    row = outbox(conn)[0]
    assert row["status"] == "failed" and row["attempts"] == 3 and row["last_error"].startswith("gave up after 3")
    assert n.deliver_due(conn, provider, now=clock).failed == 0 and provider.calls == 3

    n.enqueue(conn, [item("c1", "k2")])
    n.deliver_due(conn, Flaky(1, n.PermanentDeliveryError), now=clock)
    row = outbox(conn, dedupe_key="k2")[0]
    assert row["status"] == "failed" and row["attempts"] == 1


CRASH = r"""
import os, sys, psycopg
from socialpulse import notifications as n

class CrashAfterSending:
    name, needs_subscription = "crash", False
    def __init__(self, dsn):
        self.recording = n.RecordingProvider(dsn)
    def send(self, note):
        self.recording.send(note)  # the push went out ...
        os._exit(3)                # ... and the sender died before confirming it

with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    n.deliver_due(conn, CrashAfterSending(sys.argv[1]))
"""


def test_a_crash_between_claim_and_confirm_never_sends_twice(stores, conn):
    n.enqueue(conn, [item("c1", "k1"), item("c1", "k2")])
    crashed = subprocess.run([sys.executable, "-c", CRASH, stores.postgres], cwd=ROOT, capture_output=True,
                             text=True, timeout=120)
    assert crashed.returncode == 3, crashed.stderr[-2000:]
    first, second = outbox(conn)
    assert first["status"] == "sending" and delivered_ids(conn) == [first["id"]]
    assert second["status"] == "queued"  # claimed one at a time: only the one in flight is stranded

    provider, clock = n.RecordingProvider(stores.postgres), Clock(dt.datetime.now(UTC))
    assert n.deliver_due(conn, provider, now=clock).delivered == 1  # the other one; never the stranded one
    assert delivered_ids(conn) == [first["id"], second["id"]]
    # the operator's command fails only claims older than it is told (a live sender may have just claimed)
    out = CliRunner().invoke(cli_main, ["notifications", "fail-unconfirmed", "--older-than-s", "3600"])
    assert out.exit_code == 0 and json.loads(out.output) == {"failed": 0}
    clock.advance(minutes=16)  # past UNCONFIRMED_AFTER: marked failed, still not re-sent
    assert n.deliver_due(conn, provider, now=clock).expired == 1
    provider.close()
    row = outbox(conn, id=first["id"])[0]
    assert row["status"] == "failed" and row["last_error"].startswith("unconfirmed")
    assert delivered_ids(conn) == [first["id"], second["id"]]


def test_quiet_hours_defer_the_push(stores, conn):
    n.put_preferences(conn, "c1", n.Preferences(quiet_hours={"start": "11:00", "end": "13:30", "timezone": "UTC"}))
    n.enqueue(conn, [item("c1", "k1"), item("c2", "k2")])
    provider, clock = Flaky(0), Clock(T0)
    r = n.deliver_due(conn, provider, now=clock)
    assert (r.deferred, r.delivered) == (1, 1)
    row = outbox(conn, user_id="c1")[0]
    assert row["status"] == "queued" and row["attempts"] == 0 and row["deliver_after"] == T0.replace(hour=13, minute=30, second=0)
    clock.at = row["deliver_after"] - dt.timedelta(seconds=1)
    assert n.deliver_due(conn, provider, now=clock).delivered == 0
    clock.advance(seconds=1)
    assert n.deliver_due(conn, provider, now=clock).delivered == 1 and outbox(conn, user_id="c1")[0]["status"] == "delivered"


def test_followers_fold_into_one_digest_per_window(stores, conn):
    n.put_preferences(conn, "c1", n.Preferences(digest=True))
    followers = [n.Item("c1", "new_follower", f"new_follower:c1:u{i}", {"follower_id": f"u{i}"}) for i in range(3)]
    n.enqueue(conn, followers + [item("c1", "k1"), n.Item("c2", "new_follower", "new_follower:c2:u1",
                                                               {"follower_id": "u1"})])
    created = outbox(conn)[0]["created_at"]
    start, end = n.digest_window(created, 3600)
    provider, clock = Flaky(0), Clock(created)
    r = n.deliver_due(conn, provider, now=clock, window_s=3600)
    # the milestone and c2's follower (no digest chosen) go now; c1's followers wait for the window to close
    assert r.delivered == 2 and r.digests == 0
    assert n.due_count(conn, clock(), 3600) == 0
    clock.at = end
    assert n.due_count(conn, clock(), 3600) == 3
    r = n.deliver_due(conn, provider, now=clock, window_s=3600)
    assert (r.digests, r.delivered) == (1, 1)
    digest = outbox(conn, kind="digest")[0]
    assert digest["dedupe_key"] == f"digest:c1:{start.isoformat()}" and digest["status"] == "delivered"
    assert digest["payload"]["count"] == 3 and digest["payload"]["kinds"] == {"new_follower": 3}
    members = outbox(conn, digest_id=digest["id"])
    assert len(members) == 3 and {m["status"] for m in members} == {"digested"}
    assert provider.sent[-1] == digest["id"] and len(provider.sent) == 3

    items, cursor = n.list_for_user(conn, "c1")
    assert [i["kind"] for i in items] == ["digest", "milestone"] and cursor is None
    assert items[0]["body"] == "3 new followers" and len(items[0]["items"]) == 3
    assert n.mark_read(conn, "c1", [digest["id"]], clock()) == {"marked": 4, "not_found": []}
    assert n.list_for_user(conn, "c1", unread_only=True)[0] == [items[1] | {"read": False}]


def test_preferences_suppress_pushes_and_hide_disabled_kinds(stores, conn):
    n.put_preferences(conn, "c1", n.Preferences(kinds={"milestone": {"push": False},
                                                       "viral_prediction": {"enabled": False}}))
    n.enqueue(conn, [item("c1", "k1"), n.Item("c1", "viral_prediction", "viral:p1", {"post_id": "p1",
                                                                                      "probability": 0.9})])
    r = n.deliver_due(conn, Flaky(0), now=Clock(T0))
    assert r.suppressed == 2 and r.delivered == 0
    items, _ = n.list_for_user(conn, "c1")
    assert [(i["kind"], i["pushed"]) for i in items] == [("milestone", False)]  # in-app only; viral hidden


# --- Web Push to a real endpoint -------------------------------------------------------------------------
class PushService(BaseHTTPRequestHandler):
    received: list = []
    answers: dict = {}

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        PushService.received.append({"path": self.path, "headers": dict(self.headers), "body": body})
        if self.path == "/push/drop":
            return  # the connection closes with no answer: did the push go out?
        self.send_response(PushService.answers.get(self.path, 201))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.fixture
def push_service():
    server = ThreadingHTTPServer(("127.0.0.1", 0), PushService)
    PushService.received, PushService.answers = [], {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_web_push_sends_an_encrypted_vapid_signed_push(stores, conn, push_service, tmp_path):
    import http_ece
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
    from py_vapid import Vapid02

    # the browser's side: a P-256 key pair and an auth secret, registered as the user's subscription
    browser_key, auth = ec.generate_private_key(ec.SECP256R1()), b"0123456789abcdef"
    p256dh = browser_key.public_key().public_bytes(serialization.Encoding.X962,
                                                   serialization.PublicFormat.UncompressedPoint)
    sub = {"endpoint": f"{push_service}/push/alice", "keys": {"p256dh": _b64(p256dh), "auth": _b64(auth)}}
    n.put_preferences(conn, "alice", n.Preferences(push_subscription=sub))
    n.put_preferences(conn, "gone", n.Preferences(push_subscription={**sub, "endpoint": f"{push_service}/push/gone"}))
    n.put_preferences(conn, "busy", n.Preferences(push_subscription={**sub, "endpoint": f"{push_service}/push/busy"}))
    n.put_preferences(conn, "drop", n.Preferences(push_subscription={**sub, "endpoint": f"{push_service}/push/drop"}))
    from socialpulse.services.manager import free_port

    n.put_preferences(conn, "refused", n.Preferences(push_subscription={
        **sub, "endpoint": f"http://127.0.0.1:{free_port()}/push/refused"}))
    PushService.answers = {"/push/gone": 410, "/push/busy": 503}
    vapid = Vapid02()
    vapid.generate_keys()
    vapid.save_key(str(tmp_path / "vapid.pem"))
    provider = n.provider_from_settings(stores.model_copy(update={
        "notifications_provider": "webpush", "webpush_vapid_private_key": str(tmp_path / "vapid.pem"),
        "webpush_vapid_subject": "mailto:ops@example.org"}))
    assert isinstance(provider, n.WebPushProvider)

    n.enqueue(conn, [n.Item("alice", "moderation_outcome", "moderation:p1:remove",
                            {"post_id": "p1", "action": "remove", "reasons": ["spam"]}),
                     item("gone", "k-gone"), item("busy", "k-busy"), item("nobody", "k-nobody"),
                     item("drop", "k-drop"), item("refused", "k-refused")])
    r = n.deliver_due(conn, provider, now=Clock(dt.datetime.now(UTC)))
    assert (r.delivered, r.failed, r.retried, r.suppressed) == (1, 2, 2, 1)  # nobody has no subscription
    assert outbox(conn, user_id="gone")[0]["last_error"] == "push service answered 410"
    # retried: the service said it did not take it (503), or it was never reached (refused)
    assert {r["user_id"]: r["status"] for r in outbox(conn, status="queued")} == {"busy": "queued", "refused": "queued"}
    # not retried: the connection dropped after the request was sent, so it may have been delivered
    assert outbox(conn, user_id="drop")[0]["last_error"].startswith("push outcome unknown")

    push = next(p for p in PushService.received if p["path"] == "/push/alice")
    headers = {k.lower(): v for k, v in push["headers"].items()}
    assert headers["content-encoding"] == "aes128gcm" and int(headers["ttl"]) > 0
    # only the browser's private key and auth secret open the body
    assert b"Your post was removed" not in push["body"]
    message = json.loads(http_ece.decrypt(push["body"], private_key=browser_key, auth_secret=auth, version="aes128gcm"))
    assert message["kind"] == "moderation_outcome" and message["body"] == "Your post was removed (spam)"
    assert message["id"] == outbox(conn, user_id="alice")[0]["id"]
    # the VAPID JWT is signed by our key, for this push service's origin
    scheme, _, params = headers["authorization"].partition(" ")
    fields = dict(p.strip().split("=", 1) for p in params.split(","))
    assert scheme == "vapid"
    signing_input, _, signature = fields["t"].rpartition(".")
    claims = json.loads(_unb64(signing_input.split(".")[1]))
    assert claims["aud"] == push_service and claims["sub"] == "mailto:ops@example.org"
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), _unb64(fields["k"]))
    raw = _unb64(signature)
    public.verify(encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")),
                  signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    assert _unb64(fields["k"]) == vapid.public_key.public_bytes(serialization.Encoding.X962,
                                                                 serialization.PublicFormat.UncompressedPoint)


# --- the feeds --------------------------------------------------------------------------------------------
def _follow(event_id, follower, followee, action="follow"):
    from socialpulse.ingest import EventIn

    return EventIn.model_validate({"event_id": event_id, "event_type": action, "user_id": follower,
                                   "target_user_id": followee})


def test_the_drain_notifies_new_followers_once(stores, conn, tmp_path):
    from socialpulse.drain import drain_all
    from socialpulse.ingest import enqueue_events

    settings = stores.model_copy(update={"lake_uri": str(tmp_path / "lake")})
    client = redis.Redis.from_url(settings.redis)
    enqueue_events(client, [_follow("f1", "u1", "star"), _follow("f2", "u2", "star")], ttl=60)
    drain_all(settings, client)
    # unfollow and follow again: the same fact, no second notification
    enqueue_events(client, [_follow("f4", "u1", "star", "unfollow"), _follow("f5", "u1", "star")], ttl=60)
    result = drain_all(settings, client)
    assert result.rows["follows"] == 2
    assert sorted(r["dedupe_key"] for r in outbox(conn)) == ["new_follower:star:u1", "new_follower:star:u2"]

    # Postgres unreachable: the drain lands every record all the same, and says nothing to the client
    from socialpulse.services.manager import free_port

    down = settings.model_copy(update={"postgres_port": free_port(), "postgres_dsn": None})
    enqueue_events(client, [_follow("f6", "u3", "star")], ttl=60)
    assert drain_all(down, client).rows["follows"] == 1
    assert len(outbox(conn)) == 2
    client.close()


#: the decisions' day: one no other test publishes (publish_day replaces a day's asset rows)
DECISION_DAY = dt.date(2026, 2, 7)


def _decisions(rows):
    from assets.moderation.tables import MODERATION_DECISIONS
    from socialpulse.contracts import conform

    now = dt.datetime.now(UTC)
    return conform(MODERATION_DECISIONS, [
        dict(post_id=pid, author_id=author, action=action, reasons=reasons, hatespeech=0.9, offensive=0.1, nsfw=0.0,
             media_status="none", policy_version="p", text_model_version="t", media_model_version="m",
             decided_at=now, created_at=now, event_date=DECISION_DAY) for pid, author, action, reasons in rows])


def test_moderation_writers_notify_authors_once_and_never_fail_for_it(stores, conn):
    from assets.moderation.publish import publish_day, publish_posts

    client = redis.Redis.from_url(stores.redis)
    decisions = _decisions([("ntf-p1", "ntf-a1", "remove", ["hatespeech"]), ("ntf-p2", "ntf-a1", "allow", []),
                            ("ntf-p3", "ntf-a2", "review", ["offensive"])])
    with psycopg.connect(stores.postgres) as mod:
        publish_posts(mod, client, decisions)  # the live worker
        publish_day(mod, client, decisions, DECISION_DAY)  # the asset record, same decisions
    assert sorted(r["dedupe_key"] for r in outbox(conn)) == ["moderation:ntf-p1:remove", "moderation:ntf-p3:review"]
    assert outbox(conn, user_id="ntf-a1")[0]["payload"] == {"post_id": "ntf-p1", "action": "remove",
                                                           "reasons": ["hatespeech"]}

    # a broken outbox: the decision is published all the same, nothing is notified
    conn.execute(f"ALTER TABLE {n.OUTBOX} RENAME TO outbox_saved")
    conn.execute(f"CREATE TABLE {n.OUTBOX} (id int)")
    try:
        with psycopg.connect(stores.postgres) as mod:
            publish_posts(mod, client, _decisions([("ntf-p4", "ntf-a1", "remove", ["spam"])]))
        assert conn.execute("SELECT action FROM moderation.decisions WHERE post_id = 'ntf-p4'").fetchone() == ("remove",)
    finally:
        conn.execute(f"DROP TABLE {n.OUTBOX}")
        conn.execute(f"ALTER TABLE {n.SCHEMA}.outbox_saved RENAME TO outbox")
    assert len(outbox(conn)) == 2
    client.close()


def test_the_asset_notifies_milestones_virality_and_trending_tags(stores, conn, materialize):
    from assets.notifications import notifications_from_assets
    from assets.warehouse import metrics_timeseries
    from socialpulse import trends_store, virality
    from socialpulse.contracts import BRONZE

    now = dt.datetime.now(UTC).replace(microsecond=0)
    today = now.date()
    yesterday = today - dt.timedelta(days=1)
    start = dt.datetime.combine(today, dt.time(), UTC)
    ts = lambda day, i: dt.datetime.combine(day, dt.time(), UTC) + dt.timedelta(seconds=i)  # noqa: E731
    lake.append(BRONZE["posts"], [
        dict(post_id="ntf-post1", author_id="ntf-creator", kind="text", caption="hello", hashtags=["ntfburst", "x"],
             media_uri=None, duration_s=None, language="en", created_at=ts(yesterday, 1), event_date=yesterday),
        dict(post_id="ntf-post2", author_id="ntf-creator", kind="text", caption="again", hashtags=["ntfburst"],
             media_uri=None, duration_s=None, language="en", created_at=start, event_date=today)], settings=stores)
    views = [dict(event_id=f"ntf-v{day}-{i}", event_type="view", user_id=f"ntf-u{i}", post_id="ntf-post1",
                  target_user_id=None, watch_time_s=3.0, created_at=ts(day, i), event_date=day)
             for day, count in ((yesterday, 60), (today, 50)) for i in range(count)]
    lake.append(BRONZE["interactions"], views, settings=stores)
    lake.append(BRONZE["follows"], [
        dict(event_id=f"ntf-f{i}", follower_id=f"ntf-u{i}", followee_id="ntf-creator", action="follow",
             created_at=ts(today, i), event_date=today) for i in range(10)], settings=stores)
    with psycopg.connect(stores.postgres) as pg:
        trends_store.publish_scores(pg, today, [dict(tag="ntfburst", hour=start, effective=9, posts=9, removed=0,
                                                     baseline=1.0, score=6.0, flagged=True, views=0, likes=0,
                                                     shares=0, comments=0)])
        virality.ensure_schema(pg)
        virality.upsert(pg, [dict(post_id=pid, author_id="ntf-creator", post_created_at=start, predicted_at=now,
                                  observed_hours=1.0, probability=p, views_so_far=50, reach_threshold=1000.0,
                                  model_version="1") for pid, p in (("ntf-post2", 0.8), ("ntf-post1", 0.2))])
    materialize([metrics_timeseries], yesterday, settings=stores)
    materialize([metrics_timeseries], today, settings=stores)
    meta = materialize([notifications_from_assets], today, settings=stores)["from_assets"]
    mine = {r["dedupe_key"] for r in outbox(conn, user_id="ntf-creator")}
    assert {"milestone:post:ntf-post1:views:100", "milestone:creator:ntf-creator:followers:10", "viral:ntf-post2",
            f"trending:ntf-creator:ntfburst:{today.isoformat()}"} <= mine
    assert sum(k.startswith("new_follower:ntf-creator:") for k in mine) == 10  # the drain's backstop
    assert len(mine) == 14 and meta["enqueued"] >= 14
    trending = outbox(conn, dedupe_key=f"trending:ntf-creator:ntfburst:{today.isoformat()}")[0]
    assert trending["payload"]["post_ids"] == ["ntf-post2"]  # the day's posts only
    # a re-run enqueues nothing new
    assert materialize([notifications_from_assets], today, settings=stores)["from_assets"]["enqueued"] == 0


def test_the_delivery_sensor_and_job(stores, conn):
    from assets.notifications import notification_delivery_job, notification_delivery_sensor
    from orchestration.resources import build_resources

    with dg.DagsterInstance.ephemeral() as instance:
        context = dg.build_sensor_context(instance=instance, resources=build_resources(stores))
        assert isinstance(notification_delivery_sensor(context), dg.SkipReason)
        n.enqueue(conn, [item("c1", "k1"), item("c2", "k2")])
        request = notification_delivery_sensor(dg.build_sensor_context(instance=instance,
                                                                        resources=build_resources(stores)))
        assert isinstance(request, dg.RunRequest) and request.tags["socialpulse/due"] == "2"
        result = notification_delivery_job.execute_in_process(resources=build_resources(stores), instance=instance)
    assert result.success and result.output_for_node("deliver_notifications") == 2
    # the same pass by hand
    n.enqueue(conn, [item("c3", "k3")])
    out = CliRunner().invoke(cli_main, ["notifications", "deliver"])
    assert out.exit_code == 0 and json.loads(out.output)["delivered"] == 1
    assert sorted(delivered_ids(conn)) == [r["id"] for r in outbox(conn)]


# --- the API ------------------------------------------------------------------------------------------
@pytest.fixture
def api(stores):
    from fastapi.testclient import TestClient

    from serving.app import create_app

    with TestClient(create_app(stores, warm=False)) as client:
        yield client


def test_api_lists_pages_and_marks_read(conn, api):
    n.enqueue(conn, [item("reader", f"k{i}") for i in range(5)] + [item("other", "k-other")])
    page = api.get("/v1/notifications", headers=bearer(api.app.state.settings, "reader"), params={"limit": 3}).json()
    ids = [i["id"] for i in page["items"]]
    assert len(ids) == 3 and ids == sorted(ids, reverse=True) and page["next_cursor"] == str(ids[-1])
    rest = api.get("/v1/notifications", headers=bearer(api.app.state.settings, "reader"), params={"limit": 3, "cursor": page["next_cursor"]}).json()
    assert len(rest["items"]) == 2 and rest["next_cursor"] is None and max(i["id"] for i in rest["items"]) < ids[-1]
    assert page["items"][0]["title"] == "Milestone reached" and page["items"][0]["read"] is False

    other = outbox(conn, user_id="other")[0]["id"]
    as_reader = bearer(api.app.state.settings, "reader")
    r = api.post("/v1/notifications/read", headers=as_reader, json={"ids": [ids[0], other]})
    assert r.status_code == 200 and r.json()["marked"] == 1 and r.json()["not_found"] == [other]
    assert api.post("/v1/notifications/read", headers=as_reader, json={"ids": [other]}).status_code == 404
    # another user cannot mark the reader's notifications: they are not theirs
    assert api.post("/v1/notifications/read", headers=bearer(api.app.state.settings, "other"),
                    json={"ids": [ids[1]]}).status_code == 404
    unread = api.get("/v1/notifications", headers=bearer(api.app.state.settings, "reader"), params={"unread_only": True}).json()["items"]
    assert len(unread) == 4 and ids[0] not in [i["id"] for i in unread]

    assert api.get("/v1/notifications", headers=bearer(api.app.state.settings, "reader"), params={"cursor": "abc"}).status_code == 400
    assert api.get("/v1/notifications").status_code == 401
    assert api.post("/v1/notifications/read", headers=as_reader, json={"ids": []}).status_code == 422
    assert api.post("/v1/notifications/read", headers=as_reader, json={"user_id": "other", "ids": [other]}).status_code == 422


def test_api_preferences(conn, api):
    got = api.get("/v1/notifications/preferences", headers=bearer(api.app.state.settings, "pref")).json()
    assert got == {"user_id": "pref", "kinds": {}, "quiet_hours": None, "digest": False, "push_subscription": None}
    body = {"kinds": {"milestone": {"enabled": False}}, "digest": True,
            "quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "America/New_York"}}
    put = api.put("/v1/notifications/preferences", headers=bearer(api.app.state.settings, "pref"), json=body)
    assert put.status_code == 200 and put.json()["quiet_hours"]["start"] == "22:00:00"
    assert api.get("/v1/notifications/preferences", headers=bearer(api.app.state.settings, "pref")).json() == put.json()
    n.enqueue(conn, [item("pref", "k1")])
    assert api.get("/v1/notifications", headers=bearer(api.app.state.settings, "pref")).json()["items"] == []  # milestones off
    for bad in ({"kinds": {"spam": {}}}, {"quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Moon/Base"}}):
        r = api.put("/v1/notifications/preferences", headers=bearer(api.app.state.settings, "pref"), json=bad)
        assert r.status_code == 422 and r.json()["error"]


def test_api_is_503_without_postgres(stores):
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from socialpulse.services.manager import free_port

    down = stores.model_copy(update={"postgres_port": free_port(), "postgres_dsn": None})
    with TestClient(create_app(down, warm=False)) as client:
        r = client.get("/v1/notifications", headers=bearer(client.app.state.settings, "u1"))
    assert r.status_code == 503 and r.headers["Retry-After"] and "notifications store" in r.json()["error"]
