"""The deletion's pure logic: id columns, whole-id matching (never inside a longer id), JSON scrubbing, Delta
predicates, the log files a checkpoint makes unnecessary, and the plan's round trip through JSON."""

from __future__ import annotations

import json
import re

import pytest

from assets.privacy import logic
from assets.privacy.logic import Plan

U, P = "u-gdpr-7q", "p-gdpr-7q-1"


@pytest.fixture
def matcher():
    return logic.id_matcher([U, P])


@pytest.mark.parametrize("text, hit", [
    (U, True), (f"feed:seen:{U}", True), (f'{{"author_id": "{U}"}}', True), (f"[{P}]", True),
    (f"{U}x", False), (f"x{U}", False), (f"{U}-2", False), (f"{U}.", False), ("u-gdpr-7", False), ("", False),
])
def test_ids_match_whole_never_inside_a_longer_id(matcher, text, hit):
    assert logic.mentions(text, matcher) is hit
    # the POSIX form (Postgres, pyarrow) agrees with the Python one
    assert (re.search(logic.id_regex([U, P]), text) is not None) is hit


def test_regex_escapes_ids_and_prefers_the_longest():
    rx = logic.id_regex(["a.b", "a.b.c"])
    assert re.search(rx, "x a.b.c y").group(2) == "a.b.c"
    assert re.search(rx, "aXb") is None
    with pytest.raises(ValueError):
        logic.id_regex([])


def test_id_columns_are_found_by_name():
    names = ["event_id", "user_id", "target_user_id", "post_id", "caption", "follower_id", "hashtags"]
    assert logic.user_columns(names) == ["user_id", "target_user_id", "follower_id"]
    assert logic.post_columns(names) == ["post_id"]


def test_delta_predicate_quotes_columns_and_values():
    assert logic.delta_predicate(["user_id"], ["o'k", "a"]) == "\"user_id\" IN ('a', 'o''k')"
    assert logic.delta_predicate(["a", "b"], ["x"]) == "\"a\" IN ('x') OR \"b\" IN ('x')"
    assert logic.delta_predicate([], ["x"]) is None and logic.delta_predicate(["a"], []) is None


def test_json_scrub_removes_ids_records_and_keys(matcher):
    value = {"followed": [U, "u-other"], "items": [{"post_id": P, "score": 1}, {"post_id": "p2"}],
             U: 3, "nested": {"x": [P, "p3"]}, "n": 1}
    assert logic.scrub_json(value, matcher) == {"followed": ["u-other"], "items": [{"post_id": "p2"}],
                                                "nested": {"x": ["p3"]}, "n": 1}
    assert logic.scrub_json({"user_id": U, "x": 1}, matcher) is logic.REMOVE
    assert logic.scrub_json(U, matcher) is logic.REMOVE


def test_blob_scrub(matcher):
    assert logic.scrub_blob(b"untouched", matcher) == b"untouched"
    assert logic.scrub_blob(U.encode(), matcher) is None
    assert json.loads(logic.scrub_blob(json.dumps([P, "p2"]).encode(), matcher)) == ["p2"]
    assert logic.scrub_blob(b"\x00\x01" + U.encode(), matcher) is None  # binary that names the user: gone


def test_older_log_files_are_those_before_the_checkpoint():
    names = ["00000000000000000003.json", "00000000000000000004.json", "00000000000000000004.checkpoint.parquet",
             "00000000000000000002.checkpoint.parquet", "00000000000000000001.crc", "_last_checkpoint", "_commits"]
    assert logic.older_log_files(names, 4) == ["00000000000000000001.crc", "00000000000000000002.checkpoint.parquet",
                                               "00000000000000000003.json"]


def test_plan_round_trips_through_json_and_lists_every_id():
    plan = Plan(U, handles=["h"], post_ids=[P, "p2"], media=[{"uri": "file:///m/a.png", "sha256": "ab"}],
                record_ids=["e1"])
    again = Plan.from_json(json.loads(json.dumps(plan.to_json())))
    assert again == plan and again.ids == [U, P, "p2"]
    assert Plan.from_json({"user_id": U}).post_ids == []


def test_steps_start_with_the_plan_and_streams_and_vacuum_follows_the_lake():
    steps = logic.DELETE_STEPS
    assert steps[:2] == ("plan", "streams") and steps.index("lake_vacuum") == steps.index("lake") + 1


def test_ids_with_a_colon_are_matched_by_regex_and_many_ids_stay_cheap():
    m = logic.id_matcher(["a:b", *[f"p-{i}" for i in range(5000)]])
    assert logic.mentions("x a:b y", m) and not logic.mentions("x a:bc y", m)
    assert logic.mentions('{"ids": ["p-4999"]}', m) and not logic.mentions("p-5000", m)
    assert logic.split_ids(["a:b", "c"]) == (["c"], ["a:b"])
    assert re.split(logic.TOKEN_SPLIT, "feed:seen:u-1 [x.y]") == ["feed", "seen", "u-1", "x.y", ""]


def test_id_columns_are_not_free_text():
    assert all(logic.is_id_column(c) for c in ("user_id", "post_id", "event_id", "request_id", "id"))
    assert not any(logic.is_id_column(c) for c in ("caption", "payload", "text", "identity", "hashtags"))
