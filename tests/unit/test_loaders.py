"""Real-data loaders on the vendored samples: counts, idempotency, and malformed lines to dead_letter."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from socialpulse import lake
from socialpulse.contracts import DEAD_LETTER, POSTS
from socialpulse.loaders import (
    CRISISLEX_SAMPLE,
    HATEXPLAIN_DAYS,
    HATEXPLAIN_SAMPLE,
    load_crisislex,
    load_hatexplain,
)


def _posts(settings, prefix: str):
    p = lake.read(POSTS, settings=settings)
    return p.filter(pc.starts_with(p["post_id"], prefix))


def _ref(settings, name: str):
    return DeltaTable(settings.table_uri("reference", name)).to_pyarrow_table()


def _dead(settings, source: str):
    d = lake.read(DEAD_LETTER, settings=settings)
    return d.filter(pc.equal(d["source"], source))


def test_hatexplain_sample_loads_with_counts_and_reloads_idempotently(local_settings):
    messages: list[str] = []
    counts = load_hatexplain(local_settings, HATEXPLAIN_SAMPLE, progress=messages.append)
    assert counts == {"lines": 600, "posts": 600, "reference": 600, "rejected": 0, "dead_letter": 0}
    assert messages
    posts = _posts(local_settings, "hx-")
    assert posts.num_rows == 600
    assert set(posts["kind"].to_pylist()) == {"text"}
    assert set(posts["author_id"].to_pylist()) <= {"hx-gab", "hx-twitter", "hx-unknown"}
    assert set(posts["event_date"].to_pylist()) == set(HATEXPLAIN_DAYS.values())
    ref = _ref(local_settings, "hatexplain")
    split_counts = {r["values"]: r["counts"] for r in ref["split"].value_counts().to_pylist()}
    assert split_counts == {"train": 400, "val": 100, "test": 100}
    assert set(ref["label"].to_pylist()) == {"hatespeech", "offensive", "normal"}
    # val/test targets are per-annotator lists in the source: stored flattened
    assert all(isinstance(t, str) for ts in ref["targets"].to_pylist() for t in ts)

    again = load_hatexplain(local_settings, HATEXPLAIN_SAMPLE)
    assert again == counts
    assert _posts(local_settings, "hx-").num_rows == 600 and _ref(local_settings, "hatexplain").num_rows == 600


def test_hatexplain_single_file_replaces_only_its_split(local_settings, tmp_path):
    load_hatexplain(local_settings, HATEXPLAIN_SAMPLE)
    lines = (HATEXPLAIN_SAMPLE / "val.jsonl").read_text().splitlines()[:10]
    (tmp_path / "val.jsonl").write_text("\n".join(lines) + "\n")
    counts = load_hatexplain(local_settings, tmp_path / "val.jsonl")
    assert counts["posts"] == 10
    ref = _ref(local_settings, "hatexplain")
    split_counts = {r["values"]: r["counts"] for r in ref["split"].value_counts().to_pylist()}
    assert split_counts == {"train": 400, "val": 10, "test": 100}
    assert _posts(local_settings, "hx-").num_rows == 510


def test_hatexplain_post_splits_limit_the_posts_not_the_reference(local_settings):
    counts = load_hatexplain(local_settings, HATEXPLAIN_SAMPLE, post_splits=["val"])
    assert (counts["posts"], counts["reference"]) == (100, 600)
    assert set(_posts(local_settings, "hx-")["event_date"].to_pylist()) == {HATEXPLAIN_DAYS["val"]}
    with pytest.raises(ValueError, match=r"post_splits \['dev'\] are not HateXplain splits"):
        load_hatexplain(local_settings, HATEXPLAIN_SAMPLE, post_splits=["dev"])


def test_the_demo_trains_on_the_full_vendored_split(local_settings):
    """The demo once trained its text model on the 400-text sample, and let "I hate all of those people,
    they should all die" through. What the text_model asset reads in the demo must be the whole split."""
    from assets.moderation.assets import hatexplain_splits
    from orchestration.runner import load_demo_hatexplain

    counts = load_demo_hatexplain(local_settings)
    trained_on = {split: len(texts) for split, (texts, _) in hatexplain_splits(local_settings).items()}
    assert trained_on == {"train": 15_383, "val": 1_922, "test": 1_924}
    assert (counts["rejected"], counts["posts"]) == (0, 1_924)  # only the test split is moderated as posts
    assert set(_posts(local_settings, "hx-")["event_date"].to_pylist()) == {HATEXPLAIN_DAYS["test"]}


def test_hatexplain_malformed_lines_go_to_dead_letter(local_settings, tmp_path):
    good = (HATEXPLAIN_SAMPLE / "test.jsonl").read_text().splitlines()[:3]
    row = json.loads(good[0])
    bad = [
        '{"post_id": "x1", "text": "unterminated',  # bad JSON
        json.dumps({**row, "post_id": "x2", "text": "   "}),  # empty text
        json.dumps({k: v for k, v in row.items() if k != "text"} | {"post_id": "x3"}),  # missing text
        json.dumps({**row, "post_id": "x4", "label": "spam"}),  # unknown label
        "[1, 2, 3]",  # not an object
        good[1],  # duplicate post_id
    ]
    (tmp_path / "test.jsonl").write_text("\n".join(good + bad) + "\n")
    counts = load_hatexplain(local_settings, tmp_path)
    assert counts["posts"] == 3 and counts["rejected"] == 6 and counts["dead_letter"] == 6
    dead = _dead(local_settings, "loader:hatexplain")
    reasons = sorted(dead["reason"].to_pylist())
    assert any("line 4: invalid JSON" in r for r in reasons)
    assert any("line 5: field 'text' is empty" in r for r in reasons)
    assert any("line 6: missing field 'text'" in r for r in reasons)
    assert any("line 7: unknown label 'spam'" in r for r in reasons)
    assert any("line 8: expected a JSON object" in r for r in reasons)
    assert any("line 9: duplicate post_id" in r for r in reasons)
    assert set(dead["target_table"].to_pylist()) == {"posts"}
    assert '"x4"' in " ".join(dead["payload"].to_pylist())
    # a reload does not record the same rejects twice
    assert load_hatexplain(local_settings, tmp_path)["dead_letter"] == 0
    assert _dead(local_settings, "loader:hatexplain").num_rows == 6


def test_crisislex_sample_loads_with_counts_and_reloads_idempotently(local_settings):
    counts = load_crisislex(local_settings, CRISISLEX_SAMPLE)
    # the sample keeps one real duplicated tweet id of the full file: 2,999 posts + 1 dead letter
    assert counts == {"lines": 3000, "posts": 2999, "reference": 2999, "rejected": 1, "dead_letter": 1}
    posts = _posts(local_settings, "cl-")
    assert posts.num_rows == 2999
    days = pc.cast(pc.floor_temporal(posts["created_at"], unit="day"), posts["event_date"].type)
    assert pc.all(pc.equal(days, posts["event_date"])).as_py()
    assert pc.min(posts["event_date"]).as_py() == dt.date(2012, 10, 28)
    ref = _ref(local_settings, "crisislex")
    assert pc.count_distinct(ref["event"]).as_py() == 6
    assert set(ref["on_topic"].to_pylist()) == {"on-topic", "off-topic"}
    tagged = posts.filter(pc.greater(pc.list_value_length(posts["hashtags"]), 0))
    assert tagged.num_rows > 300
    assert "duplicate tweet_id 295710103175315457" in _dead(local_settings, "loader:crisislex")["reason"][0].as_py()

    assert load_crisislex(local_settings, CRISISLEX_SAMPLE.parent)["posts"] == 2999  # folder path works too
    assert _posts(local_settings, "cl-").num_rows == 2999
    assert _ref(local_settings, "crisislex").num_rows == 2999
    assert _dead(local_settings, "loader:crisislex").num_rows == 1


def test_crisislex_malformed_lines_and_smaller_reload(local_settings, tmp_path):
    load_crisislex(local_settings, CRISISLEX_SAMPLE)
    good = CRISISLEX_SAMPLE.read_text().splitlines()[:5]
    row = json.loads(good[0])
    bad = [
        "not json at all",
        json.dumps({**row, "tweet_id": "1", "created_at": "yesterday"}),
        json.dumps({**row, "tweet_id": "2", "on_topic": "maybe"}),
        json.dumps({**row, "tweet_id": "3", "hashtags": "sandy"}),
        json.dumps({**row, "tweet_id": "4", "created_at": "2012-10-28 10:00:00"}),  # no UTC offset
    ]
    path = tmp_path / "stream.jsonl"
    path.write_text("\n".join(good[:3] + bad + good[3:]) + "\n")
    counts = load_crisislex(local_settings, path)
    assert counts["posts"] == 5 and counts["rejected"] == 5 and counts["dead_letter"] == 5
    reasons = " | ".join(_dead(local_settings, "loader:crisislex")["reason"].to_pylist())
    for part in ("line 4: invalid JSON", "line 5: unparseable 'created_at'", "line 6: unknown on_topic 'maybe'",
                 "line 7: field 'hashtags' must be a list", "line 8: 'created_at' has no UTC offset"):
        assert part in reasons
    # the smaller reload replaced the earlier load's days: only its own 5 posts remain
    assert _posts(local_settings, "cl-").num_rows == 5
    assert _ref(local_settings, "crisislex").num_rows == 5


def test_vendored_samples_are_small_and_attributed():
    samples = CRISISLEX_SAMPLE.parents[1]
    assert "CC-BY-4.0" in (samples / "ATTRIBUTION.md").read_text()
    size = sum(p.stat().st_size for p in CRISISLEX_SAMPLE.parents[1].rglob("*") if p.is_file())
    assert size < 2 * 1024 * 1024


def test_hatexplain_days_are_daily_partitions():
    # the day-partitioned assets (moderation scores and decisions) must be able to cover HateXplain's posts
    import datetime as dt

    from socialpulse.settings import Settings

    start = dt.date.fromisoformat(Settings().partitions_start)
    assert all(day >= start for day in HATEXPLAIN_DAYS.values())
