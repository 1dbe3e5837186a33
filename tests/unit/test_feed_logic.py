"""The feed's pure pieces: cursors, candidate rows, state building, negatives, cluster recovery, the split."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from assets.ranking.state import follow_state, global_lists, user_states
from assets.ranking.training import cluster_recovery, sample_negatives, time_split
from socialpulse import vectors
from socialpulse.contracts import TS
from socialpulse.ranking import feed
from socialpulse.ranking.model import FEATURES, POST_FEATURES, USER_FEATURES
from socialpulse.ranking.store import pack, unpack_rows

NOW = dt.datetime(2026, 5, 1, 12, tzinfo=dt.timezone.utc)


def row(post_id, author_id, topic, created_at, sim_interest, sim_not_interested=None, nearest=False, pools=(),
        heads=()) -> tuple:
    """A candidate row as vectors.feed_candidates returns it."""
    return (post_id, author_id, topic, created_at, sim_interest, sim_not_interested,
            vectors.feed_flags(nearest, pools, heads))


def test_feed_flags_round_trip():
    for nearest, pools, heads in [(False, (), ()), (True, ("fresh",), ()), (False, ("popular", "trending"), ("trending",)),
                                  (True, vectors.FEED_POOLS, vectors.FEED_POOLS)]:
        assert vectors.flag_pools(vectors.feed_flags(nearest, pools, heads)) == (nearest, pools, heads)
    assert vectors.feed_flags() == 0 and vectors.feed_flags(nearest=True) == 1
    with pytest.raises(ValueError):
        vectors.feed_flags(pools=["nowhere"])


def test_cursor_round_trip_and_refusals():
    c = feed.encode_cursor("r1", 20, "u1")
    assert feed.decode_cursor(c, "u1") == ("r1", 20)
    with pytest.raises(feed.CursorError, match="another user"):
        feed.decode_cursor(c, "u2")
    with pytest.raises(feed.CursorError, match="not one this API returned"):
        feed.decode_cursor("%%%", "u1")
    with pytest.raises(feed.CursorError, match="negative"):
        feed.decode_cursor(feed.encode_cursor("r1", -5, "u1"), "u1")


def test_candidates_from_rows_keep_only_servable_rows_and_carry_their_fields():
    rows = [row("a", "c1", "cooking", (NOW - dt.timedelta(hours=2)).isoformat(), 0.9, nearest=True),
            row("b", "c2", None, NOW.isoformat(), 0.1, 0.8, pools=["fresh"])]
    others = {"following": ["b", "gone"]}
    cands = feed.candidates_from_rows(rows, others, NOW)
    assert [c.post_id for c in cands] == ["b", "a"]  # "gone": no servable row, never a candidate
    b, a = cands
    assert a.source == "interest" and a.topic == "cooking" and a.age_hours == pytest.approx(2.0)
    assert b.source == "following" and b.topic is None  # offered by following and fresh: the first source wins
    assert b.sim_not_interested == pytest.approx(0.8)
    X = feed.feature_matrix([a, b], np.array([[1, 2, 3, 4, 5, 6], [np.nan] * 6]), np.array([7, 8, 9]), {"c2"})
    assert X.shape == (2, len(FEATURES))
    assert X[0, FEATURES.index("sim_interest")] == pytest.approx(0.9)
    assert X[1, FEATURES.index("follows_author")] == 1 and X[0, FEATURES.index("follows_author")] == 0
    assert X[0, FEATURES.index("views_7d")] == 1 and np.isnan(X[1, FEATURES.index("views_7d")])
    assert X[1, FEATURES.index("watch_time_s_7d")] == 9


def test_pool_picks_are_offered_nearest_first():
    rows = [row(f"p{i}", f"c{i}", "t", NOW.isoformat(), s, pools=pools)
            for i, (s, pools) in enumerate([(0.2, ["popular"]), (0.9, ["popular", "fresh"]), (0.5, ["fresh"]),
                                            (0.7, ["popular"])])]
    cands = feed.candidates_from_rows(rows, {}, NOW)
    # round-robin over the sources (fresh before popular), each pool nearest first
    assert [(c.post_id, c.source) for c in cands] == [("p1", "fresh"), ("p2", "fresh"), ("p3", "popular"),
                                                      ("p0", "popular")]
    assert feed.by_similarity(["x", "y", "z"], [0.1, 0.3, 0.3], 2) == ["y", "z"]


def test_a_pool_head_is_offered_first_whatever_its_similarity():
    # p0 heads the fresh pool (the newest post) but is the least similar: it still comes first, so a cut of
    # the merged candidates keeps it; the rest of the pool follows nearest first
    rows = [row(f"p{i}", f"c{i}", "t", NOW.isoformat(), s, pools=["fresh"], heads=heads)
            for i, (s, heads) in enumerate([(0.1, ["fresh"]), (0.9, []), (0.5, []), (0.3, ["fresh"])])]
    cands = feed.candidates_from_rows(rows, {}, NOW)
    assert [c.post_id for c in cands] == ["p3", "p0", "p1", "p2"]
    assert [c.post_id for c in feed.candidates_from_rows(rows, {}, NOW, limit=2)] == ["p3", "p0"]
    # offline, the same picks from a pool in its order: head first (by similarity), then the nearest others
    pool, sims = ["p0", "p3", "p1", "p2", "p4"], [0.1, 0.3, 0.9, 0.5, 0.7]
    assert feed.pool_picks(pool, sims, n=2, head=2) == ["p3", "p0", "p1", "p4"]
    assert feed.pool_picks(pool, sims, n=2, head=0) == ["p1", "p4"]


def test_rank_filters_and_falls_back_to_the_heuristic():
    rows = [row(f"p{i}", f"c{i}", "t", NOW.isoformat(), i / 10, nearest=True) for i in range(6)]
    cands = feed.candidates_from_rows(rows, {}, NOW)
    seen = np.array([c.post_id == "p5" for c in cands])  # flags come back in candidate order
    ranked = feed.rank("me", cands, np.full((6, len(POST_FEATURES)), np.nan), seen,
                       {"p4"}, {"blocked": ["c3"]}, np.full(len(USER_FEATURES), np.nan), None)
    assert ranked.model_version == feed.HEURISTIC
    # p5 seen, p4 held by moderation, p3's creator blocked; the rest by interest similarity
    assert [c.post_id for c in ranked.items] == ["p2", "p1", "p0"]


def test_packed_rows_round_trip_and_tolerate_missing():
    out = unpack_rows([pack([1.5, 2.5]), None, b"bad"], 2)
    assert out[0].tolist() == [1.5, 2.5] and np.isnan(out[1]).all() and np.isnan(out[2]).all()


def test_follow_state_replays_the_latest_action():
    t = pa.table({"event_id": ["1", "2", "3", "4"], "follower_id": ["a", "a", "a", "b"],
                  "followee_id": ["x", "x", "y", "x"], "action": ["follow", "unfollow", "follow", "follow"],
                  "created_at": pa.array([NOW + dt.timedelta(minutes=i) for i in range(4)], TS)})
    followed, unfollowed = follow_state(t)
    assert followed == {"a": {"y"}, "b": {"x"}} and unfollowed == {"a": {"x"}}


def test_user_states_and_global_lists():
    posts = [{"post_id": f"p{i}", "author_id": "x" if i < 3 else "z", "created_at": f"2026-05-01T0{i}:00:00+00:00",
              "hashtags": ["hot"] if i == 4 else []} for i in range(6)]
    feedback = pa.table({"user_id": ["a", "a"], "event_type": ["block", "not_interested"], "post_id": [None, "p4"],
                         "target_user_id": ["x", None],
                         "created_at": pa.array([NOW, NOW], TS)})
    views = pa.table({"user_id": ["a"], "post_id": ["p5"]})
    users = user_states({"a": np.array([1.0, 2.0, 3.0])}, {"a": {"x", "z"}}, {}, feedback, views, posts)
    a = users["a"]
    assert a["followed"] == ["z"] and a["blocked"] == ["x"]  # a block outweighs a follow
    assert a["following"] == ["p5", "p4", "p3"]  # followed creators' posts, newest first; none of the blocked one
    assert a["not_interested"] == ["p4"] and a["not_interested_authors"] == ["z"] and a["seen"] == ["p5"]
    feats = {p["post_id"]: np.array([i * 10, 0, 0, 0.1, 0, 0], float) for i, p in enumerate(posts)}
    lists = global_lists(posts, feats, {"hot": 5.0})
    assert lists["popular"][0] == "p5" and lists["fresh"][0] == "p5" and lists["trending"] == ["p4"]


def test_sampled_negatives_are_unshown_posts_of_the_week_before():
    labels = pa.table({
        "impression_id": ["i1", "i2"], "request_id": ["r1", "r1"], "user_id": ["u", "u"], "post_id": ["p1", "p2"],
        "author_id": ["c", "c"], "position": pa.array([0, 1], pa.int32()), "source": ["s", "s"],
        "model_version": ["m", "m"], "served_at": pa.array([NOW, NOW], TS), "post_created_at": pa.array([NOW, NOW], TS),
        "completion": [1.0, 0.0], "liked": [True, False], "commented": [False, False], "shared": [False, False],
        "followed": [False, False]})
    pool = pa.table({"post_id": ["p1", "p2", "old", "later", "n1", "n2", "n3"],
                     "author_id": ["c"] * 7,
                     "created_at": pa.array([NOW - dt.timedelta(hours=1)] * 2 + [NOW - dt.timedelta(days=9),
                                            NOW + dt.timedelta(hours=1)] + [NOW - dt.timedelta(hours=h) for h in (1, 2, 3)], TS)})
    neg = sample_negatives(labels, pool, NOW.date())
    assert neg.schema == labels.schema and neg.num_rows == 2  # at most one per logged impression
    assert set(neg["post_id"].to_pylist()) <= {"n1", "n2", "n3"}  # never shown, never too old or made later
    assert set(neg["position"].to_pylist()) == {-1} and neg["request_id"].to_pylist() == ["r1", "r1"]
    assert sample_negatives(labels, pool, NOW.date()).equals(neg)  # deterministic per day


def test_cluster_recovery_against_chance():
    feeds = {"u1": ["a", "b", "c", "d"], "u2": ["c", "d"]}
    out = cluster_recovery(feeds, {"u1": 0, "u2": 1}, {"a": 0, "b": 0, "c": 1, "d": 1}, ["a", "b", "c", "d"])
    assert out["in_cluster_share@10"] == pytest.approx((0.5 + 1.0) / 2) and out["chance"] == pytest.approx(0.5)


def test_time_split_needs_three_days_and_holds_out_the_last():
    days = [dt.date(2026, 1, d) for d in (3, 1, 2, 4)]
    assert time_split(days) == {"train": days[1:3], "validation": [days[0]], "test": [days[3]]}
    with pytest.raises(ValueError, match="at least 3 days"):
        time_split(days[:2])


def test_synthetic_impressions_are_never_served_before_their_post_exists():
    import pyarrow.compute as pc

    from socialpulse.synthetic import WorldConfig, build_world, iter_days

    created = {}
    for batch in iter_days(build_world(WorldConfig(users=120, posts=600, days=3))):
        posts = batch.tables["posts"]
        created.update(zip(posts["post_id"].to_pylist(), posts["created_at"].to_pylist()))
        imps = batch.tables["impressions"]
        assert imps.num_rows > 0 and pc.all(pc.equal(imps["event_date"], pa.scalar(batch.date, pa.date32()))).as_py()
        assert all(s >= created[p] for p, s in zip(imps["post_id"].to_pylist(), imps["served_at"].to_pylist()))
