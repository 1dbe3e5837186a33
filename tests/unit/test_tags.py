"""One hashtag rule (socialpulse.tags): what a tag is, its canonical form, and that every path that reads or
writes tags (ingest, loaders, trends, suggestions, search, the bronze suite) gives the same tags for the same
input, however it is spelled. Spark's hourly counts are checked against the same rule in
tests/integration/test_trends_spark.py."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pydantic import ValidationError

from socialpulse.tags import TagError, canonical_tag, canonical_tags, find_tags, normalise_tags, strip_tags

#: one tag each, however written: case, leading '#', full width, composed or decomposed accents, case folding
SPELLINGS = {
    "flood": ["flood", "#Flood", "FLOOD", "  ##flood ", "ＦＬＯＯＤ", "＃ｆｌｏｏｄ"],
    "café": ["café", "#Café", "CAFÉ", "cafe\u0301", "CAFE\u0301"],
    "strasse": ["Straße", "STRASSE", "strasse"],
    "new_york": ["new_york", "#New_York"],
    "भारत": ["भारत", "#भारत"],  # a vowel sign (a combining mark) inside: still one tag
    "2013": ["2013", "#２０１３"],
}
NOT_TAGS = {
    "": "is empty", "#": "is empty", "   ": "is empty",
    "two words": "has a space", "a#b": "has an inner '#'", "rock&roll": "has '&'", "🔥": "has '🔥'",
    "___": "has no letter or digit", "x" * 101: "has 101 characters",
}
#: a post written the awkward way, and the tags every path must find in it
RAW = ["#Flood", "ＦＬＯＯＤ", "Café", "cafe\u0301", "new_york", "#भारत", "Straße", "flood"]
CANONICAL = ["flood", "café", "new_york", "भारत", "strasse"]
TEXT = "Rising #Flood waters ＃ＦＬＯＯＤ #Café #cafe\u0301 #new_york #भारत #Straße #flood 🔥"


@pytest.mark.parametrize("tag, spellings", SPELLINGS.items())
def test_every_spelling_is_one_canonical_tag(tag, spellings):
    assert {canonical_tag(s) for s in spellings} == {tag}
    assert canonical_tag(tag) == tag  # canonical tags are fixed points: re-normalising stored tags is a no-op


@pytest.mark.parametrize("raw, why", NOT_TAGS.items())
def test_what_is_not_a_tag_is_refused_with_the_reason(raw, why):
    with pytest.raises(TagError, match=why):
        canonical_tag(raw)
    assert normalise_tags([raw, "ok"]) == ["ok"]


def test_accents_are_kept_and_duplicates_dropped_in_order():
    assert canonical_tag("cafe") != canonical_tag("café")
    assert normalise_tags(["B", "#a", "b", "A", None, "🔥"]) == ["b", "a"]
    assert normalise_tags(None) == []
    with pytest.raises(TagError, match=r"hashtags\[2\] has a space"):
        canonical_tags(["ok", "#OK", "not ok"])


def test_tags_in_text():
    assert find_tags(TEXT) == CANONICAL
    # written together, each counts; after a word too; an HTML entity is no tag; a keycap emoji is no tag
    assert find_tags("#nyc#Sandy river#flood C# &#39;s &#039; #️⃣ #fire🔥 #_") == ["nyc", "sandy", "flood", "fire"]
    assert find_tags("#" + "x" * 101) == [] and find_tags(None) == []
    assert strip_tags("Flooding ＤＯＷＮＴＯＷＮ #yycflood#abflood now! &#39;") == "Flooding DOWNTOWN now! &#39;"


def test_ingest_trends_suggestions_and_search_agree():
    from assets.trends.logic import hourly_counts, keywords, post_tags
    from serving.api.routes.trends import SuggestRequest
    from socialpulse.hashtags import neighbour_votes, rank, tag_statistics
    from socialpulse.ingest import PostIn
    from socialpulse.search import parse_query

    post = PostIn.model_validate({"post_id": "p1", "author_id": "u1", "kind": "text", "caption": TEXT, "hashtags": RAW})
    assert post.hashtags == CANONICAL
    assert post_tags({"hashtags": RAW}) == CANONICAL
    at = dt.datetime(2026, 3, 1, 10, tzinfo=dt.timezone.utc)
    assert {t for t, _ in hourly_counts([{"created_at": at, "hashtags": RAW, "author_id": "u1"}])} == set(CANONICAL)
    counts, pairs = tag_statistics([RAW])
    assert list(counts) == CANONICAL and all(n == 1 for n in counts.values())
    assert set(pairs["flood"]) == set(CANONICAL) - {"flood"}
    assert list(neighbour_votes([(0.9, RAW)])) == CANONICAL
    # a chosen tag, however spelled, is never suggested again
    ranked = rank(semantic={"flood": 1.0, "café": 0.5, "rain": 0.2}, chosen=["ＦＬＯＯＤ", "CAFE\u0301"])
    assert [s.tag for s in ranked] == ["rain"]
    assert SuggestRequest.model_validate({"text": "x", "hashtags": RAW}).hashtags == CANONICAL
    q = parse_query(TEXT)
    assert list(q.hashtags) == CANONICAL
    assert parse_query("Straße CAFÉ").tag_prefix == "strassecafé"
    assert not set(keywords(TEXT)) & set(CANONICAL)  # tags in a caption are not also keywords


def test_non_tags_are_refused_alike_by_the_api_models():
    from serving.api.routes.trends import SuggestRequest
    from socialpulse.ingest import PostIn

    for raw, why in NOT_TAGS.items():
        for model, fields in ((PostIn, {"post_id": "p", "author_id": "u", "kind": "text", "caption": "c"}),
                              (SuggestRequest, {"text": "x"})):
            with pytest.raises(ValidationError, match=f"hashtags\\[1\\] {why}"):
                model.model_validate({**fields, "hashtags": ["ok", raw]})


def test_loaders_and_the_trend_replay_reader_agree(tmp_path):
    from assets.trends.stream import read_stream
    from socialpulse.loaders import parse_crisislex

    stream = tmp_path / "stream.jsonl"
    common = {"created_at": "2013-06-21T10:00:00Z", "event": "e", "on_topic": "on-topic", "text": TEXT}
    stream.write_text("\n".join(json.dumps({**common, "tweet_id": str(i), **extra}) for i, extra in
                                enumerate([{"hashtags": RAW}, {}])) + "\n")  # tags given, and tags from the text
    assert [r["hashtags"] for r in parse_crisislex(stream).rows] == [CANONICAL, CANONICAL]
    records, counts = read_stream(stream)
    assert [r["hashtags"] for r in records] == [CANONICAL, CANONICAL] and counts["skipped"] == 0


def test_the_bronze_suite_checks_the_same_tag_characters():
    from quality.bronze import HASHTAG_PATTERN

    def matches(tags):
        return pc.match_substring_regex(pa.array(tags), HASHTAG_PATTERN).to_pylist()

    assert all(matches(CANONICAL + ["#flood"]))
    assert not any(matches(["two words", "a#b", "rock&roll", "🔥", "x" * 101]))
