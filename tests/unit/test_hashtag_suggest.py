"""Hashtag suggestions, pure parts: neighbour votes, co-occurrence, trend relevance, ranking; and the
hit@k evaluation on the vendored CrisisLex sample against the most-popular baseline."""

from __future__ import annotations

import datetime as dt

import pytest

from socialpulse.hashtags import (
    cooccurrence_scores,
    neighbour_votes,
    popularity_shares,
    rank,
    trend_strength,
)
from socialpulse.tags import strip_tags


def test_strip_tags_hides_the_answer():
    assert strip_tags("Flooding downtown #yycflood #abflood now!") == "Flooding downtown now!"
    assert strip_tags("#only") == "" and strip_tags(None) == ""


def test_neighbour_votes_weight_by_similarity_and_normalise():
    votes = neighbour_votes([(0.9, ["#Cooking", "pasta"]), (0.6, ["cooking"]), (-0.2, ["spam"]), (0.3, ["pasta", "pasta"])])
    assert votes["cooking"] == 1.0
    assert votes["pasta"] == pytest.approx(1.2 / 1.5)
    assert votes["spam"] == 0.0  # a dissimilar neighbour gets no say
    assert neighbour_votes([]) == {}


def test_cooccurrence_is_the_best_conditional_share_over_chosen_tags():
    pairs = {"sandy": {"hurricane": 8, "nyc": 2}, "nyc": {"hurricane": 1}}
    counts = {"sandy": 10, "nyc": 4}
    out = cooccurrence_scores(["sandy", "nyc", "unknown"], pairs, counts)
    assert out == {"hurricane": 0.8, "nyc": 0.2}


def test_trending_tags_count_only_when_the_draft_is_about_them():
    semantic = {"football": 1.0, "goal": 0.5}
    out = rank(semantic=semantic, trending={"goal": 10.0, "election": 50.0}, limit=5)
    tags = [s.tag for s in out]
    assert "election" not in tags  # trending, but unrelated to the draft
    assert tags == ["football", "goal"] and out[1].sources["trending"] == pytest.approx(trend_strength(10.0))
    assert trend_strength(2.0) == 0.5 and trend_strength(-3.0) == 0.0


def test_rank_never_repeats_chosen_tags_and_uses_cooccurrence():
    out = rank(semantic={"a": 1.0, "b": 0.2}, cooccurrence={"c": 0.9, "a": 0.5}, chosen=["#A"], limit=2)
    assert [s.tag for s in out] == ["c", "b"]
    pop = popularity_shares({"x": 100, "y": 1, "z": 0})
    assert pop["x"] == 1.0 and 0 < pop["y"] < 0.2 and "z" not in pop
    # popularity breaks ties, never adds candidates of its own
    tied = rank(semantic={"y": 0.5, "x": 0.5}, popularity=pop, limit=5)
    assert [s.tag for s in tied] == ["x", "y"]
    assert rank(semantic={}, popularity=pop) == []


def test_suggestion_eval_beats_most_popular_on_crisislex_sample():
    from assets.trends.suggest_eval import suggestion_eval
    from socialpulse.encoder import TextEncoder
    from assets.trends.stream import read_stream
    from socialpulse.loaders import CRISISLEX_SAMPLE

    records, _ = read_stream(CRISISLEX_SAMPLE)
    out = suggestion_eval(records, TextEncoder(batch_size=64), k=5, max_test=300)
    hits = out["hit_at_5"]
    assert out["drafts"] > 100 and out["known_posts"] > 1000
    assert set(hits) >= {"most_popular", "semantic", "all_sources"}
    # six events, each with its own tags: the text says which event, popularity cannot
    assert hits["semantic"] > hits["most_popular"] + 0.1, hits


def test_suggestion_eval_needs_both_sides_of_the_split():
    from assets.trends.suggest_eval import suggestion_eval

    t = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    with pytest.raises(ValueError, match="before and after"):
        suggestion_eval([{"created_at": t, "text": "x", "hashtags": []}], encoder=None)
