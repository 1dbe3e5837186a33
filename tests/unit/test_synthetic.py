"""The synthetic world: deterministic, contract-conforming, idempotent, and its planted structure is recoverable."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from socialpulse import lake
from socialpulse.contracts import BRONZE, conform
from socialpulse.settings import Settings
from socialpulse.synthetic import EVENT_CONTRACTS, WorldConfig, build_world, iter_days, load_synthetic

START = dt.date(2026, 3, 1)
SMALL = dict(users=300, posts=1200, days=4, seed=11, start=START)


@pytest.fixture(scope="module")
def world_tables():
    """A mid-sized world generated in memory (no lake): every bronze table concatenated, plus ground truth."""
    cfg = WorldConfig(users=1500, posts=8000, days=8, seed=3, start=START)
    world = build_world(cfg)
    parts: dict[str, list[pa.Table]] = {n: [] for n in EVENT_CONTRACTS}
    truth, counts = [], []
    for batch in iter_days(world):
        for name, t in batch.tables.items():
            parts[name].append(t)
        truth.append(batch.truth_posts)
        counts.extend(batch.burst_counts)
    tables = {n: pa.concat_tables(ts) for n, ts in parts.items()}
    tables["users"] = world.users
    return world, tables, pa.concat_tables(truth), counts


def _sorted(t: pa.Table, key: str) -> pa.Table:
    return t.sort_by(key)


def test_generation_is_deterministic_and_seed_sensitive():
    cfg = WorldConfig(**SMALL)
    a = [b.tables for b in iter_days(build_world(cfg))]
    b = [b.tables for b in iter_days(build_world(cfg))]
    for da, db in zip(a, b):
        for name in da:
            assert da[name].equals(db[name]), name
    c = [b.tables for b in iter_days(build_world(WorldConfig(**{**SMALL, "seed": 12})))]
    assert not a[0]["interactions"].equals(c[0]["interactions"])


def test_every_table_satisfies_its_contract(world_tables):
    _, tables, _, _ = world_tables
    for name, t in tables.items():
        contract = BRONZE[name]
        assert conform(contract, t).schema == contract.schema
        key = contract.key[0]
        assert pc.count_distinct(t[key]).as_py() == t.num_rows, f"{name}.{key} not unique"


def test_world_shape_and_referential_integrity(world_tables):
    world, tables, truth, _ = world_tables
    posts, inter, comments, follows, media = (tables[n] for n in ("posts", "interactions", "comments", "follows", "media"))
    assert posts.num_rows == 8000
    assert abs(inter.num_rows - 80_000) / 80_000 < 0.03  # interactions default to ~10 x posts
    kinds = posts["kind"].value_counts().to_pylist()
    share = {k["values"]: k["counts"] / posts.num_rows for k in kinds}
    assert abs(share["video"] - 0.60) < 0.03 and abs(share["image"] - 0.25) < 0.03
    # media rows exactly for non-text posts; videos have a duration within 15-60 s
    assert media.num_rows == posts.num_rows - share["text"] * posts.num_rows
    vids = posts.filter(pc.equal(posts["kind"], "video"))
    assert pc.min(vids["duration_s"]).as_py() >= 15 and pc.max(vids["duration_s"]).as_py() <= 60
    # every event lies in its own UTC day; views never before the post; watch <= duration
    days = pc.cast(pc.floor_temporal(inter["created_at"], unit="day"), pa.date32())
    assert pc.all(pc.equal(days, inter["event_date"])).as_py()
    views = inter.filter(pc.equal(inter["event_type"], "view"))
    j = views.join(posts.select(["post_id", "created_at", "duration_s"]), "post_id", right_suffix="_post")
    assert pc.all(pc.greater(j["created_at"], j["created_at_post"])).as_py()
    vid = j.filter(pc.is_valid(j["duration_s"]))
    assert pc.all(pc.less_equal(vid["watch_time_s"], vid["duration_s"])).as_py()
    # comments are keyed by the event id of their comment event
    com_events = inter.filter(pc.equal(inter["event_type"], "comment"))
    assert sorted(com_events["event_id"].to_pylist()) == sorted(comments["comment_id"].to_pylist())
    fol = inter.filter(pc.is_in(inter["event_type"], pa.array(["follow", "unfollow"])))
    assert fol.num_rows == follows.num_rows > 0
    assert pc.all(pc.not_equal(follows["follower_id"], follows["followee_id"])).as_py()
    assert truth.num_rows == posts.num_rows


def test_users_have_young_skewed_optional_birth_years(world_tables):
    world, tables, _, _ = world_tables
    years = tables["users"]["birth_year"]
    assert years.type == pa.int16()
    assert 0.03 < years.null_count / len(years) < 0.15  # optional at sign-up: some users leave it empty
    ages = START.year - np.asarray(years.drop_null(), dtype=int)
    assert ages.min() >= 13 and ages.max() <= 65
    assert 18 <= np.median(ages) <= 28 and (ages < 25).mean() > 0.5 and (ages >= 45).mean() < 0.1


def test_views_are_mostly_in_the_viewers_cluster(world_tables):
    world, tables, truth, _ = world_tables
    cluster_of_user = dict(zip(world.users["user_id"].to_pylist(), world.user_cluster.tolist()))
    views = tables["interactions"].filter(pc.equal(tables["interactions"]["event_type"], "view"))
    post_cluster = dict(zip(truth["post_id"].to_pylist(), truth["cluster"].to_pylist()))
    own = np.mean([cluster_of_user[u] == post_cluster[p] for u, p in zip(views["user_id"].to_pylist(), views["post_id"].to_pylist())])
    assert 0.72 <= own <= 0.86, own


def test_creator_quality_drives_engagement(world_tables):
    world, tables, truth, _ = world_tables
    inter = tables["interactions"]
    by_post = dict(zip(truth["post_id"].to_pylist(), truth["author_id"].to_pylist()))
    counts: dict[str, list[int]] = {}
    for et, p in zip(inter["event_type"].to_pylist(), inter["post_id"].to_pylist()):
        if p is None:
            continue
        c = counts.setdefault(by_post[p], [0, 0])
        c[0] += et == "view"
        c[1] += et == "like"
    q = dict(zip(world.users["user_id"].to_pylist(), world.quality.tolist()))
    rows = [(q[a], v[1] / v[0]) for a, v in counts.items() if not np.isnan(q[a]) and v[0] >= 30]
    qs, rates = np.array(rows).T
    rank = lambda x: np.argsort(np.argsort(x))  # noqa: E731 - Spearman via ranks
    rho = np.corrcoef(rank(qs), rank(rates))[0, 1]
    assert rho > 0.5, rho


def test_follows_go_to_creators_of_the_followers_cluster(world_tables):
    world, tables, _, _ = world_tables
    f = tables["follows"].filter(pc.equal(tables["follows"]["action"], "follow"))
    idx = lambda col: np.array([int(u[1:]) - 1 for u in col.to_pylist()])  # noqa: E731
    src, dst = idx(f["follower_id"]), idx(f["followee_id"])
    assert world.is_creator[dst].all()
    assert np.mean(world.user_cluster[src] == world.user_cluster[dst]) > 0.75


def test_burst_hashtags_jump_on_their_day(world_tables):
    world, tables, _, counts = world_tables
    posts = tables["posts"]
    assert len(world.bursts) == 3 and len(counts) == 3
    flat = pc.list_flatten(posts["hashtags"])
    day_of_tag = pc.list_parent_indices(posts["hashtags"])
    dates = posts["event_date"].take(day_of_tag)
    for b in world.bursts:
        mask = pc.equal(flat, b["hashtag"])
        per_day = pc.filter(dates, mask).value_counts().to_pylist()
        per_day = {r["values"]: r["counts"] for r in per_day}
        burst_day = START + dt.timedelta(days=b["day_index"])
        others = [per_day.get(START + dt.timedelta(days=i), 0) for i in range(8) if i != b["day_index"]]
        assert per_day[burst_day] >= 4 * max(np.median(others), 1), (b, per_day)
        assert 5 <= b["multiplier"] <= 10


def test_toxic_share_and_labels(world_tables):
    world, tables, truth, _ = world_tables
    share = pc.mean(pc.cast(truth["is_toxic"], pa.int8())).as_py()
    assert 0.02 <= share <= 0.04, share
    toxic = truth.filter(truth["is_toxic"])
    assert set(toxic["toxic_label"].to_pylist()) <= {"hatespeech", "offensive"}
    assert pc.all(pc.is_valid(toxic["hatexplain_post_id"])).as_py()
    # a toxic caption is the HateXplain text (hashtags appended), not a generated one
    cap = dict(zip(tables["posts"]["post_id"].to_pylist(), tables["posts"]["caption"].to_pylist()))
    hx = {r["post_id"]: r["text"] for r in world.toxic_texts}
    for p, src in zip(toxic["post_id"].to_pylist(), toxic["hatexplain_post_id"].to_pylist()):
        assert cap[p].startswith(hx[src])


def test_load_writes_bronze_and_ground_truth_and_reruns_replace(local_settings):
    counts = load_synthetic(local_settings, **{k: v for k, v in SMALL.items()})
    assert counts["users"] == 300 and counts["posts"] == 1200
    for name, contract in EVENT_CONTRACTS.items():
        assert lake.read(contract, settings=local_settings).num_rows == counts[name], name
    truth = DeltaTable(local_settings.table_uri("meta", "synthetic_posts")).to_pyarrow_table()
    assert truth.num_rows == 1200
    users = DeltaTable(local_settings.table_uri("meta", "synthetic_users")).to_pyarrow_table()
    assert users.num_rows == 300 and pc.sum(users["is_creator"]).as_py() >= 8
    assert DeltaTable(local_settings.table_uri("meta", "synthetic_bursts")).to_pyarrow_table().num_rows == 3

    before = {n: _sorted(lake.read(c, settings=local_settings), c.key[0]) for n, c in EVENT_CONTRACTS.items()}
    again = load_synthetic(local_settings, **SMALL)
    assert again == counts
    for name, contract in EVENT_CONTRACTS.items():
        after = _sorted(lake.read(contract, settings=local_settings), contract.key[0])
        assert after.equals(before[name]), f"{name} changed or duplicated on re-run"

    # same seed into a second lake: byte-identical rows
    other = Settings(home=local_settings.home_abs.parent / "other")
    load_synthetic(other, **SMALL)
    for name, contract in EVENT_CONTRACTS.items():
        assert _sorted(lake.read(contract, settings=other), contract.key[0]).equals(before[name]), name


def test_moving_the_window_clears_days_of_the_earlier_run(local_settings):
    small = dict(SMALL, posts=400, users=100)
    load_synthetic(local_settings, **small)
    # a foreign (non-synthetic) post on the first day must survive the clean-up
    lake.append(
        EVENT_CONTRACTS["posts"],
        [{"post_id": "api-1", "author_id": "u1", "kind": "text", "hashtags": [],
          "created_at": dt.datetime(2026, 3, 1, 12, tzinfo=dt.timezone.utc), "event_date": START}],
        settings=local_settings,
    )
    load_synthetic(local_settings, **dict(small, start=START + dt.timedelta(days=2)))
    posts = lake.read(EVENT_CONTRACTS["posts"], settings=local_settings)
    assert pc.count_distinct(posts["post_id"]).as_py() == posts.num_rows == 401
    first_days = posts.filter(pc.less(posts["event_date"], pa.scalar(START + dt.timedelta(days=2))))
    assert first_days["post_id"].to_pylist() == ["api-1"]
