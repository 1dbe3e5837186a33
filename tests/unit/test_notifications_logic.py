"""Notifications' pure rules: zones and quiet hours, digest windows, milestones, backoff, what each feed
notifies, what a due notification becomes, and the preferences' validation."""

import datetime as dt

import pytest
from pydantic import ValidationError

from socialpulse import notifications as n
from socialpulse.settings import Settings

UTC = dt.timezone.utc
HOUR = dt.timedelta(hours=1)
MAX_AGE = dt.timedelta(hours=48)


def at(y, mo, d, h, mi=0, tz=UTC) -> dt.datetime:
    return dt.datetime(y, mo, d, h, mi, tzinfo=tz)


def quiet(start, end, zone="UTC") -> n.QuietHours:
    return n.QuietHours(start=start, end=end, timezone=zone)


# --- zones and quiet hours -------------------------------------------------------------------------
def test_zones_are_iana_names_or_utc_offsets():
    assert n.parse_zone("+05:30").utcoffset(None) == dt.timedelta(hours=5, minutes=30)
    assert n.parse_zone("UTC-08:00").utcoffset(None) == dt.timedelta(hours=-8)
    assert n.parse_zone("-0300").utcoffset(None) == dt.timedelta(hours=-3)
    assert str(n.parse_zone("Europe/Paris")) == "Europe/Paris"
    for bad in ("Mars/Olympus", "+15:00", "+02:75", "", "../etc/passwd"):
        with pytest.raises(ValueError):
            n.parse_zone(bad)


def test_quiet_hours_within_one_day():
    q = quiet("13:00", "15:00")
    assert n.quiet_until(at(2026, 6, 1, 12, 59), q) is None
    assert n.quiet_until(at(2026, 6, 1, 13, 0), q) == at(2026, 6, 1, 15)
    assert n.quiet_until(at(2026, 6, 1, 14, 59), q) == at(2026, 6, 1, 15)
    assert n.quiet_until(at(2026, 6, 1, 15, 0), q) is None


def test_quiet_hours_crossing_midnight():
    q = quiet("22:00", "07:00")
    assert n.quiet_until(at(2026, 6, 1, 21, 59), q) is None
    assert n.quiet_until(at(2026, 6, 1, 23, 30), q) == at(2026, 6, 2, 7)  # before midnight: tomorrow's 07:00
    assert n.quiet_until(at(2026, 6, 2, 3, 0), q) == at(2026, 6, 2, 7)  # after midnight: today's 07:00
    assert n.quiet_until(at(2026, 6, 2, 7, 0), q) is None


def test_quiet_hours_are_in_the_users_zone_across_a_dst_change():
    q = quiet("22:00", "07:00", "Europe/Paris")
    # summer (UTC+2): 21:30 UTC is 23:30 in Paris, quiet until 07:00 Paris = 05:00 UTC
    assert n.quiet_until(at(2026, 6, 1, 21, 30), q) == at(2026, 6, 2, 5)
    assert n.quiet_until(at(2026, 6, 1, 19, 30), q) is None  # 21:30 in Paris
    # the night clocks go back (25 Oct 2026): 07:00 Paris is then UTC+1 = 06:00 UTC
    assert n.quiet_until(at(2026, 10, 24, 21, 0), q) == at(2026, 10, 25, 6)
    # a fixed offset zone
    assert n.quiet_until(at(2026, 6, 1, 18), quiet("22:00", "07:00", "+05:00")) == at(2026, 6, 2, 2)


def test_empty_or_no_quiet_hours_never_defer():
    assert n.quiet_until(at(2026, 6, 1, 3), None) is None
    assert n.quiet_until(at(2026, 6, 1, 3), quiet("03:00", "03:00")) is None


# --- digests, milestones, backoff, freshness ----------------------------------------------------------
def test_digest_windows_are_aligned_and_only_closed_ones_fold():
    assert n.digest_window(at(2026, 6, 1, 10, 42), 3600) == (at(2026, 6, 1, 10), at(2026, 6, 1, 11))
    assert n.digest_window(at(2026, 6, 1, 10, 42), 6 * 3600) == (at(2026, 6, 1, 6), at(2026, 6, 1, 12))
    rows = [{"id": 1, "user_id": "a", "created_at": at(2026, 6, 1, 9, 5)},
            {"id": 2, "user_id": "a", "created_at": at(2026, 6, 1, 9, 55)},
            {"id": 3, "user_id": "b", "created_at": at(2026, 6, 1, 9, 30)},
            {"id": 4, "user_id": "a", "created_at": at(2026, 6, 1, 10, 1)}]  # the window still open
    groups = n.group_digests(rows, 3600, at(2026, 6, 1, 10, 30))
    assert {k: [r["id"] for r in v] for k, v in groups.items()} == {("a", at(2026, 6, 1, 9)): [1, 2],
                                                                    ("b", at(2026, 6, 1, 9)): [3]}
    members = [{"kind": "new_follower", "payload": {"follower_id": f"f{i}"}} for i in range(12)]
    payload = n.digest_payload(members, at(2026, 6, 1, 9), 3600)
    assert payload["count"] == 12 and payload["kinds"] == {"new_follower": 12} and len(payload["preview"]) == 10


def test_thresholds_crossed_between_two_totals():
    t = n.VIEW_MILESTONES
    assert n.thresholds_crossed(0, 99, t) == []
    assert n.thresholds_crossed(99, 100, t) == [100]
    assert n.thresholds_crossed(100, 150, t) == []  # reached before: not again
    assert n.thresholds_crossed(50, 12_000, t) == [100, 1_000, 10_000]
    rows = [{"id": "p1", "user_id": "c1", "before": 50, "after": 12_000},
            {"id": "p2", "user_id": "c1", "before": 120, "after": 900}]
    items = n.milestone_items(rows, "post", "views", t)
    assert [(i.user_id, i.dedupe_key, i.payload["threshold"]) for i in items] == [
        ("c1", "milestone:post:p1:views:10000", 10_000)]  # several at once: only the highest


def test_backoff_is_exponential_capped_and_jittered():
    assert n.backoff_s(1, 0.0, base=30, cap=3600) == 15 and n.backoff_s(1, 0.999, base=30, cap=3600) < 30
    assert [n.backoff_s(a, 1.0, base=30, cap=3600) for a in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert n.backoff_s(20, 1.0, base=30, cap=3600) == 3600 and n.backoff_s(20, 0.0, base=30, cap=3600) == 1800


def test_is_fresh():
    now = at(2026, 6, 3, 12)
    assert n.is_fresh(now - 47 * HOUR, now, MAX_AGE) and not n.is_fresh(now - 49 * HOUR, now, MAX_AGE)


# --- what each feed notifies -------------------------------------------------------------------------------
def test_follow_items_notify_new_follows_only():
    now = at(2026, 6, 3, 12)
    rows = [dict(follower_id="u1", followee_id="c1", action="follow", created_at=now - HOUR),
            dict(follower_id="u2", followee_id="c1", action="unfollow", created_at=now - HOUR),
            dict(follower_id="c1", followee_id="c1", action="follow", created_at=now - HOUR),
            dict(follower_id="u3", followee_id="c1", action="follow", created_at=now - 72 * HOUR)]
    items = n.follow_items(rows, now, MAX_AGE)
    assert [(i.user_id, i.kind, i.dedupe_key) for i in items] == [("c1", "new_follower", "new_follower:c1:u1")]


def test_moderation_items_tell_the_author_of_non_allowed_posts():
    now = at(2026, 6, 3, 12)
    rows = [dict(post_id="p1", author_id="a1", action="remove", reasons=["hatespeech"], created_at=now),
            dict(post_id="p2", author_id="a1", action="allow", reasons=[], created_at=now),
            dict(post_id="p3", author_id="a2", action="review", reasons=None, created_at=now)]
    items = n.moderation_items(rows, now, MAX_AGE)
    assert [i.dedupe_key for i in items] == ["moderation:p1:remove", "moderation:p3:review"]
    assert items[0].payload == {"post_id": "p1", "action": "remove", "reasons": ["hatespeech"]}


def test_viral_and_trending_items():
    viral = n.viral_items([{"post_id": "p1", "author_id": "a", "probability": 0.7},
                           {"post_id": "p2", "author_id": "a", "probability": 0.49}], 0.5)
    assert [i.dedupe_key for i in viral] == ["viral:p1"]
    day = dt.date(2026, 6, 3)
    posts = [{"post_id": "p1", "author_id": "a", "hashtags": ["#Café", "food"]},
             {"post_id": "p2", "author_id": "a", "hashtags": ["café"]},
             {"post_id": "p3", "author_id": "b", "hashtags": ["other"]}]
    items = n.trending_items(posts, ["café"], day)
    assert [(i.user_id, i.dedupe_key, i.payload["post_ids"]) for i in items] == [
        ("a", "trending:a:café:2026-06-03", ["p1", "p2"])]


def test_every_kind_renders_a_title_and_body():
    payloads = {"new_follower": {"follower_id": "u1"},
                "milestone": {"subject": "post", "id": "p", "metric": "views", "threshold": 10_000},
                "viral_prediction": {"post_id": "p", "probability": 0.81},
                "hashtag_trending": {"tag": "café"},
                "moderation_outcome": {"post_id": "p", "action": "remove", "reasons": ["spam"]},
                "digest": {"kinds": {"new_follower": 3}}}
    texts = {k: n.render(k, p) for k, p in payloads.items()}
    assert texts["milestone"]["body"] == "Your post reached 10,000 views"
    assert texts["viral_prediction"]["body"].endswith("(81% likely)")
    assert texts["moderation_outcome"]["body"] == "Your post was removed (spam)"
    assert texts["digest"]["body"] == "3 new followers"
    assert all(t["title"] and t["body"] for t in texts.values())


# --- what a due notification becomes -------------------------------------------------------------------
SUB = {"endpoint": "https://push.example/abc", "keys": {"p256dh": "x", "auth": "y"}}


def test_plan_sends_defers_or_suppresses():
    now = at(2026, 6, 1, 23)
    default = n.Preferences()
    assert n.plan("milestone", {}, default, now, needs_subscription=False) == n.Decision("send")
    assert n.plan("milestone", {}, default, now, needs_subscription=True).reason == "no push subscription"
    off = n.Preferences(kinds={"milestone": {"push": False}})
    assert n.plan("milestone", {}, off, now, needs_subscription=False).action == "suppress"
    assert n.plan("viral_prediction", {}, off, now, needs_subscription=False).action == "send"
    night = n.Preferences(quiet_hours={"start": "22:00", "end": "07:00"}, push_subscription=SUB)
    assert n.plan("milestone", {}, night, now, needs_subscription=True) == n.Decision(
        "defer", until=at(2026, 6, 2, 7), reason="quiet hours")


def test_a_digest_is_pushed_when_a_kind_it_holds_is():
    now = at(2026, 6, 1, 12)
    payload = {"kinds": {"new_follower": 2}}
    assert n.plan("digest", payload, n.Preferences(digest=True), now, needs_subscription=False).action == "send"
    off = n.Preferences(digest=True, kinds={"new_follower": {"enabled": False}})
    assert n.plan("digest", payload, off, now, needs_subscription=False).action == "suppress"


# --- preferences and settings ---------------------------------------------------------------------------
def test_preferences_validate_kinds_zones_and_subscriptions():
    p = n.Preferences.model_validate({"kinds": {"new_follower": {"push": False}}, "digest": True,
                                      "quiet_hours": {"start": "22:30", "end": "06:00", "timezone": "Asia/Tokyo"},
                                      "push_subscription": SUB})
    assert p.kind("new_follower") == n.KindPreference(enabled=True, push=False)
    assert p.kind("milestone") == n.KindPreference() and p.disabled_kinds() == []
    assert n.Preferences.model_validate(p.model_dump(mode="json")) == p  # round trip through the store's JSON
    for bad in ({"kinds": {"spam": {}}}, {"quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Nowhere/X"}},
                {"quiet_hours": {"start": "25:00", "end": "07:00"}},
                {"push_subscription": {"endpoint": "ftp://x", "keys": {"p256dh": "a", "auth": "b"}}},
                {"push_subscription": {"endpoint": "https://x", "keys": {"p256dh": "a"}}}, {"colour": "red"},
                {"push_subscription": {"endpoint": "https://x/\x00", "keys": {"p256dh": "a", "auth": "b"}}},
                {"push_subscription": {"endpoint": "https://x", "keys": {"p256dh": "a b", "auth": "b"}}},
                {"quiet_hours": {"start": "22:00+02:00", "end": "07:00"}},
                {"quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "America"}},
                {"quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "x" * 300}}):
        with pytest.raises(ValidationError):
            n.Preferences.model_validate(bad)


def test_settings_pick_and_guard_the_provider(monkeypatch):
    assert Settings().notifications_provider == "recording"
    with pytest.raises(ValidationError, match="VAPID_PRIVATE_KEY"):
        Settings(notifications_provider="webpush")
    from tests.unit.test_settings import PRODUCTION

    with pytest.raises(ValidationError, match="recording notification provider"):
        Settings(**{**PRODUCTION, "notifications_provider": "recording"})
    assert Settings(**PRODUCTION).notifications_provider == "webpush"
